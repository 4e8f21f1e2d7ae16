"""A persona's tools: names resolved to ``Tool``s, and how the model is told about them."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from voxgate.tools.builtin import CURRENT_TIME_INTENT, current_time
from voxgate.tools.memory_tools import (
    RECALL_INTENT,
    REMEMBER_WORDS,
    recall,
    recall_arguments,
    remember,
    remember_arguments,
)
from voxgate.tools.registry import Tool, load_tool, tool_from_function

ArgumentsFromWords = Callable[[str], dict[str, Any] | None]


@dataclasses.dataclass(frozen=True)
class Builtin:
    function: Callable[..., Any]
    # The user's words that ask for it, and the arguments they give: the session calls it
    # then, before the model answers (a small model seldom calls tools itself).
    intent: re.Pattern[str]
    intent_arguments: ArgumentsFromWords | None = None
    pure: bool = True  # read-only and instant: it may run before the commit


BUILTIN: dict[str, Builtin] = {
    "current_time": Builtin(current_time, CURRENT_TIME_INTENT),
    # A write: it waits for the commit like any tool with effects.
    "remember": Builtin(remember, REMEMBER_WORDS, remember_arguments, pure=False),
    "recall": Builtin(recall, RECALL_INTENT, recall_arguments),
}


def builtin_tool(name: str) -> Tool:
    spec = BUILTIN[name]
    return dataclasses.replace(
        tool_from_function(spec.function),
        pure=spec.pure,
        intent=spec.intent,
        intent_arguments=spec.intent_arguments,
        source="builtin",
    )


def resolve_tools(names: Sequence[str], extra: Sequence[Tool] = ()) -> list[Tool]:
    """Built-in names and ``package.module:function`` paths, then ``extra`` (tools from MCP
    servers or from Python code); ValueError names the fix."""
    tools: list[Tool] = []
    for name in names:
        if name in BUILTIN:
            tools.append(builtin_tool(name))
        elif ":" in name:
            tools.append(load_tool(name))
        else:
            raise ValueError(
                f"unknown tool {name!r}: use a built-in ({', '.join(sorted(BUILTIN))}) "
                "or package.module:function"
            )
    tools += extra
    for tool in tools:
        same = [f"{t.source}" for t in tools if t.name == tool.name]
        if len(same) > 1:
            raise ValueError(
                f"two tools share a name: {tool.name} (from {' and '.join(same)}); "
                "leave one out (an MCP server's tools list picks which of its tools to use)"
            )
    return tools


def tools_prompt(tools: Sequence[Tool]) -> str:
    """The tool section of the system message in the form Qwen2.5 was trained on (its chat
    template's own words): signatures in <tools>, calls answered in <tool_call> tags."""
    if not tools:
        return ""
    signatures = "\n".join(json.dumps(t.definition(), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{signatures}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def tool_call_text(name: str, arguments: Any) -> str:
    """A call as the model writes it, for the context of the round after it. Angle
    brackets in the arguments (a note in the user's words) are JSON escapes: they cannot
    close the tag and pose as markup."""
    call = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    call = call.replace("<", "\\u003c").replace(">", "\\u003e")
    return f"<tool_call>\n{call}\n</tool_call>"


def tool_response_text(result: str) -> str:
    """A result as the chat template hands it back (a user turn in <tool_response>).
    Its own angle brackets are escaped: a result cannot close the tag and pose as a call."""
    return f"<tool_response>\n{escape_markup(result)}\n</tool_response>"


def escape_markup(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")
