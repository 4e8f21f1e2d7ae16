"""Python functions as tools: a JSON schema from their type hints and docstring (pydantic),
arguments validated before the call, sync or async, each call bounded by a timeout.

A parameter typed ``ToolContext`` is not an argument the model gives: the session passes
who is talking to whom (and the persona's memory), so a tool can act for this user."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

DEFAULT_TIMEOUT_S = 5.0
# What a tool's result may put into the context; the model reads a summary, not a dump.
MAX_RESULT_CHARS = 4000
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call: the conversation, the persona, the user."""

    session_id: str = ""
    persona_id: str = ""
    user_id: str = ""
    # The persona memory (voxgate.personas.memory.MemoryStore) and its writer thread
    # (memory_writer.MemoryWriter); None where the server keeps no memory.
    memory: Any = None
    memory_writer: Any = None


class ToolError(Exception):
    """A call that did not give a result: ``code`` is bad_arguments, timeout or failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments
    arguments: type[BaseModel]  # validates them
    function: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S
    # Read-only and instant: it may run before the commit, on a speculative reply.
    pure: bool = False
    # User words that ask for it: the session calls it then, before the model answers
    # (a small model does not reliably call tools itself). Only for pure tools.
    intent: re.Pattern[str] | None = None
    # The arguments those words give (None: they do not, after all); default: none.
    intent_arguments: Callable[[str], dict[str, Any] | None] | None = None
    # The parameter that receives the ToolContext, if the function takes one.
    context_parameter: str | None = None
    # Where it comes from, for errors and events: "python", "builtin" or "mcp:<server>".
    source: str = "python"

    def definition(self) -> dict[str, Any]:
        """The OpenAI-style function definition (also what Qwen2.5's template lists)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and the ``Args:`` section's ``name: text`` lines."""
    summary = " ".join(doc.split("\n\n", 1)[0].split())
    params: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
        elif in_args and (match := re.match(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.+)$", stripped)):
            params[match.group(1)] = match.group(2)
        elif in_args and not stripped:
            in_args = False
    return summary, params


def strip_titles(schema: Any) -> Any:
    """pydantic's titles repeat the names: noise in every prompt that lists the tool.
    A parameter that is itself called "title" stays (it is a key of ``properties``)."""
    if isinstance(schema, dict):
        return {
            key: (
                {name: strip_titles(sub) for name, sub in value.items()}
                if key in ("properties", "$defs", "definitions") and isinstance(value, dict)
                else strip_titles(value)
            )
            for key, value in schema.items()
            if key != "title"
        }
    if isinstance(schema, list):
        return [strip_titles(v) for v in schema]
    return schema


def tool_from_function(
    function: Callable[..., Any], *, name: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Tool:
    """A tool for ``function``; ValueError says what makes it unusable."""
    name = name or function.__name__
    if not TOOL_NAME.match(name):
        raise ValueError(f"tool name {name!r}: letters, digits, _ and -, at most 64")
    if timeout_s <= 0:
        raise ValueError(f"tool {name!r}: timeout_s must be > 0")
    summary, documented = _docstring_parts(inspect.getdoc(function) or "")
    if not summary:
        raise ValueError(f"tool {name!r} needs a docstring: the model reads it to choose tools")
    hints = typing.get_type_hints(function)
    fields: dict[str, Any] = {}
    context_parameter = None
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"tool {name!r}: *args and **kwargs cannot be described")
        if param.name not in hints:
            raise ValueError(f"tool {name!r}: parameter {param.name!r} needs a type hint")
        if hints[param.name] is ToolContext:
            context_parameter = param.name  # the session's to give, not the model's
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            hints[param.name],
            Field(default, description=documented.get(param.name)),
        )
    model = create_model(  # type: ignore[call-overload]
        f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    parameters = strip_titles(model.model_json_schema())
    return Tool(
        name, summary, parameters, model, function, timeout_s, context_parameter=context_parameter
    )


def load_tool(spec: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Tool:
    """``package.module:function`` as a tool (persona files name tools this way)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"tool {spec!r}: write it as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"tool {spec!r}: cannot import {module_name!r}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"tool {spec!r}: {module_name} has no function {attribute!r}")
    return tool_from_function(function, timeout_s=timeout_s)


def _as_text(result: Any) -> str:
    text = result if isinstance(result, str) else json.dumps(result, default=str)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + " [truncated]"
    return text


async def call_tool(
    tool: Tool, arguments: dict[str, Any], context: ToolContext | None = None
) -> str:
    """Run ``tool`` with ``arguments`` (validated first); its result as text.

    ToolError: the arguments do not fit, it ran past its timeout, or it raised. An async
    tool is cancelled at its timeout; a sync one runs on a thread that cannot be stopped,
    so its result is dropped.
    """
    try:
        values = tool.arguments.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ToolError("bad_arguments", f"{tool.name}: {problems}") from None
    kwargs = {field: getattr(values, field) for field in type(values).model_fields}
    kwargs |= values.model_extra or {}  # a schema-only tool (MCP) takes what it was given
    if tool.context_parameter is not None:
        kwargs[tool.context_parameter] = context or ToolContext()
    try:
        async with asyncio.timeout(tool.timeout_s):
            if inspect.iscoroutinefunction(tool.function):
                result = await tool.function(**kwargs)
            else:
                result = await asyncio.to_thread(tool.function, **kwargs)
    except TimeoutError:
        raise ToolError("timeout", f"{tool.name} took over {tool.timeout_s:g} s") from None
    except ToolError:
        raise  # the tool's own verdict (an MCP server's error result)
    except Exception as exc:
        raise ToolError("failed", f"{tool.name}: {type(exc).__name__}: {exc}") from exc
    return _as_text(result)
