"""Tool calls parsed out of a streamed reply: no markup ever reaches the spoken text."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from voxgate.tools.tool_call_stream import (
    BadToolCall,
    SpokenText,
    StreamItem,
    ToolCall,
    ToolCallStream,
)

REPLY = (
    "Let me check. <tool_call>\n"
    '{"name": "current_time", "arguments": {"zone": "UTC"}}\n'
    "</tool_call> It is noon."
)


def run(pieces: list[str]) -> list[StreamItem]:
    stream = ToolCallStream()
    items = [item for piece in pieces for item in stream.feed(piece)]
    return items + stream.close()


def spoken(items: list[StreamItem]) -> str:
    return "".join(i.text for i in items if isinstance(i, SpokenText))


def test_a_call_between_words() -> None:
    items = run([REPLY])
    assert spoken(items) == "Let me check.  It is noon."
    assert [i for i in items if isinstance(i, ToolCall)] == [
        ToolCall("current_time", {"zone": "UTC"})
    ]


@given(st.lists(st.integers(min_value=1, max_value=len(REPLY) - 1), max_size=12))
def test_any_split_into_tokens_gives_the_same_result(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(REPLY)]
    pieces = [REPLY[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    items = run(pieces)
    assert spoken(items) == "Let me check.  It is noon."
    assert ToolCall("current_time", {"zone": "UTC"}) in items
    for item in items:  # no piece of markup is ever given out to be spoken
        if isinstance(item, SpokenText):
            assert "<" not in item.text and ">" not in item.text


def test_a_lone_angle_bracket_is_spoken_once_it_cannot_be_a_tag() -> None:
    stream = ToolCallStream()
    assert stream.feed("3 <") == [SpokenText("3 ")]  # held: it may open a tag
    assert stream.feed(" 4") == [SpokenText("< 4")]


def test_bad_calls_are_reported_not_spoken() -> None:
    items = run(["Sure <tool_call>{not json}</tool_call> done"])
    assert spoken(items) == "Sure  done"
    (bad,) = [i for i in items if isinstance(i, BadToolCall)]
    assert "not JSON" in bad.problem
    unfinished = run(['<tool_call>{"name": "x"'])
    assert isinstance(unfinished[-1], BadToolCall) and spoken(unfinished) == ""


def test_double_encoded_arguments_are_accepted() -> None:
    items = run(['<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>'])
    assert items == [ToolCall("f", {"a": 1})]


def test_streamed_api_tool_calls_become_the_same_markup() -> None:
    from voxgate.llm.openai_compat import StreamedToolCalls

    calls = StreamedToolCalls()
    pieces = [
        {"index": 0, "id": "c1", "function": {"name": "current_time", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"timez'}},
        {"index": 0, "function": {"arguments": 'one": "UTC"}'}},
    ]
    for piece in pieces:
        calls.add({"choices": [{"delta": {"tool_calls": [piece]}}]})
    calls.add({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    assert run([calls.markup()]) == [ToolCall("current_time", {"timezone": "UTC"})]
    assert StreamedToolCalls().markup() == ""


def test_the_forms_a_small_model_writes_instead_are_calls_too() -> None:
    body = '{"name": "current_time", "arguments": {"timezone": ""}}'
    for wrapped in (f"<tools>\n{body}\n</tools>", f"```json\n{body}\n```"):
        items = run(["Sure. ", wrapped[:9], wrapped[9:]])
        assert items[-1] == ToolCall("current_time", {"timezone": ""}), wrapped
        assert spoken(items) == "Sure. "


def test_a_call_written_as_bare_json_is_a_call() -> None:
    items = run(['{"name": "current_time", ', '"arguments": {"timezone": "UTC"}}', " Done."])
    assert items[0] == ToolCall("current_time", {"timezone": "UTC"})
    assert spoken(items) == " Done."


def test_a_bare_call_ends_where_its_json_does() -> None:
    nested = '{"name": "f", "arguments": {"a": {"b": [1, {"c": 2}]}}} Then.'
    items = run([nested[:20], nested[20:]])
    assert items[0] == ToolCall("f", {"a": {"b": [1, {"c": 2}]}})
    assert spoken(items) == " Then."
    unclosed = run(['{"name": "f", "arguments": {' + "x" * 700])
    assert isinstance(unclosed[0], BadToolCall) and spoken(unclosed) == ""
