"""The session's output port: typed messages out, whatever the wire protocol.

The session never encodes frames or JSON. It emits these messages; a
transport adapter (the binary WebSocket protocol today; an OpenAI-Realtime
endpoint or a phone bridge next) encodes them at the edge. ``Outbox`` keeps
them in emission order and writes them from one task, so a slow socket never
reorders two messages and never blocks the session's decisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from voxgate.aio import cancel_and_wait
from voxgate.audio.pcm import Int16Array

log = logging.getLogger("voxgate.ports")


@dataclass(frozen=True, slots=True)
class AudioOut:
    """Reply audio of ``turn`` at the TTS output rate."""

    pcm: Int16Array
    turn: int
    filler: bool = False


@dataclass(frozen=True, slots=True)
class ReplyText:
    """Reply text of ``turn``, a clause at a time, sent before that clause's audio."""

    text: str
    turn: int
    filler: bool = False


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    final: bool
    utterance: int | None = None  # the utterance it transcribes (None: unknown)


@dataclass(frozen=True, slots=True)
class SpeechActivity:
    speaking: bool
    audio_ms: int
    utterance: int | None = None


@dataclass(frozen=True, slots=True)
class UtteranceDropped:
    """An utterance that will not become a turn (a cough, no words, a failed decode)."""

    utterance: int


@dataclass(frozen=True, slots=True)
class TurnStarted:
    turn: int
    text: str
    speak: bool = True  # False: a text-only reply (no audio will follow)


@dataclass(frozen=True, slots=True)
class Interrupted:
    turn: int
    played_ms: int
    heard: str
    playback: str  # "client": the client's report; "estimate": the server's own model


@dataclass(frozen=True, slots=True)
class TurnReport:
    """A turn's metrics (``TurnMetrics.event()``), sent when it ends."""

    turn: int
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolActivity:
    """A tool call of ``turn``'s reply: started, then its outcome and duration."""

    turn: int
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TurnDone:
    turn: int


@dataclass(frozen=True, slots=True)
class SessionError:
    code: str
    message: str
    turn: int | None = None  # the turn it ended, if it is a turn's error


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionReady:
    """The handshake succeeded: who answers, at which rates, with which settings."""

    session_id: str
    persona: str
    persona_name: str
    room: list[dict[str, str]]
    input_sample_rate: int
    output_sample_rate: int
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CameraSeen:
    """A camera frame was described (voxgate.vision.camera): the sentence the next turn's
    prompt gets, and how long each part took."""

    frame: int
    description: str
    ms: dict[str, float]


OutputMessage = (
    AudioOut
    | ReplyText
    | Transcript
    | SpeechActivity
    | TurnStarted
    | Interrupted
    | TurnReport
    | TurnDone
    | SessionError
    | ConfigChanged
    | SessionReady
    | UtteranceDropped
    | ToolActivity
    | CameraSeen
)


class OutputPort(Protocol):
    def emit(self, message: OutputMessage) -> None:
        """Queue a message; never blocks. Messages leave in the order emitted."""

    def drop_audio(self, turn: int) -> None:
        """Discard audio of ``turn`` that is queued and not yet written (barge-in)."""

    def backlog(self) -> int:
        """Audio messages emitted and not yet written: a socket slower than real time
        shows here."""


Wire = TypeVar("Wire", bytes, str)  # what the socket carries: binary frames or JSON text


@dataclass
class Outbox(Generic[Wire]):
    """An ``OutputPort`` that encodes with ``encode`` and writes with ``send`` from one task.

    An adapter may queue messages of its own beside the session's (``object``): they
    leave in the same order as everything else."""

    send: Callable[[Wire], Awaitable[None]]
    encode: Callable[[Any], list[Wire]]
    _queue: deque[object] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    closed: bool = False

    def emit(self, message: object) -> None:
        if self.closed:
            return
        self._queue.append(message)
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write(), name="outbox")

    def drop_audio(self, turn: int) -> None:
        kept = [m for m in self._queue if not (isinstance(m, AudioOut) and m.turn == turn)]
        self._queue.clear()
        self._queue.extend(kept)

    def backlog(self) -> int:
        return sum(isinstance(m, AudioOut) for m in self._queue)  # a few items at most

    async def _write(self) -> None:
        while True:
            while not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            message = self._queue.popleft()
            try:
                encoded = self.encode(message)
            except Exception:  # a message that cannot be encoded costs that message only
                log.exception("outbox: could not encode %s", type(message).__name__)
                continue
            try:
                for data in encoded:
                    await self.send(data)
            except (ConnectionError, RuntimeError) as exc:
                # The peer is gone: nothing more can be delivered, and nothing should wait.
                log.debug("outbox: send failed (%s); dropping further output", exc)
                self.closed = True
                self._queue.clear()
                self._idle.set()
                return
            except Exception:  # e.g. a value the socket refuses: that message only
                log.exception("outbox: could not send %s", type(message).__name__)

    async def flush(self) -> None:
        """Wait until everything emitted so far has been written (or the peer is gone)."""
        if self._queue and not self.closed:
            await self._idle.wait()

    async def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._idle.set()  # nobody waits on a closed outbox
        task, self._task = self._task, None
        await cancel_and_wait(task)
