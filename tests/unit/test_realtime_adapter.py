"""The Realtime adapter in-process, with fake engines (tests/fakes.py) to isolate it from
the models: every server event must validate against the official SDK's own types."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from openai.types.beta.realtime.realtime_server_event import (
    RealtimeServerEvent as BetaServerEvent,
)
from openai.types.realtime.realtime_server_event import RealtimeServerEvent
from PIL import Image
from pydantic import TypeAdapter

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines, speech
from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.realtime.adapter import RealtimeConnection

GA_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
BETA_EVENT: TypeAdapter[Any] = TypeAdapter(BetaServerEvent)
QUIET = SessionConfig(fillers=False, reply_guard=False)


class Wire:
    """The socket: every JSON event the adapter sent, parsed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def send(self, data: str) -> None:
        self.events.append(json.loads(data))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                await asyncio.sleep(0.005)
        return self.of(kind)[count - 1]


async def opened(engines: Engines, *, beta: bool = False) -> tuple[RealtimeConnection, Wire]:
    wire = Wire()
    conn = RealtimeConnection(engines, wire.send, QUIET, beta=beta)
    await conn.start(None)
    return conn, wire


async def send(conn: RealtimeConnection, **event: Any) -> None:
    await conn.on_text(json.dumps(event))


def user_text(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }


def image_item(url: str, text: str = "") -> dict[str, Any]:
    """A conversation.item.create event with a picture (and words, if given)."""
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}] if text else []
    parts.append({"type": "input_image", "image_url": url})
    item = {"type": "message", "role": "user", "content": parts}
    return {"type": "conversation.item.create", "item": item}


def jpeg_url(colour: tuple[int, int, int]) -> str:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(out, "JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def validate(events: list[dict[str, Any]], adapter: TypeAdapter[Any]) -> None:
    """Every event as the SDK types it; every new item's previous_item_id names the item
    added just before it on the wire."""
    last_added = None
    for event in events:
        if not event["type"].startswith("voxgate."):  # our extra, unknown to the SDK
            adapter.validate_python(event)
        if event["type"] in ("conversation.item.added", "conversation.item.created"):
            assert event["previous_item_id"] == last_added, event
            last_added = event["item"]["id"]


def test_text_turn_events_validate_and_come_in_order() -> None:
    llm = FakeLLM(reply="Paris is the capital.")
    engines = fake_engines(FakeSTT(lambda s: ""), llm)

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, type="session.update", session={"instructions": "Answer in French."})
        await send(conn, type="conversation.item.create", item=user_text("Capital of France?"))
        await send(conn, type="response.create", response={"instructions": "Be brief."})
        await wire.wait_for("voxgate.turn.metrics")
        await conn.close()
        return wire

    wire = run(scenario)
    validate(wire.events, GA_EVENT)
    assert wire.types()[:4] == [
        "session.created",
        "session.updated",
        "conversation.item.added",
        "conversation.item.done",
    ]
    tail = [t for t in wire.types()[4:] if not t.endswith(".delta")]
    assert tail == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "voxgate.turn.metrics",
    ]
    done = wire.of("response.done")[0]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["transcript"] == "Paris is the capital."
    assert done["usage"]["output_tokens"] == 4
    assert wire.of("response.output_audio.delta")  # FakeTTS speaks silence, resampled
    messages = llm.requests[0].messages
    # Session instructions after the persona's own; per-response ones last, uncached.
    assert messages[0].role == "system"
    assert messages[0].content.index("Ada") < messages[0].content.index("Answer in French.")
    assert [m.role for m in messages[-2:]] == ["user", "system"]
    assert messages[-2].content == "Capital of France?"
    assert messages[-1].content == "Be brief."


def test_a_second_response_while_one_is_active_is_refused() -> None:
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(token_delay_s=0.02))

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, type="conversation.item.create", item=user_text("Hello?"))
        await send(conn, type="response.create")
        await send(conn, type="response.create", event_id="evt_again")
        await wire.wait_for("response.done")
        await send(conn, type="response.create")  # after it: fine
        await wire.wait_for("response.done", count=2)
        await conn.close()
        return wire

    wire = run(scenario)
    (error,) = wire.of("error")
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["event_id"] == "evt_again"
    assert [e["response"]["status"] for e in wire.of("response.done")] == ["completed"] * 2


