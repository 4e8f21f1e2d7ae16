"""Drives a session through the binary protocol in-process: frames in, frames collected."""

from __future__ import annotations

import asyncio
from typing import Any

from voxgate.audio.pcm import FloatArray, float_to_pcm16
from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.protocol.frames import Frame, FrameType, decode, encode, encode_event
from voxgate.session import Session
from voxgate.transport.binary_protocol import BinaryProtocolSession

FRAME = 320


class Harness:
    def __init__(
        self, engines: Engines, config: SessionConfig | None = None, send_delay_s: float = 0.0
    ) -> None:
        self.frames: list[Frame] = []
        self.send_delay_s = send_delay_s
        # The reply guard is off by default here: the fakes' canned replies would trip
        # its repeat rule; test_reply_guard.py turns it on where it is under test.
        self.conn = BinaryProtocolSession(
            engines, self._sink, config or SessionConfig(fillers=False, reply_guard=False)
        )

    @property
    def session(self) -> Session:
        assert self.conn.session is not None, "no hello yet"
        return self.conn.session

    async def _sink(self, data: bytes) -> None:
        if self.send_delay_s:
            await asyncio.sleep(self.send_delay_s)  # a slow socket: back-pressure
        self.frames.append(decode(data))

    async def start(self, config: dict[str, Any] | None = None) -> None:
        hello: dict[str, Any] = {"type": "hello", "protocol": 1, "sample_rate": 16000}
        if config:
            hello["config"] = config
        await self.conn.on_message(encode_event(hello))

    async def feed(self, audio: FloatArray) -> None:
        for offset in range(0, len(audio), FRAME):
            chunk = float_to_pcm16(audio[offset : offset + FRAME])
            await self.conn.on_message(encode(FrameType.AUDIO_CHUNK, chunk))
            for _ in range(3):  # let the session's tasks take their next step
                await asyncio.sleep(0)

    async def settle(self) -> None:
        for _ in range(200):
            await asyncio.sleep(0)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [
            f.json()
            for f in self.frames
            if f.type is FrameType.EVENT and f.json().get("type") == kind
        ]

    def transcripts(self, final: bool) -> list[str]:
        return [f.text for f in self.frames if f.type is FrameType.TRANSCRIPT and f.final == final]

    async def say(self, text: str) -> None:
        await self.conn.on_message(encode_event({"type": "user_text", "text": text}))

    async def wait_for(self, kind: str, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait (wall time) until ``count`` events of ``kind`` have arrived."""
        for _ in range(int(timeout_s / 0.01)):
            if len(self.events(kind)) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {len(self.events(kind))} {kind} events after {timeout_s} s")

    async def wait_for_done(self, count: int, timeout_s: float = 5.0) -> None:
        for _ in range(int(timeout_s / 0.01)):
            if sum(f.type is FrameType.DONE for f in self.frames) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"fewer than {count} DONE frames after {timeout_s} s")

    def audio_ms(self) -> float:
        """Reply audio received so far (the fakes synthesize at 16 kHz)."""
        samples = sum(len(f.payload) // 2 for f in self.frames if f.type is FrameType.TTS_AUDIO)
        return samples / 16.0

    async def wait_for_audio_ms(self, ms: float, timeout_s: float = 5.0) -> None:
        for _ in range(int(timeout_s / 0.01)):
            if self.audio_ms() >= ms:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {self.audio_ms()} ms of audio after {timeout_s} s")

    def sequence(self) -> list[str]:
        """The turn-level skeleton of what arrived: turn_start N, interrupted N, metrics N, DONE."""
        out = []
        for f in self.frames:
            if f.type is FrameType.DONE:
                out.append("DONE")
            elif f.type is FrameType.EVENT:
                event = f.json()
                if event.get("type") in ("turn_start", "interrupted", "metrics"):
                    out.append(f"{event['type']} {event['turn']}")
        return out


EVER_TRIED = (0.2, 1.35)  # "Ever tried." in beckett.wav (seconds)
EVER_FAILED = (1.75, 2.95)
