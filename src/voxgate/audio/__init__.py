"""PCM buffers, conversion and resampling."""
