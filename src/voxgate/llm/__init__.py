"""LLM engines: an interface (base.py) and one module per backend."""
