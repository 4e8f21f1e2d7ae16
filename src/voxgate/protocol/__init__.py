"""Wire formats: binary frames (frames.py) and JSON control events (events.py)."""
