"""Senses beyond the microphone: camera frames described offline (docs/vision.md)."""
