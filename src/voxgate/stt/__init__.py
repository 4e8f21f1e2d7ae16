"""Speech to text: interface (base.py) and one module per backend."""