def test_cancel_stops_the_reply_and_its_generation() -> None:
    llm = FakeLLM(reply="This is one more sentence. " * 60, token_delay_s=0.01)
    engines = fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(delay_s=0.01))

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, type="conversation.item.create", item=user_text("Talk a lot."))
        await send(conn, type="response.create")
        await wire.wait_for("response.output_audio_transcript.delta")
        await send(conn, type="response.cancel")
        await wire.wait_for("response.done")
        await send(conn, type="response.cancel", event_id="evt_late")  # nothing left
        await conn.close()
        return wire

    wire = run(scenario)
    done = wire.of("response.done")[0]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    assert llm.closed_early == 1
    assert wire.of("error")[-1]["error"]["code"] == "response_cancel_not_active"


async def counted(conn: RealtimeConnection, wire: Wire) -> str:
    """Ask for a count and wait for the whole reply; its assistant item's id."""
    await send(conn, type="conversation.item.create", item=user_text("Count."))
    await send(conn, type="response.create")
    item_id: str = (await wire.wait_for("response.output_item.done"))["item"]["id"]
    await wire.wait_for("response.done")
    return item_id


def test_truncate_cuts_the_reply_in_the_context() -> None:
    reply = "One two three four five six seven eight nine ten."
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(reply=reply), FakeTTS(ms_per_char=20))

    async def scenario() -> tuple[Wire, RealtimeConnection]:
        conn, wire = await opened(engines)
        item_id = await counted(conn, wire)
        # 1 s of the ~1 s reply at 20 ms per character: about the first half.
        await send(
            conn,
            type="conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=500,
        )
        await send(conn, type="conversation.item.retrieve", item_id=item_id)
        return wire, conn

    wire, conn = run(scenario)
    validate(wire.events, GA_EVENT)
    assert wire.of("conversation.item.truncated")[0]["audio_end_ms"] == 500
    heard = wire.of("conversation.item.retrieved")[0]["item"]["content"][0]["transcript"]
    assert 0 < len(heard.split()) < len(reply.split())
    assert reply.startswith(heard)
    assert conn.session is not None
    assert conn.session.history[-1].content == heard  # the next turn's context


def test_user_words_added_during_a_reply_follow_it_in_the_context() -> None:
    engines = fake_engines(
        FakeSTT(lambda s: ""), FakeLLM(reply="First answer.", token_delay_s=0.02)
    )

    async def scenario() -> RealtimeConnection:
        conn, wire = await opened(engines)
        await send(conn, type="conversation.item.create", item=user_text("First question?"))
        await send(conn, type="response.create")
        await wire.wait_for("response.created")
        await send(conn, type="conversation.item.create", item=user_text("Second one."))
        await wire.wait_for("response.done")
        return conn

    conn = run(scenario)
    assert conn.session is not None
    assert [(m.role, m.content) for m in conn.session.history] == [
        ("user", "First question?"),
        ("assistant", "First answer."),
        ("user", "Second one."),
    ]


def test_manual_commit_transcribes_and_waits_for_response_create() -> None:
    stt = FakeSTT(lambda seconds: "hello there")
    engines = fake_engines(stt)
    pcm = (speech("clone-test.wav", 0, 1.5) * 32767).astype("<i2")
    pcm24 = np.repeat(pcm, 3)[::2]  # 16 kHz -> 24 kHz, crudely: the fake STT does not listen

    async def scenario() -> tuple[Wire, RealtimeConnection]:
        conn, wire = await opened(engines)
        await send(conn, type="session.update", session={"turn_detection": None})
        await send(conn, type="input_audio_buffer.commit", event_id="evt_empty")
        for i in range(0, len(pcm24), 2400):
            audio = base64.b64encode(pcm24[i : i + 2400].tobytes()).decode()
            await send(conn, type="input_audio_buffer.append", audio=audio)
        await send(conn, type="input_audio_buffer.commit")
        await asyncio.sleep(0.2)
        assert "response.created" not in wire.types()  # only when asked
        await send(conn, type="response.create")
        await wire.wait_for("response.done")
        return wire, conn

    wire, conn = run(scenario)
    validate(wire.events, GA_EVENT)
    assert wire.of("error")[0]["error"]["code"] == "input_audio_buffer_commit_empty"
    assert "input_audio_buffer.speech_started" not in wire.types()
    completed = wire.of("conversation.item.input_audio_transcription.completed")[0]
    assert completed["transcript"] == "hello there"
    assert completed["item_id"] == wire.of("input_audio_buffer.committed")[0]["item_id"]
    assert abs(stt.calls[-1][0] - 1.5) < 0.05  # the whole buffer, at 16 kHz
    assert conn.session is not None
    assert conn.session.history[0].content == "hello there"


