"""Python functions as tools: schemas from hints and docstrings, validated arguments,
timeouts and failures as ToolError, loading by import path, the built-in clock."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from voxgate.tools.builtin import current_time
from voxgate.tools.registry import ToolError, call_tool, load_tool, tool_from_function


def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second one.
    """
    return a + b


async def slow(seconds: float) -> str:
    """Wait a while."""
    await asyncio.sleep(seconds)
    return "done"


def broken() -> str:
    """Always fails."""
    raise RuntimeError("disk on fire")


def test_schema_comes_from_hints_and_docstring() -> None:
    tool = tool_from_function(add)
    assert tool.definition() == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "description": "the first number."},
                    "b": {"type": "integer", "description": "the second one.", "default": 2},
                },
                "required": ["a"],
                "additionalProperties": False,
            },
        },
    }


def test_calls_validate_and_convert() -> None:
    tool = tool_from_function(add)
    assert asyncio.run(call_tool(tool, {"a": 1})) == "3"
    for bad in ({"b": 1}, {"a": "one"}, {"a": 1, "c": 3}):
        with pytest.raises(ToolError) as caught:
            asyncio.run(call_tool(tool, bad))
        assert caught.value.code == "bad_arguments"


def test_timeouts_and_failures_are_tool_errors() -> None:
    tool = tool_from_function(slow, timeout_s=0.05)
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        asyncio.run(call_tool(tool, {"seconds": 5}))
    assert caught.value.code == "timeout" and time.monotonic() - started < 1
    with pytest.raises(ToolError) as failed:
        asyncio.run(call_tool(tool_from_function(broken), {}))
    assert failed.value.code == "failed" and "disk on fire" in failed.value.message


def test_unusable_functions_are_refused_with_the_reason() -> None:
    def no_doc(x: int) -> int:
        return x

    def no_hint(x):  # type: ignore[no-untyped-def]
        """Has no hint."""
        return x

    with pytest.raises(ValueError, match="docstring"):
        tool_from_function(no_doc)
    with pytest.raises(ValueError, match="type hint"):
        tool_from_function(no_hint)


def test_tools_load_by_import_path() -> None:
    tool = load_tool("voxgate.tools.builtin:current_time")
    assert tool.name == "current_time"
    assert "timezone" in tool.parameters["properties"]
    for spec, problem in (("nomodule", "package.module:function"),
                          ("no.such.module:f", "cannot import"),
                          ("voxgate.tools.builtin:nothing", "no function")):  # fmt: skip
        with pytest.raises(ValueError, match=problem):
            load_tool(spec)


def test_current_time_names_the_day_and_hour() -> None:
    text = current_time("UTC")
    assert re.match(r"^\w+day \d\d \w+ \d{4}, \d\d:\d\d \(UTC\)$", text), text
    with pytest.raises(ValueError, match="unknown time zone"):
        current_time("Mars/Olympus")


def test_the_clock_is_asked_for_by_questions_of_time_only() -> None:
    from voxgate.tools.builtin import CURRENT_TIME_INTENT

    asks = ["What time is it?", "what's the date today?", "Which month are we in?",
            "Is today a weekend?", "Can you tell me the time?", "What day is it?",
            "Can you tell me the date?"]  # fmt: skip
    not_asks = ["What time do shops open?", "Tell me a joke.", "I had a long day.",
                "What is the capital of France?",
                "Can you tell me the date of the concert?"]  # fmt: skip
    assert all(CURRENT_TIME_INTENT.search(q) for q in asks)
    assert not any(CURRENT_TIME_INTENT.search(q) for q in not_asks)


def test_schema_titles_go_but_a_parameter_named_title_stays() -> None:
    def save(title: str, body: str = "") -> str:
        """Save a page.

        Args:
            title: the page's title.
        """
        return title

    schema = tool_from_function(save).parameters
    assert set(schema["properties"]) == {"title", "body"}
    assert "title" not in schema and "title" not in schema["properties"]["body"]
    assert schema["properties"]["title"]["description"] == "the page's title."
