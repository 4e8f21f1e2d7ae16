"""The TTS engine interface."""

from __future__ import annotations

from typing import Protocol

from voxgate.audio.pcm import Int16Array
from voxgate.personas.persona import VoiceSpec
from voxgate.scheduler import PriorityLike


class TTSError(RuntimeError):
    pass


class TTSEngine(Protocol):
    name: str
    sample_rate: int

    async def warm(self) -> None: ...

    async def synthesize(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        """PCM16 mono at ``sample_rate`` for one clause."""
        ...

    async def close(self) -> None: ...
