"""Coverage-guided fuzzing (atheris / libFuzzer) of the frame decoder and the session's
control-message handling.

    python tests/fuzz/fuzz_frames.py -runs=20000 CORPUS_DIR

Input layout (simple, so seeds are easy to write): the first byte picks the target,
the rest is its input.

- 0: ``decode`` alone. Must return a frame or raise ``ProtocolError``.
- 1: one message to a fresh session (the handshake path). Only ``CloseSession`` may
  escape; a rejected message must be answered with an ERROR frame.
- 2: length-prefixed messages (u16 LE length, then that many bytes) to a long-lived
  session past its handshake: nothing may escape, every undecodable message gets
  an ERROR frame carrying the decoder's code, and everything sent decodes.
- 3: structure-aware: the bytes choose a JSON control message (type, fields and
  values from the protocol's vocabulary or arbitrary), sent as the first message
  of a fresh session or to the long-lived one. Byte mutations rarely produce
  well-formed JSON with odd field types; this target does so on every input.

Any other exception or a broken invariant is a crash: libFuzzer writes the input to
``crash-*`` and exits non-zero.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path
from typing import Any

import atheris

# Third-party modules first, outside the instrumentation: only voxgate gets coverage.
import numpy  # noqa: F401
import pydantic  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

with atheris.instrument_imports(include=["voxgate"]):
    import voxgate.session as session_module
    from voxgate.config import SessionConfig
    from voxgate.protocol.frames import FrameType, ProtocolError, decode, encode, encode_event
    from voxgate.transport.binary_protocol import BinaryProtocolSession, CloseSession

from tests.fakes import FakeEngines

TARGETS = 4
# The protocol's vocabulary, so structured messages hit the fields the session reads.
# (Lists: FuzzedDataProvider.PickValueInList takes nothing else.)
FIELDS = [
    "type",
    "protocol",
    "sample_rate",
    "persona",
    "config",
    "text",
    *SessionConfig.model_fields,
]
WORDS = ["hello", "config", "user_text", "ada", "", "16000", "welcome"]
NUMBERS = [0, 1, -1, 2, 16000, 44100, 200, 1500, 2**31, 2**63, 10**30]
VALID_HELLO = {"type": "hello", "protocol": 1, "sample_rate": 16000}
HELLO = encode_event(VALID_HELLO)
# The long-lived session is renewed now and then so its history (and the prompts
# built from it) stays small and each input runs in about the same time.
RENEW_EVERY = 500


class UnfedVad:
    """Stands in for Silero in target 1's throwaway sessions, which never receive audio
    (they get one message and are dropped); the real one takes ~100 ms to create."""

    window = 512

    def feed(self, samples: Any) -> list[tuple[int, float]]:
        raise AssertionError("target 1 sessions never receive audio")


class Recorder:
    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def __call__(self, data: bytes) -> None:
        self.frames.append(decode(data))  # whatever the server sends must decode

    def errors_since(self, start: int) -> list[str]:
        return [f.text for f in self.frames[start:] if f.type is FrameType.ERROR]


def expected_error(data: bytes) -> str | None:
    try:
        decode(data)
    except ProtocolError as exc:
        return exc.code
    return None


class Harness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.inputs = 0
        self.recorder, self.session = self._ready_session()

    def _ready_session(self) -> tuple[Recorder, BinaryProtocolSession]:
        recorder = Recorder()
        session = BinaryProtocolSession(FakeEngines(), recorder, SessionConfig(fillers=False))
        self.loop.run_until_complete(session.on_message(HELLO))
        assert session.ready
        return recorder, session

    def decoder(self, data: bytes) -> None:
        try:
            frame = decode(data)
        except ProtocolError:
            return
        assert encode(frame.type, frame.payload, frame.flags) == data

    def handshake(self, data: bytes) -> None:
        recorder = Recorder()
        session = BinaryProtocolSession(FakeEngines(), recorder, SessionConfig(fillers=False))
        real_vad = session_module.SileroStreamVad
        session_module.SileroStreamVad = UnfedVad  # type: ignore[misc,assignment]
        try:
            self.loop.run_until_complete(session.on_message(data))
        except CloseSession:
            assert recorder.errors_since(0), "closed without an ERROR frame"
        finally:
            session_module.SileroStreamVad = real_vad  # type: ignore[misc]
            self.loop.run_until_complete(session.close())
        if not session.ready:
            assert recorder.errors_since(0), f"message {data!r} was ignored silently"

    def messages(self, data: bytes) -> None:
        self.inputs += 1
        if self.inputs % RENEW_EVERY == 0:
            self.loop.run_until_complete(self.session.close())
            self.recorder, self.session = self._ready_session()
        self.loop.run_until_complete(self._feed(data))

    async def _feed(self, data: bytes) -> None:
        offset = 0
        while offset + 2 <= len(data):
            (length,) = struct.unpack_from("<H", data, offset)
            message = data[offset + 2 : offset + 2 + length]
            offset += 2 + length
            code = expected_error(message)
            start = len(self.recorder.frames)
            await self.session.on_message(message)
            if code is not None:
                errors = self.recorder.errors_since(start)
                assert any(e.startswith(code) for e in errors), (message, errors)
            for _ in range(3):  # let spawned replies take a few steps
                await asyncio.sleep(0)

    def structured(self, data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        kind = fdp.PickValueInList(["hello", "config", "user_text", "x"])
        # A hello starts valid, so that changing a field or two reaches the checks after
        # protocol and sample rate.
        event: dict[str, Any] = dict(VALID_HELLO) if kind == "hello" else {"type": kind}
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            event[fdp.PickValueInList(FIELDS)] = fuzzed_json(fdp, 0)
        message = encode_event(event)
        if expected_error(message) is not None:
            return  # too deep or too long: the decoder targets cover those
        if event["type"] == "hello" and fdp.ConsumeBool():
            self.handshake(message)
        else:
            self.loop.run_until_complete(self._feed(struct.pack("<H", len(message)) + message))

    def run(self, data: bytes) -> None:
        if not data:
            return
        target, rest = data[0] % TARGETS, data[1:]
        if target == 0:
            self.decoder(rest)
        elif target == 1:
            self.handshake(rest)
        elif target == 2:
            self.messages(rest)
        else:
            self.structured(rest)


def fuzzed_json(fdp: Any, depth: int) -> Any:
    """A JSON value chosen by the input bytes: vocabulary, scalars or containers."""
    kind = fdp.ConsumeIntInRange(0, 8 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.PickValueInList(NUMBERS)
    if kind == 3:
        return fdp.ConsumeIntInRange(-(2**40), 2**40)
    if kind == 4:
        return fdp.ConsumeRegularFloat()
    if kind == 5:
        return fdp.PickValueInList(WORDS)
    if kind == 6:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    if kind == 7:
        return [fuzzed_json(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {
        fdp.PickValueInList(FIELDS): fuzzed_json(fdp, depth + 1)
        for _ in range(fdp.ConsumeIntInRange(0, 3))
    }


def seed_inputs() -> list[bytes]:
    """Starting points that reach past the first checks of each target."""

    def framed(*messages: bytes) -> bytes:
        return b"".join(struct.pack("<H", len(m)) + m for m in messages)

    config = encode_event({"type": "config", "endpoint_min_ms": 300, "interim_stt": False})
    user_text = encode_event({"type": "user_text", "text": "Hello there."})
    audio = encode(FrameType.AUDIO_CHUNK, bytes(640))
    return [
        b"\x00" + HELLO,
        b"\x00" + audio,
        b"\x01" + HELLO,
        b"\x01"
        + encode_event(
            {
                "type": "hello",
                "protocol": 1,
                "sample_rate": 16000,
                "persona": "ada",
                "config": {"endpoint_min_ms": 250},
            }
        ),
        b"\x02" + framed(config, user_text),
        b"\x02" + framed(encode(FrameType.AUDIO_START), audio, audio, encode(FrameType.AUDIO_END)),
        b"\x03" + bytes(range(64)),
        b"\x03" + bytes(range(255, 191, -1)),
    ]


def main() -> None:
    harness = Harness()
    atheris.Setup(sys.argv, harness.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
