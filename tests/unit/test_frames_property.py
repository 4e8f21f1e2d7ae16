"""Property-based tests: the frame codec and the session's handling of arbitrary input.

The session runs with ``FakeEngines`` (scripted STT/LLM/TTS from tests/fakes.py)
so that only its message handling is under test; the VAD stays real.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import FakeEngines
from voxgate.config import SessionConfig
from voxgate.protocol.frames import (
    AUDIO_TYPES,
    EMPTY_TYPES,
    TEXT_TYPES,
    Frame,
    FrameType,
    ProtocolError,
    decode,
    encode,
    encode_event,
    encode_text,
)
from voxgate.transport.binary_protocol import BinaryProtocolSession, CloseSession

SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60)
VALID_HELLO: dict[str, Any] = {"type": "hello", "protocol": 1, "sample_rate": 16000}


# -- strategies -----------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
config_keys = st.sampled_from(sorted(SessionConfig.model_fields)) | st.text(max_size=12)


# Values a careless or hostile client puts where a number or a name belongs.
tricky_values = st.sampled_from(
    [
        1,
        16000,
        "ada",
        "nobody",
        "",
        None,
        True,
        False,
        16000.0,
        1.0,
        "16000",
        [],
        {},
        ["ada"],
        {"id": "ada"},
        -1,
        2**64,
    ]
)


@st.composite
def near_valid_hellos(draw: st.DrawFn) -> dict[str, Any]:
    """A valid hello with one or two fields replaced, removed or added: mostly-valid
    input reaches the deeper checks that random objects never get past."""
    hello = dict(VALID_HELLO)
    fields = st.sampled_from(["protocol", "sample_rate", "persona", "config"])
    for key in draw(st.lists(fields, min_size=1, max_size=2, unique=True)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            hello.pop(key, None)
        elif choice == 1:
            hello[key] = draw(json_values)
        elif key == "config" and choice == 2:
            hello[key] = draw(st.dictionaries(config_keys, json_values, max_size=3))
        else:
            hello[key] = draw(tricky_values)
    return hello


@st.composite
def frames_of_every_type(draw: st.DrawFn) -> tuple[FrameType, int, bytes]:
    frame_type = draw(st.sampled_from(list(FrameType)))
    flags = draw(st.integers(0, 255))
    if frame_type in EMPTY_TYPES:
        payload = b""
    elif frame_type in AUDIO_TYPES:
        payload = draw(st.binary(max_size=2048).map(lambda b: b[: len(b) // 2 * 2]))
    elif frame_type in TEXT_TYPES:
        payload = draw(st.text(max_size=200)).encode("utf-8")
    else:
        obj = draw(json_objects)
        payload = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return frame_type, flags, payload


def typed_frames() -> st.SearchStrategy[bytes]:
    """A valid type byte and flags, any payload: gets past the header checks."""
    types = st.sampled_from([int(t) for t in FrameType])
    return st.builds(
        lambda t, f, p: bytes([t, f]) + p, types, st.integers(0, 255), st.binary(max_size=300)
    )


client_messages = st.one_of(
    st.binary(max_size=64),
    typed_frames(),
    st.builds(encode_event, json_objects),
    st.builds(
        lambda kind, obj: encode_event({**obj, "type": kind}),
        st.sampled_from(["hello", "config", "user_text"]) | st.text(max_size=8),
        json_objects,
    ),
    st.builds(
        lambda pcm: encode(FrameType.AUDIO_CHUNK, pcm[: len(pcm) // 2 * 2]),
        st.binary(min_size=2, max_size=1280),
    ),
    st.sampled_from([encode(FrameType.AUDIO_START), encode(FrameType.AUDIO_END)]),
)


# -- the codec ------------------------------------------------------------------


@given(frames_of_every_type())
def test_encode_decode_round_trips_every_type(spec: tuple[FrameType, int, bytes]) -> None:
    frame_type, flags, payload = spec
    frame = decode(encode(frame_type, payload, flags))
    assert frame == Frame(frame_type, flags, payload)
    if frame_type is FrameType.EVENT:
        assert frame.json() == json.loads(payload)


@given(st.sampled_from(sorted(TEXT_TYPES)), st.text(max_size=200), st.integers(0, 255))
def test_text_round_trips(frame_type: FrameType, text: str, flags: int) -> None:
    assert decode(encode_text(frame_type, text, flags)).text == text


@given(json_objects)
def test_events_round_trip(obj: dict[str, Any]) -> None:
    assert decode(encode_event(obj)).json() == obj


@given(st.binary(max_size=512) | typed_frames())
def test_decode_raises_only_protocol_errors(data: bytes) -> None:
    try:
        frame = decode(data)
    except ProtocolError as exc:
        assert exc.code and str(exc).startswith(exc.code)
        return
    assert encode(frame.type, frame.payload, frame.flags) == data


# -- the session ------------------------------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.out: list[Frame] = []
        self.session = BinaryProtocolSession(
            FakeEngines(), self._sink, SessionConfig(fillers=False)
        )

    async def _sink(self, data: bytes) -> None:
        self.out.append(decode(data))  # everything the server sends must decode

    async def send(self, data: bytes) -> tuple[list[Frame], bool]:
        """New frames answering ``data``, and whether the session asked to close."""
        before = len(self.out)
        closed = False
        try:
            await self.session.on_message(data)
        except CloseSession:
            closed = True
        return self.out[before:], closed

    async def close(self) -> None:
        await self.session.close()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, f"tasks outlived the session: {others}"


def errors(frames: list[Frame]) -> list[str]:
    return [f.text for f in frames if f.type is FrameType.ERROR]


def events(frames: list[Frame], kind: str) -> list[dict[str, Any]]:
    return [f.json() for f in frames if f.type is FrameType.EVENT and f.json()["type"] == kind]


def check_hello(hello: dict[str, Any]) -> None:
    async def scenario() -> None:
        h = Harness()
        frames, closed = await h.send(encode_event(hello))
        if h.session.ready:
            assert not closed and not errors(frames)
            assert events(frames, "welcome") and frames[-1].type is FrameType.READY
            # Accepted only what the protocol says, with exact types (True == 1 in Python).
            assert type(hello["protocol"]) is int and hello["protocol"] == 1
            assert type(hello["sample_rate"]) is int and hello["sample_rate"] == 16000
            assert hello.get("persona") in (None, "", "ada")  # "" and null: the default
        else:
            assert errors(frames), f"bad hello {hello!r} got no ERROR frame"
            assert not events(frames, "welcome")
            if hello.get("type") != "hello":
                assert errors(frames)[0].startswith("handshake_required")
        await h.close()

    asyncio.run(scenario())


@SLOW
@given(json_objects)
def test_arbitrary_objects_as_first_message_get_an_error(obj: dict[str, Any]) -> None:
    check_hello(obj)


@SLOW
@given(near_valid_hellos())
def test_hello_is_accepted_exactly_when_valid(hello: dict[str, Any]) -> None:
    check_hello(hello)


def test_the_valid_hello_is_accepted() -> None:
    async def scenario() -> None:
        h = Harness()
        frames, closed = await h.send(
            encode_event({**VALID_HELLO, "persona": "ada", "config": {"endpoint_min_ms": 300}})
        )
        assert h.session.ready and not closed
        assert events(frames, "welcome")[0]["config"]["endpoint_min_ms"] == 300
        await h.close()

    asyncio.run(scenario())


@SLOW
@given(st.lists(st.dictionaries(config_keys, json_values, max_size=4), min_size=1, max_size=8))
def test_config_updates_apply_whole_or_not_at_all(updates: list[dict[str, Any]]) -> None:
    async def scenario() -> None:
        h = Harness()
        await h.send(encode_event(VALID_HELLO))
        for update in updates:
            before = h.session.config
            frames, closed = await h.send(encode_event({**update, "type": "config"}))
            assert not closed
            answers = events(frames, "config")
            if answers:
                assert not errors(frames)
                assert answers[0] == {"type": "config", **h.session.config.model_dump()}
            else:
                assert errors(frames)[0].startswith("bad_event")
                assert h.session.config == before
        await h.close()

    asyncio.run(scenario())


@SLOW
@given(st.lists(client_messages, min_size=1, max_size=20))
def test_any_message_sequence_is_answered_and_never_crashes(messages: list[bytes]) -> None:
    async def scenario() -> None:
        h = Harness()
        await h.send(encode_event(VALID_HELLO))
        for data in messages:
            try:
                decode(data)
            except ProtocolError as exc:
                expected: str | None = exc.code
            else:
                expected = None
            frames, closed = await h.send(data)
            assert not closed  # only a hello can close, and the session is past it
            if expected is not None:
                assert any(e.startswith(expected) for e in errors(frames)), (data, frames)
            await asyncio.sleep(0)  # let spawned work take a step between messages
        await h.close()

    asyncio.run(scenario())
