"""Turn-taking: VAD, endpointing, interruption."""
