"""Benchmark fixtures (not engines): fixed-delay stand-ins for LLM, TTS and STT.

They spend their time in ``asyncio.sleep``, never on the CPU, so whatever CPU
and wall time a turn costs beyond their delays is the substrate's own (session,
reply run, chunker, frames, metrics, history). Each fixture logs how long it
actually slept per call, so the benchmark can subtract real sleeps, timer
slack included, from a turn's critical path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from voxgate.audio.pcm import FloatArray, Int16Array
from voxgate.llm.base import LLMRequest, LLMUsage
from voxgate.personas.persona import VoiceSpec
from voxgate.scheduler import Priority, PriorityLike
from voxgate.tts.chunker import TextChunker

# Two clauses, the first long enough for the clause chunker to cut it, so the
# critical path is "first clause, then TTS" as in a real reply.
FIXTURE_REPLY = ("Sure, I can help with that right away. "
                 "The short answer is yes, and here is why it works.")


@dataclass(frozen=True, slots=True)
class FixtureTiming:
    """The fixtures' delays; defaults are the design targets (LLM ~40 tok/s, Piper ~90 ms)."""

    ttft_ms: float = 100.0
    per_token_ms: float = 25.0
    tts_ms: float = 90.0
    tts_audio_ms: int = 120  # short, so a reply has finished playing by the next turn

    def reply_ms(self, tokens: int) -> float:
        """Nominal time from LLM request to the last clause synthesized."""
        return self.ttft_ms + (tokens - 1) * self.per_token_ms + self.tts_ms

    def critical_path_ms(self, tokens_to_first_chunk: int) -> float:
        """Nominal delay from LLM request to first synthesized clause."""
        return self.ttft_ms + (tokens_to_first_chunk - 1) * self.per_token_ms + self.tts_ms


def reply_tokens(reply: str) -> list[str]:
    """Word pieces with their leading space, like a BPE stream."""
    words = reply.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def chunk_ends(tokens: list[str], clauses: bool) -> list[int]:
    """After how many tokens the real chunker releases each clause (the last one at flush)."""
    chunker = TextChunker(clauses=clauses)
    ends = [i for i, token in enumerate(tokens, start=1) for _ in chunker.feed(token)]
    if chunker.flush():
        ends.append(len(tokens))
    return ends


def tokens_to_first_chunk(tokens: list[str], clauses: bool) -> int:
    return chunk_ends(tokens, clauses)[0]


@dataclass(slots=True)
class LLMCallLog:
    persona_id: str
    messages: int  # prompt messages: grows by two per answered turn
    started: float  # perf_counter
    slept_ms: list[float] = field(default_factory=list)  # actual sleep before each token


@dataclass(slots=True)
class TTSCallLog:
    voice: str
    started: float
    slept_ms: float = 0.0


async def _sleep_ms(ms: float) -> float:
    started = time.perf_counter()
    await asyncio.sleep(ms / 1000.0)
    return (time.perf_counter() - started) * 1000.0


class FixedDelayLLM:
    """Benchmark fixture: a fixed reply, first token after ``ttft_ms``, then one per
    ``per_token_ms``."""

    name = "fixed-delay-llm"

    def __init__(self, timing: FixtureTiming, reply: str = FIXTURE_REPLY) -> None:
        self.timing = timing
        self.tokens = reply_tokens(reply)
        self.calls: list[LLMCallLog] = []

    async def warm(self) -> None:
        return None

    async def _gen(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        log = LLMCallLog(request.persona_id, len(request.messages), time.perf_counter())
        self.calls.append(log)
        for i, token in enumerate(self.tokens[: request.max_tokens]):
            delay = self.timing.ttft_ms if i == 0 else self.timing.per_token_ms
            log.slept_ms.append(await _sleep_ms(delay))
            usage.generated_tokens += 1
            yield token

    def stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        return self._gen(request, usage)

    async def close(self) -> None:
        return None


class FixedDelayTTS:
    """Benchmark fixture: ``tts_audio_ms`` of silence per clause after ``tts_ms``."""

    name = "fixed-delay-tts"
    sample_rate = 22050  # Piper's rate, so frames carry as many bytes as in production

    def __init__(self, timing: FixtureTiming) -> None:
        self.timing = timing
        self._audio: Int16Array = np.zeros(self.sample_rate * timing.tts_audio_ms // 1000,
                                           dtype=np.int16)
        self.calls: list[TTSCallLog] = []

    async def warm(self) -> None:
        return None

    async def synthesize(self, text: str, voice: VoiceSpec,
                         priority: PriorityLike) -> Int16Array:
        log = TTSCallLog(voice.name, time.perf_counter())
        self.calls.append(log)
        log.slept_ms = await _sleep_ms(self.timing.tts_ms)
        return self._audio

    async def close(self) -> None:
        return None


class FixedDelaySTT:
    """Benchmark fixture: turns arrive as typed text, so it is never called (it counts)."""

    name = "fixed-delay-stt"
    sample_rate = 16000

    def __init__(self) -> None:
        self.calls = 0

    async def warm(self) -> None:
        return None

    async def transcribe(self, audio: FloatArray, priority: Priority) -> str:
        self.calls += 1
        return ""

    async def close(self) -> None:
        return None

