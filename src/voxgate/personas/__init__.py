"""Personas: files, voices, memory."""
