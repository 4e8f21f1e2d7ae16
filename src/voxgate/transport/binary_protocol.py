"""The binary WebSocket protocol (docs/protocol.md) as an adapter on the session's ports.

Frames in are decoded here and become calls on the session's input side;
the session's typed output messages are encoded here into frames. Nothing
about frames or JSON lives in the session itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from voxgate.audio.pcm import int16_to_bytes, pcm16_to_float
from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.ports import (
    AudioOut,
    CameraSeen,
    ConfigChanged,
    Interrupted,
    Outbox,
    OutputMessage,
    ReplyText,
    SessionError,
    SessionReady,
    SpeechActivity,
    ToolActivity,
    Transcript,
    TurnDone,
    TurnReport,
    TurnStarted,
    UtteranceDropped,
)
from voxgate.protocol.frames import (
    FLAG_FILLER,
    FLAG_FINAL,
    PROTOCOL_VERSION,
    FrameType,
    ProtocolError,
    decode,
    encode,
    encode_event,
    encode_text,
)
from voxgate.session import INPUT_RATE, Session, session_setup
from voxgate.transport.limits import EventRateLimiter

log = logging.getLogger("voxgate.protocol")

# Version 1 clients (no playback reports) are still served: the server then
# estimates playback itself and says so in the metrics.
SUPPORTED_VERSIONS = (1, PROTOCOL_VERSION)
MAX_FRAME_BYTES_ADVERTISED = 1 << 20
# Events that cost the server real work, and how often a client may send them: a typed
# turn is an LLM generation plus its speech; a config update may regrow the audio ring.
EVENT_RATES = {"user_text": (1.0, 5), "config": (2.0, 10)}  # (per second, burst)


class CloseSession(Exception):
    """Raised by the handshake when the socket must be closed after the error frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _exactly(value: Any, expected: int) -> bool:
    """JSON number equality without Python's coercions (True == 1, 16000.0 == 16000)."""
    return type(value) is int and value == expected


def encode_message(message: OutputMessage, protocol: int = PROTOCOL_VERSION) -> list[bytes]:
    """One output message as the frames that carry it (one, except the welcome)."""
    if isinstance(message, AudioOut):
        flags = FLAG_FILLER if message.filler else 0
        return [encode(FrameType.TTS_AUDIO, int16_to_bytes(message.pcm), flags)]
    if isinstance(message, ReplyText):
        flags = FLAG_FILLER if message.filler else 0
        return [encode_text(FrameType.LLM_CHUNK, message.text, flags)]
    if isinstance(message, Transcript):
        flags = FLAG_FINAL if message.final else 0
        return [encode_text(FrameType.TRANSCRIPT, message.text, flags)]
    if isinstance(message, TurnDone):
        return [encode(FrameType.DONE)]
    if isinstance(message, UtteranceDropped):
        return []  # the native protocol says nothing of it: no turn_start follows
    if isinstance(message, SessionError):
        return [encode_text(FrameType.ERROR, f"{message.code}: {message.message}")]
    if isinstance(message, SessionReady):
        welcome = {
            "type": "welcome",
            "protocol": protocol,
            "session_id": message.session_id,
            "input_sample_rate": message.input_sample_rate,
            "output_sample_rate": message.output_sample_rate,
            "persona": message.persona,
            "persona_name": message.persona_name,
            "room": message.room,
            "max_frame_bytes": MAX_FRAME_BYTES_ADVERTISED,
            "config": message.config,
        }
        return [encode_event(welcome), encode(FrameType.READY)]
    return [encode_event(_event(message))]


def _event(message: OutputMessage) -> dict[str, Any]:
    if isinstance(message, SpeechActivity):
        return {"type": "vad", "speaking": message.speaking, "audio_ms": message.audio_ms}
    if isinstance(message, TurnStarted):
        return {"type": "turn_start", "turn": message.turn, "text": message.text}
    if isinstance(message, Interrupted):
        return {
            "type": "interrupted",
            "turn": message.turn,
            "played_ms": message.played_ms,
            "heard": message.heard,
            "playback": message.playback,
        }
    if isinstance(message, TurnReport):
        return message.payload
    if isinstance(message, ConfigChanged):
        return {"type": "config", **message.config}
    if isinstance(message, ToolActivity):
        return {"type": "tool", "turn": message.turn, **message.event}
    if isinstance(message, CameraSeen):
        return {"type": "camera", "frame": message.frame, "description": message.description,
                "ms": message.ms}  # fmt: skip
    raise TypeError(f"no encoding for {type(message).__name__}")