def test_text_only_replies_and_telephony_audio() -> None:
    tts = FakeTTS(ms_per_char=10)
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(reply="Short one."), tts)

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, type="conversation.item.create", item=user_text("Hi."))
        await send(conn, type="response.create", response={"output_modalities": ["text"]})
        await wire.wait_for("response.done")
        await send(conn, type="session.update", session={"audio": {"output": {
            "format": {"type": "audio/pcmu"}}}})  # fmt: skip
        await send(conn, type="response.create")
        await wire.wait_for("response.done", count=2)
        return wire

    wire = run(scenario)
    validate(wire.events, GA_EVENT)
    first, second = wire.of("response.done")
    assert second["response"]["output_modalities"] == ["audio"]
    assert first["response"]["output_modalities"] == ["text"]
    assert first["response"]["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "Short one.",
    }
    assert tts.texts == ["Short one."]  # only the second reply was synthesized
    ulaw = b"".join(base64.b64decode(e["delta"]) for e in wire.of("response.output_audio.delta"))
    assert abs(len(ulaw) - len("Short one.") * 10 * 8) <= 16  # 8 kHz, one byte a sample


def test_beta_clients_get_beta_names_and_shapes() -> None:
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(reply="Hello."))

    async def scenario() -> Wire:
        conn, wire = await opened(engines, beta=True)
        await send(conn, type="conversation.item.create", item=user_text("Hi."))
        await send(conn, type="response.create")
        await wire.wait_for("response.done")
        return wire

    wire = run(scenario)
    # session.created names a persona as its model, not one of the beta enum's: checked below.
    validate([e for e in wire.events if e["type"] != "session.created"], BETA_EVENT)
    kinds = wire.types()
    assert "conversation.item.created" in kinds and "conversation.item.done" not in kinds
    assert "response.audio.delta" in kinds and "response.audio_transcript.done" in kinds
    assert wire.of("session.created")[0]["session"]["input_audio_format"] == "pcm16"
    done = wire.of("response.done")[0]["response"]
    assert done["modalities"] == ["text", "audio"]
    assert done["output"][0]["content"][0]["type"] == "audio"


def test_delete_takes_an_item_out_of_the_context() -> None:
    engines = fake_engines(FakeSTT(lambda s: ""))

    async def scenario() -> tuple[Wire, RealtimeConnection]:
        conn, wire = await opened(engines)
        await send(conn, type="conversation.item.create", item=user_text("Keep me."))
        await send(conn, type="conversation.item.create", item=user_text("Forget me."))
        item_id = wire.of("conversation.item.added")[1]["item"]["id"]
        await send(conn, type="conversation.item.delete", item_id=item_id)
        await send(conn, type="conversation.item.retrieve", item_id=item_id)
        return wire, conn

    wire, conn = run(scenario)
    assert wire.of("conversation.item.deleted")[0]["item_id"]
    assert wire.of("error")[0]["error"]["code"] == "item_not_found"
    assert conn.session is not None
    assert [m.content for m in conn.session.history] == ["Keep me."]


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "nope"}, "invalid_event_type"),
        ({"type": "conversation.item.create"}, "missing_required_parameter"),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_image"}]},
            },
            "invalid_value",
        ),
        (image_item("https://example.com/cat.jpg"), "invalid_value"),  # fetches nothing
        (image_item("data:image/jpeg;base64,@@not base64@@"), "invalid_value"),
        (
            {"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": 1},
            "item_not_found",
        ),
        ({"type": "input_audio_buffer.append", "audio": "@@"}, "invalid_value"),
        ({"type": "input_audio_buffer.append", "audio": "A" * ((1 << 20) + 4)}, "audio_too_large"),
        (
            {
                "type": "session.update",
                "session": {
                    "instructions": "x",
                    "turn_detection": {"type": "server_vad", "create_response": False},
                },
            },
            "invalid_value",
        ),
        ({"type": "session.update", "session": {"voice": "nobody"}}, "invalid_value"),
        ({"type": "response.create", "response": {"conversation": "none"}}, "invalid_value"),
    ],
)
def test_bad_events_get_documented_errors(event: dict[str, Any], code: str) -> None:
    engines = fake_engines(FakeSTT(lambda s: ""))

    async def scenario() -> tuple[Wire, RealtimeConnection]:
        conn, wire = await opened(engines)
        await send(conn, **event, event_id="evt_bad")
        await conn.on_text("{not json")
        return wire, conn

    wire, conn = run(scenario)
    validate(wire.events, GA_EVENT)
    bad, unparsable = wire.of("error")
    assert bad["error"]["type"] == "invalid_request_error"
    assert bad["error"]["code"] == code and bad["error"]["event_id"] == "evt_bad"
    assert unparsable["error"]["code"] == "invalid_json"
    assert conn.settings.instructions == ""  # nothing of a refused update applied


