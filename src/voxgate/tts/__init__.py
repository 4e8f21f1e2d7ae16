"""Text to speech: interface (base.py), clause chunker, one module per backend."""
