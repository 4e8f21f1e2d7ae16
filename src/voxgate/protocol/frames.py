"""Binary frames: ``[type: u8][flags: u8][payload]``, documented in docs/protocol.md.

Every WebSocket message is exactly one frame. Audio is raw PCM16LE; text is
UTF-8; the EVENT type carries one JSON object. Nothing is base64-encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

PROTOCOL_VERSION = 2  # 2 adds the client's playback reports; 1 is still accepted
HEADER_SIZE = 2
# 1 MiB keeps one frame well above any sane audio chunk (20 ms at 16 kHz is
# 640 bytes) while bounding what a single message can make us buffer.
MAX_FRAME_BYTES = 1 << 20
# Control messages (hello, config) are a few hundred bytes; 64 KiB bounds what
# one EVENT can make the JSON parser and the session chew on.
MAX_EVENT_BYTES = 64 * 1024
# No event of the protocol nests deeper than 3; 32 refuses absurd nesting
# long before the parser's own recursion limit.
MAX_JSON_DEPTH = 32

FLAG_FINAL = 0x01  # transcript: this transcript is final for the utterance
FLAG_FILLER = 0x02  # tts_audio / llm_chunk: an acknowledgment, not the answer


class FrameType(IntEnum):
    AUDIO_START = 0x01
    AUDIO_CHUNK = 0x02
    AUDIO_END = 0x03
    TRANSCRIPT = 0x04
    LLM_CHUNK = 0x05
    TTS_AUDIO = 0x06
    ERROR = 0x07
    READY = 0x08
    DONE = 0x09
    EVENT = 0x0A
    IMAGE = 0x0B  # client -> server: one camera frame, a JPEG or PNG file


TEXT_TYPES = frozenset({FrameType.TRANSCRIPT, FrameType.LLM_CHUNK, FrameType.ERROR})
AUDIO_TYPES = frozenset({FrameType.AUDIO_CHUNK, FrameType.TTS_AUDIO})
EMPTY_TYPES = frozenset(
    {FrameType.AUDIO_START, FrameType.AUDIO_END, FrameType.READY, FrameType.DONE}
)


class ProtocolError(ValueError):
    """A frame that cannot be decoded. The message is sent back in an ERROR frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    flags: int = 0
    payload: bytes = b""

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    @property
    def final(self) -> bool:
        return bool(self.flags & FLAG_FINAL)

    def json(self) -> dict[str, Any]:
        value = json.loads(self.payload)
        if not isinstance(value, dict):
            raise ProtocolError("bad_json", "EVENT payload must be a JSON object")
        return value


def encode(frame_type: FrameType, payload: bytes = b"", flags: int = 0) -> bytes:
    if not 0 <= flags <= 0xFF:
        raise ValueError(f"flags must fit in a byte, got {flags}")
    return bytes((int(frame_type), flags)) + payload


def encode_text(frame_type: FrameType, text: str, flags: int = 0) -> bytes:
    return encode(frame_type, text.encode("utf-8"), flags)


def encode_event(event: dict[str, Any]) -> bytes:
    return encode(FrameType.EVENT, json.dumps(event, separators=(",", ":")).encode("utf-8"))


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``{}`` is 1), counted
    without recursion; stops counting once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def decode(data: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Frame:
    """Decode one frame or raise ProtocolError; never raises anything else."""
    if len(data) > max_bytes:
        raise ProtocolError("oversized", f"frame of {len(data)} bytes exceeds {max_bytes}")
    if len(data) < HEADER_SIZE:
        raise ProtocolError("truncated", f"frame of {len(data)} bytes has no full header")
    raw_type, flags = data[0], data[1]
    try:
        frame_type = FrameType(raw_type)
    except ValueError:
        raise ProtocolError("unknown_type", f"unknown frame type 0x{raw_type:02x}") from None
    payload = bytes(data[HEADER_SIZE:])
    if frame_type in AUDIO_TYPES and len(payload) % 2:
        raise ProtocolError("odd_pcm", "PCM16 payload has an odd number of bytes")
    if frame_type in EMPTY_TYPES and payload:
        raise ProtocolError("unexpected_payload", f"{frame_type.name} carries no payload")
    if frame_type is FrameType.EVENT and len(payload) > MAX_EVENT_BYTES:
        raise ProtocolError(
            "oversized", f"EVENT payload of {len(payload)} bytes exceeds {MAX_EVENT_BYTES}"
        )
    if frame_type in TEXT_TYPES or frame_type is FrameType.EVENT:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("bad_utf8", f"{frame_type.name} payload is not UTF-8") from None
    if frame_type is FrameType.EVENT:
        try:
            value = json.loads(payload)
        except RecursionError:
            raise ProtocolError(
                "too_deep", f"EVENT JSON nests deeper than {MAX_JSON_DEPTH} levels"
            ) from None
        except ValueError:
            raise ProtocolError("bad_json", "EVENT payload is not valid JSON") from None
        if not isinstance(value, dict):
            raise ProtocolError("bad_json", "EVENT payload must be a JSON object")
        if json_depth(value) > MAX_JSON_DEPTH:
            raise ProtocolError("too_deep", f"EVENT JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return Frame(frame_type, flags, payload)