def test_words_added_after_a_reply_survive_its_truncation() -> None:
    reply = "One two three four five six seven eight nine ten."
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(reply=reply), FakeTTS(ms_per_char=20))

    async def scenario() -> tuple[Wire, RealtimeConnection]:
        conn, wire = await opened(engines)
        item_id = await counted(conn, wire)
        await send(conn, type="conversation.item.create", item=user_text("Later words."))
        await send(
            conn, type="conversation.item.truncate", item_id=item_id, content_index=0,
            audio_end_ms=300,
        )  # fmt: skip
        return wire, conn

    wire, conn = run(scenario)
    validate(wire.events, GA_EVENT)
    assert conn.session is not None
    history = [(m.role, m.content) for m in conn.session.history]
    assert history[0] == ("user", "Count.") and history[2] == ("user", "Later words.")
    assert history[1][0] == "assistant" and reply.startswith(history[1][1])
    assert len(history[1][1].split()) < len(reply.split())


def test_deleting_system_and_function_items_takes_their_context() -> None:
    engines = fake_engines(FakeSTT(lambda s: ""))

    async def scenario() -> RealtimeConnection:
        conn, wire = await opened(engines)
        system = {"type": "message", "role": "system",
                  "content": [{"type": "input_text", "text": "Speak slowly."}]}  # fmt: skip
        await send(conn, type="conversation.item.create", item=system)
        result = {"type": "function_call_output", "call_id": "c1", "output": "42"}
        await send(conn, type="conversation.item.create", item=result)
        await send(conn, type="conversation.item.create", item=user_text("Stay."))
        for added in wire.of("conversation.item.added")[:2]:
            await send(conn, type="conversation.item.delete", item_id=added["item"]["id"])
        return conn

    conn = run(scenario)
    assert conn.session is not None
    assert [m.content for m in conn.session.history] == ["Stay."]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "session": {"audio": {"input": {"format": {"type": ["x"]}}}}},
        {
            "type": "session.update",
            "session": {"turn_detection": {"type": "semantic_vad", "eagerness": ["high"]}},
        },
        {"type": "session.update", "session": {"output_modalities": ["audio", [1]]}},
        {"type": "response.create", "response": {"output_modalities": [{"a": 1}]}},
        {"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": 10**400},
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": ["text"]},
        },
    ],
)
def test_hostile_json_gets_a_clear_error_not_an_internal_one(event: dict[str, Any]) -> None:
    engines = fake_engines(FakeSTT(lambda s: ""))

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, **event)
        return wire

    wire = run(scenario)
    (error,) = wire.of("error")
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] in ("invalid_value", "item_not_found")


def test_each_utterance_gets_its_own_user_item() -> None:
    from voxgate.ports import SpeechActivity, Transcript, UtteranceDropped
    from voxgate.realtime.audio_formats import PCM24
    from voxgate.realtime.conversation import Conversation
    from voxgate.realtime.responses import ResponseEncoder

    encoder = ResponseEncoder(Conversation(), 16000, PCM24)
    first = encoder.encode(SpeechActivity(True, 100, utterance=1))[0]["item_id"]
    encoder.encode(Transcript("a cough", False, utterance=1))
    encoder.encode(UtteranceDropped(1))
    second = encoder.encode(SpeechActivity(True, 900, utterance=2))[0]["item_id"]
    delta = encoder.encode(Transcript("hello", False, utterance=2))
    assert first != second
    assert delta[0]["delta"] == "hello"  # not held back by the dropped utterance's text
    committed = encoder.encode(Transcript("hello there", True, utterance=2))
    assert committed[0]["item_id"] == second


def test_an_unrelated_error_does_not_fail_a_reply() -> None:
    from voxgate.ports import SessionError, TurnDone, TurnStarted
    from voxgate.realtime.audio_formats import PCM24
    from voxgate.realtime.conversation import Conversation
    from voxgate.realtime.responses import ResponseEncoder

    encoder = ResponseEncoder(Conversation(), 16000, PCM24)
    encoder.encode(TurnStarted(1, "hi"))
    encoder.encode(SessionError("stt_failed", "another utterance failed"))
    done = encoder.encode(TurnDone(1))[-1]
    assert done["response"]["status"] == "completed"
    encoder.encode(TurnStarted(2, "hi"))
    encoder.encode(SessionError("llm_failed", "no answer", turn=2))
    assert encoder.encode(TurnDone(2))[-1]["response"]["status"] == "failed"


