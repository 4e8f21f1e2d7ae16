"""The remember/recall built-ins: the words that ask for them, notes kept in the real
persona memory (SQLite) per persona and user, and a note that outlives its session. The
LLM and TTS are fakes (tests/fakes.py): what is under test is the tools and the session."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines
from tests.session_harness import Harness
from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.personas.memory import MemoryStore
from voxgate.protocol.frames import encode_event
from voxgate.tools.memory_tools import recall, recall_arguments, remember, remember_arguments
from voxgate.tools.persona_tools import builtin_tool
from voxgate.tools.registry import ToolContext, ToolError, call_tool

ASK_TO_REMEMBER = {
    "Remember that my locker is number 42.": "my locker is number 42",
    "Please remember my sister's name is Anna": "my sister's name is Anna",
    "Can you remember that I park on level three.": "I park on level three",
    "Don't forget I'm vegetarian.": "I'm vegetarian",
    "OK. Make a note that the meeting moved to Friday.": "the meeting moved to Friday",
    "remember: the wifi password is on the fridge": "the wifi password is on the fridge",
    "Could you remember that I'm vegetarian?": "I'm vegetarian",
    "Remember my locker is 42. What time is it?": "my locker is 42",
}
NOT_ASKING_TO_REMEMBER = [
    "Do you remember my locker number?",
    "I remember when we went to Paris.",
    "Remember when it snowed in April?",
    "I can't remember where I put my keys.",
    "What did I ask you to remember?",
    "Remember me to your mother.",
    "Tell me about the weather.",
    "I'll try to remember that.",
    "We went out and remember thinking it was odd.",
    "Can you remember my wife's name?",
    "Remember that.",
    "Note to self, buy milk?",
]
ASK_TO_RECALL = [
    "Do you remember my locker number?",
    "What did I tell you about my sister?",
    "What's my locker number?",
    "Can you recall what I said about the meeting?",
    "What did I ask you to remember?",
    "Remind me of my wifi password.",
]
NOT_ASKING_TO_RECALL = [
    "Remember that my locker is 42.",
    "Do you know a good pasta recipe?",
    "Can you recall the capital of France?",
    "Do you remember the plot of Hamlet?",
    "What is the capital of France?",
    "Tell me a story about a dragon.",
    "I said hello to my neighbour.",
]


@pytest.mark.parametrize("said", sorted(ASK_TO_REMEMBER))
def test_words_that_ask_to_remember_give_the_note(said: str) -> None:
    assert remember_arguments(said) == {"note": ASK_TO_REMEMBER[said]}


@pytest.mark.parametrize("said", NOT_ASKING_TO_REMEMBER)
def test_other_words_do_not_ask_to_remember(said: str) -> None:
    assert remember_arguments(said) is None


@pytest.mark.parametrize("said", ASK_TO_RECALL)
def test_words_that_ask_to_recall(said: str) -> None:
    assert recall_arguments(said) is not None


@pytest.mark.parametrize("said", NOT_ASKING_TO_RECALL)
def test_other_words_do_not_ask_to_recall(said: str) -> None:
    assert recall_arguments(said) is None


def test_the_context_parameter_is_not_in_the_schema() -> None:
    tool = builtin_tool("remember")
    assert tool.context_parameter == "context"
    assert set(tool.parameters["properties"]) == {"note"}
    assert not tool.pure  # a write: it waits for the commit


def test_notes_are_kept_per_persona_and_user(tmp_path: Path) -> None:
    from voxgate.personas.memory_writer import MemoryWriter

    with MemoryStore(tmp_path / "m.sqlite3") as store, MemoryWriter(store) as writer:
        sam = ToolContext("s1", "ada", "sam", store, writer)
        assert remember("my locker is 42", sam) == 'Noted: "my locker is 42".'
        remember("my sister is Anna", sam)
        assert writer.flush(5.0)
        assert "my locker is 42" in recall(sam, "locker")
        assert "Anna" not in recall(sam, "locker")  # only what matches the subject
        assert "Anna" in recall(sam)
        # A subject with no note: no unrelated notes for the model to answer from.
        assert recall(sam, "the weather") == "Nothing is noted about the weather."
        assert "Nothing" in recall(dataclasses.replace(sam, user_id="kim"))
        assert "Nothing" in recall(dataclasses.replace(sam, persona_id="max"))
        # The note joins the summary later sessions' prompts carry.
        assert "my locker is 42" in store.summary("ada", "sam")


def test_without_a_memory_store_the_error_says_so() -> None:
    with pytest.raises(ToolError, match="keeps no persona memory"):
        asyncio.run(call_tool(builtin_tool("remember"), {"note": "x y z"}, ToolContext()))


def _engines(store: MemoryStore, script: list[str]) -> Engines:
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(script=script), FakeTTS(ms_per_char=5))
    engines.personas["ada"] = dataclasses.replace(
        engines.personas["ada"], tools=("remember", "recall")
    )
    engines.memory = store
    engines.__post_init__()  # its writer thread
    return engines


async def _turn(engines: Engines, user: str, text: str) -> Harness:
    h = Harness(engines, SessionConfig(fillers=False, reply_guard=False))
    hello = {"type": "hello", "protocol": 1, "sample_rate": 16000, "user": user}
    await h.conn.on_message(encode_event(hello))
    await h.say(text)
    await h.wait_for_done(1, 10.0)
    await h.conn.close()
    return h


def test_a_note_from_one_session_is_recalled_in_the_next(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "m.sqlite3")
    engines = _engines(store, ["I will remember that.", "Your locker is 42."])

    async def scenario() -> tuple[Harness, Harness]:
        first = await _turn(engines, "sam", "Remember that my locker is 42.")
        assert engines.memory_writer is not None and engines.memory_writer.flush(5.0)
        second = await _turn(engines, "sam", "Do you remember my locker number?")
        return first, second

    try:
        first, second = asyncio.run(scenario())
    finally:
        assert engines.memory_writer is not None
        engines.memory_writer.close()
        store.close()
    assert [(e["name"], e["outcome"]) for e in first.events("tool")] == [
        ("remember", "started"),
        ("remember", "ok"),
    ]
    assert first.events("tool")[0]["arguments"] == {"note": "my locker is 42"}
    assert [(e["name"], e["outcome"]) for e in second.events("tool")] == [
        ("recall", "started"),
        ("recall", "ok"),
    ]
    llm = engines.llm
    assert isinstance(llm, FakeLLM)
    # The second session's model was handed the note as recall's result.
    answer_prompt = "\n".join(m.content for m in llm.requests[-1].messages)
    assert "<tool_response>" in answer_prompt and "my locker is 42" in answer_prompt


def test_a_failed_note_is_apologised_for_not_claimed() -> None:
    llm = FakeLLM(script=["Got it, I will remember that."])
    engines = fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=5))
    engines.personas["ada"] = dataclasses.replace(engines.personas["ada"], tools=("remember",))

    async def scenario() -> Harness:
        return await _turn(engines, "sam", "Remember that my locker is 42.")

    h = asyncio.run(scenario())  # no memory store: the write fails
    from voxgate.protocol.frames import FrameType

    said = "".join(f.text for f in h.frames if f.type is FrameType.LLM_CHUNK)
    assert said == "Sorry, I couldn't do that."
    assert [e["outcome"] for e in h.events("tool")] == ["started", "failed"]
    assert llm.requests == []  # the model never got to say it remembered
