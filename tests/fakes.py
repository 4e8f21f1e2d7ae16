"""Fakes that isolate the session's turn logic from the models (named as such).

The VAD stays real (Silero, cheap) and the audio is real speech, so the
endpointing under test is the real one; only STT, LLM and TTS are scripted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.audio.pcm import FloatArray, Int16Array
from voxgate.audio.wav import read_wav
from voxgate.engines import Engines
from voxgate.llm.base import LLMRequest, LLMUsage
from voxgate.metrics.trace import JsonlTrace
from voxgate.personas.persona import Persona, VoiceSpec
from voxgate.scheduler import ComputeGate, Priority, PriorityLike

DATA = Path(__file__).resolve().parent / "data"


class FakeSTT:
    """Returns ``script(seconds_of_audio)``; records every call."""

    name = "fake-stt"
    sample_rate = 16000

    def __init__(self, script: Callable[[float], str]) -> None:
        self.script = script
        self.calls: list[tuple[float, Priority]] = []

    async def warm(self) -> None:
        return None

    async def transcribe(self, audio: FloatArray, priority: Priority) -> str:
        seconds = len(audio) / self.sample_rate
        self.calls.append((seconds, priority))
        await asyncio.sleep(0)
        return self.script(seconds)

    async def close(self) -> None:
        return None


SPEECH_RATE = 24000  # a speaking model's PCM16, as the OpenAI API streams it


class FakeLLM:
    """Streams a fixed reply word by word; counts requests and cancellations. Asked for
    speech (the audio_out route), it speaks each word too."""

    name = "fake-llm"

    def __init__(
        self,
        reply: str = "Sure, here is a fairly long answer for you. It goes on.",
        first_token_delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        reply_for: Callable[[str], str] | None = None,
        script: Sequence[str] = (),
    ) -> None:
        self.reply = reply
        self.script = list(script)  # the i-th request's reply (the last one repeats)
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s  # a slow model: each word takes this long
        self.reply_for = reply_for  # the reply as a function of the user's last message
        self.requests: list[LLMRequest] = []
        self.closed_early = 0

    async def warm(self) -> None:
        return None

    async def _gen(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        self.requests.append(request)
        await asyncio.sleep(self.first_token_delay_s)
        if self.script:
            reply = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
        elif self.reply_for:
            reply = self.reply_for(request.messages[-1].content)
        else:
            reply = self.reply
        words = reply.split(" ")
        finished = False
        try:
            for i, word in enumerate(words):
                await asyncio.sleep(self.token_delay_s)
                usage.generated_tokens += 1
                if request.speech is not None:  # asked to speak: 100 ms of silence a word
                    request.speech.sink(bytes(2 * SPEECH_RATE // 10), SPEECH_RATE)
                yield word if i == 0 else " " + word
            finished = True
        finally:
            if not finished:
                self.closed_early += 1

    def stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        return self._gen(request, usage)

    async def close(self) -> None:
        return None


class PrimingFakeLLM(FakeLLM):
    """A FakeLLM that also takes background primes, as the embedded engine does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.primes: list[tuple[str, str, str, Priority]] = []  # persona, text, conv, priority

    async def prime(
        self,
        persona_id: str,
        messages: Sequence[Any],
        conversation_id: str = "",
        priority: Priority = Priority.SPECULATIVE,
    ) -> LLMUsage:
        self.primes.append((persona_id, messages[-1].content, conversation_id, priority))
        await asyncio.sleep(0)
        return LLMUsage()


class FakeTurnScorer:
    """Scores every pause with a fixed end-of-turn probability; records the audio lengths."""

    name = "fake-turn-scorer"

    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.calls: list[float] = []

    async def score(self, audio: FloatArray) -> float:
        self.calls.append(len(audio) / 16000)
        await asyncio.sleep(0)
        return self.probability

    async def close(self) -> None:
        return None


class FakeTTS:
    """Silence of ``ms_per_char`` per character: long enough for a reply to be 'playing'."""

    name = "fake-tts"
    sample_rate = 16000

    def __init__(self, ms_per_char: int = 60, delay_s: float = 0.0) -> None:
        self.ms_per_char = ms_per_char
        self.delay_s = delay_s  # a slow synthesizer: each clause takes this long
        self.texts: list[str] = []

    async def warm(self) -> None:
        return None

    async def synthesize(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        self.texts.append(text)
        await asyncio.sleep(self.delay_s)
        return np.zeros(len(text) * self.sample_rate * self.ms_per_char // 1000, dtype=np.int16)

    async def close(self) -> None:
        return None


class RecordingTrace(JsonlTrace):
    """A trace kept in memory (a fake of the JSONL file), for tests that read spans."""

    def __init__(self) -> None:
        super().__init__(None)
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def fake_engines(
    stt: FakeSTT,
    llm: FakeLLM | None = None,
    tts: FakeTTS | None = None,
    fillers: tuple[str, ...] = (),
) -> Engines:
    personas = {
        pid: Persona(
            id=pid, name=pid.title(), instructions=f"You are {pid.title()}, brief.", fillers=fillers
        )
        for pid in ("ada", "max", "pip")
    }
    return Engines(
        gate=ComputeGate(),
        stt=stt,
        llm=llm or FakeLLM(),
        tts=tts or FakeTTS(),
        personas=personas,
        default_persona="ada",
        trace=RecordingTrace(),
    )


def speech(
    name: str = "beckett.wav", start_s: float = 0.0, end_s: float | None = None
) -> FloatArray:
    audio = read_wav(DATA / name, 16000)[0]
    end = len(audio) if end_s is None else int(end_s * 16000)
    return audio[int(start_s * 16000) : end]


def silence(seconds: float) -> FloatArray:
    return np.zeros(int(seconds * 16000), dtype=np.float32)


class FakeEngines(Engines):
    """Engines with instant scripted STT/LLM/TTS fakes: isolates the session's message
    handling (property tests, the fuzzer) from the models."""

    def __init__(self) -> None:
        persona = Persona(id="ada", name="Ada", instructions="You are Ada, brief and kind.")
        super().__init__(
            gate=ComputeGate(),
            stt=FakeSTT(lambda seconds: "Hello there."),
            llm=FakeLLM("Hi. Nice to meet you."),
            tts=FakeTTS(ms_per_char=1),
            personas={"ada": persona},
            default_persona="ada",
        )