def test_a_server_side_tool_call_shows_as_function_items() -> None:
    import dataclasses

    call = '<tool_call>\n{"name": "lookup_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(script=[call, "Sunny in Oslo."]))
    ada = engines.personas["ada"]
    engines.personas["ada"] = dataclasses.replace(
        ada, tools=("tests.unit.test_tools_in_replies:lookup_weather",)
    )

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, type="conversation.item.create", item=user_text("Weather in Oslo?"))
        await send(conn, type="response.create")
        await wire.wait_for("response.done")
        return wire

    wire = run(scenario)
    validate(wire.events, GA_EVENT)
    done = wire.of("response.done")[0]["response"]
    message, function_call = done["output"]
    assert message["content"][0]["transcript"] == "Sunny in Oslo."
    assert function_call["type"] == "function_call" and function_call["name"] == "lookup_weather"
    assert json.loads(function_call["arguments"]) == {"city": "Oslo"}
    arguments = wire.of("response.function_call_arguments.done")[0]
    assert arguments["call_id"] == function_call["call_id"] and arguments["output_index"] == 1
    (output,) = [
        e["item"] for e in wire.of("conversation.item.done")
        if e["item"]["type"] == "function_call_output"
    ]  # fmt: skip
    assert output["call_id"] == function_call["call_id"] and output["output"] == "sunny in Oslo"


def test_an_input_image_is_described_for_the_response_that_follows() -> None:
    """A picture with a question, then response.create at once: the reply waits for the
    camera's description of it, and the item lists the picture without its data."""
    llm = FakeLLM(reply="It looks blue.")
    engines = fake_engines(FakeSTT(lambda s: ""), llm)

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, **image_item(jpeg_url((40, 80, 210)), "What colour is this?"))
        await send(conn, type="response.create")
        await wire.wait_for("voxgate.turn.metrics")
        await conn.close()
        return wire

    wire = run(scenario)
    validate(wire.events, GA_EVENT)
    added = wire.of("conversation.item.added")[0]["item"]
    assert added["content"] == [
        {"type": "input_text", "text": "What colour is this?"},
        {"type": "input_image"},
    ]
    messages = llm.requests[0].messages
    assert messages[-1].content == "What colour is this?"
    assert messages[-2].role == "system" and "mostly blue" in messages[-2].content
    assert wire.of("voxgate.turn.metrics")[0]["metrics"]["routes"]["camera"] == "description"


def test_a_picture_on_its_own_is_an_item_and_words_come_later() -> None:
    llm = FakeLLM(reply="A red view.")
    engines = fake_engines(FakeSTT(lambda s: ""), llm)

    async def scenario() -> tuple[Wire, RealtimeConnection]:
        conn, wire = await opened(engines)
        await send(conn, **image_item(jpeg_url((220, 30, 30))))
        await send(conn, type="conversation.item.create", item=user_text("And now?"))
        await send(conn, type="response.create")
        await wire.wait_for("response.done")
        await conn.close()
        return wire, conn

    wire, conn = run(scenario)
    validate(wire.events, GA_EVENT)
    first, second = (e["item"] for e in wire.of("conversation.item.added")[:2])
    assert first["content"] == [{"type": "input_image"}]
    assert second["content"][0]["text"] == "And now?"
    assert conn.session is not None
    # The picture added no words of its own to the context; its description came with the
    # reply (and into the history with the turn).
    assert [m.content for m in conn.session.history if m.role == "user"] == ["And now?"]
    assert "mostly red" in llm.requests[0].messages[-2].content


def test_a_response_to_a_picture_alone_knows_what_it_shows() -> None:
    """No words with it, none after: the reply to the conversation as it stands still
    gets the picture's description (last), and a picture sent once does not go stale."""
    llm = FakeLLM(reply="A green view.")
    engines = fake_engines(FakeSTT(lambda s: ""), llm)

    async def scenario() -> Wire:
        conn, wire = await opened(engines)
        await send(conn, type="conversation.item.create", item=user_text("Hello."))
        await send(conn, type="response.create")
        await wire.wait_for("response.done")
        await send(conn, **image_item(jpeg_url((30, 160, 40))))
        await send(conn, type="response.create")
        await wire.wait_for("response.done", count=2)
        await conn.close()
        return wire

    run(scenario)
    second = llm.requests[1].messages
    assert second[-1].role == "system" and "mostly green" in second[-1].content
    assert second[-2].role == "assistant"  # the first reply: no new words in between
