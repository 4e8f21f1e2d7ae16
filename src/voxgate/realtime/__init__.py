"""The OpenAI Realtime API as a transport adapter on the session's ports (docs/realtime.md)."""
