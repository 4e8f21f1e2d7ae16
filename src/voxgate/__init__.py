"""voxgate: a local-first, real-time voice agent runtime."""

__version__ = "0.1.0"