class BinaryProtocolSession:
    """One WebSocket connection: the handshake, then a ``Session`` behind it."""

    def __init__(
        self, engines: Engines, send: Callable[[bytes], Awaitable[None]], base_config: SessionConfig
    ) -> None:
        self.engines = engines
        self.base_config = base_config
        self.id = uuid.uuid4().hex[:12]
        self.outbox = Outbox(send, lambda message: encode_message(message, self.protocol))
        self.session: Session | None = None
        self.protocol = 0
        self._event_limits = {
            kind: EventRateLimiter(per_s, burst) for kind, (per_s, burst) in EVENT_RATES.items()
        }

    @property
    def ready(self) -> bool:
        return self.session is not None

    @property
    def config(self) -> SessionConfig:
        return self.session.config if self.session is not None else self.base_config

    def error(self, code: str, message: str) -> None:
        self.outbox.emit(SessionError(code, message))

    async def on_message(self, data: bytes) -> None:
        """One binary WebSocket message. Bad frames get an ERROR frame; the session goes on."""
        try:
            await self._dispatch(data)
        finally:
            await self.outbox.flush()  # what this message caused is on the wire, in order

    async def _dispatch(self, data: bytes) -> None:
        try:
            frame = decode(data)
        except ProtocolError as exc:
            self.error(exc.code, exc.message)
            return
        session = self.session
        if session is None:
            if frame.type is FrameType.EVENT and frame.json().get("type") == "hello":
                await self._hello(frame.json())
            else:
                self.error("handshake_required", "send an EVENT hello first (docs/protocol.md)")
            return
        if frame.type is FrameType.EVENT:
            self._on_event(session, frame.json())
        elif frame.type is FrameType.AUDIO_CHUNK:
            session.push_audio(pcm16_to_float(frame.payload))
        elif frame.type is FrameType.AUDIO_START:
            pass  # the stream is continuous; start carries no state we need
        elif frame.type is FrameType.AUDIO_END:
            session.end_audio()
        elif frame.type is FrameType.IMAGE:
            session.push_image(frame.payload)
        else:
            self.error("unexpected_type", f"{frame.type.name} is not sent by clients")

    def _on_event(self, session: Session, event: dict[str, Any]) -> None:
        kind = event.get("type")
        limit = self._event_limits.get(kind) if isinstance(kind, str) else None
        if limit is not None and not limit.admit(time.monotonic()):
            self.error(
                "rate_limited",
                f"too many {kind} events ({limit.describe()}); this one was dropped",
            )
            return
        try:
            if kind == "hello":
                raise ValueError("hello was already received")
            if kind == "config":
                try:
                    session.update_config({k: v for k, v in event.items() if k != "type"})
                except ValueError as exc:
                    raise ValueError(f"config rejected: {exc}") from exc
            elif kind == "user_text":
                session.push_text(event.get("text"))  # type: ignore[arg-type]
            elif kind == "playback":
                turn, played = event.get("turn"), event.get("played_ms")
                if (
                    type(turn) is not int
                    or not isinstance(played, int | float)
                    or isinstance(played, bool)
                    or not 0 <= played < float("inf")
                ):
                    raise ValueError("playback needs an integer 'turn' and 'played_ms' >= 0")
                session.playback(turn, float(played))
            else:
                raise ValueError(f"unknown event type {kind!r}")
        except ValueError as exc:
            self.error("bad_event", str(exc))

    async def _hello(self, event: dict[str, Any]) -> None:
        version = event.get("protocol")
        if not any(_exactly(version, v) for v in SUPPORTED_VERSIONS):
            self.error(
                "bad_protocol",
                f"this server speaks protocol {' or '.join(map(str, SUPPORTED_VERSIONS))}, "
                f"the client asked for {version!r}",
            )
            raise CloseSession(1002, "protocol version")
        if not _exactly(event.get("sample_rate"), INPUT_RATE):
            self.error(
                "bad_sample_rate",
                f"input must be PCM16 mono at {INPUT_RATE} Hz, "
                f"got {event.get('sample_rate')!r}: resample on the client",
            )
            raise CloseSession(1002, "sample rate")
        try:
            setup = session_setup(
                self.engines,
                self.base_config,
                persona=event.get("persona"),
                room=event.get("room"),
                user=event.get("user", "anonymous"),
                config=event.get("config"),
            )
        except (KeyError, ValueError) as exc:
            self.error("bad_event", str(exc))
            raise CloseSession(1008, "bad hello") from exc
        session = Session(self.engines, self.outbox, setup, self.id)
        await session.start()
        self.protocol = int(version)  # type: ignore[arg-type]
        self.session = session
        self.outbox.emit(
            SessionReady(
                session_id=session.id,
                persona=session.persona.id,
                persona_name=session.persona.name,
                room=[{"id": p.id, "name": p.name} for p in session.room],
                input_sample_rate=INPUT_RATE,
                output_sample_rate=self.engines.tts.sample_rate,
                config=session.config.model_dump(),
            )
        )

    async def close(self) -> None:
        try:
            if self.session is not None:
                await self.session.close()
        finally:
            await self.outbox.close()
