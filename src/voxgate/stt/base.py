"""The STT engine interface."""

from __future__ import annotations

from typing import Protocol

from voxgate.audio.pcm import FloatArray
from voxgate.scheduler import Priority


class STTError(RuntimeError):
    pass


class STTEngine(Protocol):
    name: str
    sample_rate: int

    async def warm(self) -> None: ...

    async def transcribe(self, audio: FloatArray, priority: Priority) -> str:
        """Transcribe a whole utterance (16 kHz float32). Safe to call concurrently."""
        ...

    async def close(self) -> None: ...
