"""An in-process client for one persona's Session: typed turns in, frames out, timed.

It plays a polite user: it sends a turn (EVENT ``user_text``), waits for
DONE, then waits until the audio it received would have finished playing
before it speaks again, so no turn barges in on the previous reply.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.protocol.frames import (
    FLAG_FILLER,
    HEADER_SIZE,
    PROTOCOL_VERSION,
    FrameType,
    encode_event,
)
from voxgate.transport.binary_protocol import BinaryProtocolSession

# The client's playback estimate starts a hair before the server's (the server
# stamps after its send returns): wait this much longer so the next turn never
# lands while the server still thinks the reply is playing.
PLAYBACK_MARGIN_S = 0.02
TURN_TIMEOUT_S = 300.0  # a real-model turn behind 11 others on 2 cores is slow, not stuck


@dataclass(slots=True)
class TurnRecord:
    persona: str
    turn: int  # 1-based, per persona
    text: str
    sent: float  # perf_counter when the user_text message was handed to the session
    first_audio: float | None = None  # first answer TTS_AUDIO frame received
    done: float | None = None  # DONE frame received
    metrics: dict[str, Any] = field(default_factory=dict)  # the session's metrics event
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def reply(self) -> str:
        return str(self.metrics.get("reply") or "")

    @property
    def turn_ms(self) -> float | None:
        return None if self.done is None else (self.done - self.sent) * 1000.0

    @property
    def first_audio_ms(self) -> float | None:
        return None if self.first_audio is None else (self.first_audio - self.sent) * 1000.0

    @property
    def llm(self) -> dict[str, Any]:
        usage: dict[str, Any] = self.metrics.get("llm") or {}
        return usage

    @property
    def llm_ttft_ms(self) -> float | None:
        value = (self.metrics.get("durations") or {}).get("llm_ttft")
        return None if value is None else float(value)


class PersonaClient:
    """One Session bound to one persona, driven with typed turns."""

    def __init__(self, engines: Engines, persona_id: str, config: SessionConfig) -> None:
        self.persona_id = persona_id
        self.session = BinaryProtocolSession(engines, self._sink, config)
        self.sample_rate = engines.tts.sample_rate
        self.records: list[TurnRecord] = []
        self.listen_wait_s = 0.0  # time spent letting replies finish playing
        self._current: TurnRecord | None = None
        self._done = asyncio.Event()
        self._ready = False
        self._samples = 0
        self._playing_until = 0.0

    async def _sink(self, data: bytes) -> None:
        # Reads the header in place and parses only EVENTs: the client's CPU is
        # counted with the substrate's, so it stays as small as it can be.
        now = time.perf_counter()
        kind, flags, record = data[0], data[1], self._current
        if kind == FrameType.READY:
            self._ready = True
        elif record is None:
            return
        elif kind == FrameType.TTS_AUDIO and not flags & FLAG_FILLER:
            if record.first_audio is None:
                record.first_audio = now
            self._samples += (len(data) - HEADER_SIZE) // 2
        elif kind == FrameType.EVENT:
            event = json.loads(data[HEADER_SIZE:])
            if event.get("type") == "metrics":
                record.metrics = event
            elif event.get("type") == "interrupted":
                record.interrupted = True
        elif kind == FrameType.ERROR:
            record.errors.append(data[HEADER_SIZE:].decode("utf-8", "replace"))
        elif kind == FrameType.DONE:
            record.done = now
            self._done.set()

    async def handshake(self) -> None:
        hello = {"type": "hello", "protocol": PROTOCOL_VERSION, "sample_rate": 16000,
                 "persona": self.persona_id}
        await self.session.on_message(encode_event(hello))
        if not self._ready:
            raise RuntimeError(f"session for {self.persona_id} did not become ready")

    async def listen(self) -> None:
        """Wait until the last reply has finished playing on this (imaginary) client."""
        wait = self._playing_until + PLAYBACK_MARGIN_S - time.perf_counter()
        if self._playing_until and wait > 0:
            self.listen_wait_s += wait
            await asyncio.sleep(wait)

    async def turn(self, text: str) -> TurnRecord:
        await self.listen()
        record = TurnRecord(self.persona_id, len(self.records) + 1, text, time.perf_counter())
        self._current, self._samples = record, 0
        self._done.clear()
        self.records.append(record)
        await self.session.on_message(encode_event({"type": "user_text", "text": text}))
        await asyncio.wait_for(self._done.wait(), TURN_TIMEOUT_S)
        if record.first_audio is not None:
            self._playing_until = record.first_audio + self._samples / self.sample_rate
        self._current = None
        return record

    async def close(self) -> None:
        await self.session.close()
