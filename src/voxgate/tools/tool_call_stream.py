"""Tool calls out of a model's token stream, as they stream (Qwen2.5's chat-template format).

Qwen2.5 writes a call as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
between ordinary words. ``ToolCallStream`` takes the text as it streams and gives
back the words to speak and the calls, so no markup is ever spoken: text that
might be the start of a tag (``<tool``) is held back until the next piece shows
what it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
BARE = '{"name"'  # a call written as bare JSON: up to the brace that closes it
# What a small model writes instead, having seen the <tools> list or code in training:
# read as calls too, and never spoken (a voice has no use for a code block either).
MARKUP = {OPEN: CLOSE, "<tools>": "</tools>", "```json": "```", BARE: ""}
# A bare call ends where its JSON ends (braces balanced): given up on past this length.
MAX_BARE_CHARS = 600
_JSON = json.JSONDecoder()
# A call's JSON is a name and a few arguments; one that runs on past this is not one.
MAX_CALL_CHARS = 8000


@dataclass(frozen=True, slots=True)
class SpokenText:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadToolCall:
    """Markup the model opened but did not fill with a valid call."""

    raw: str
    problem: str


StreamItem = SpokenText | ToolCall | BadToolCall


def _partial_tag_at_end(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def parse_call(raw: str) -> ToolCall | BadToolCall:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return BadToolCall(raw, f"not JSON: {exc}")
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return BadToolCall(raw, "a call needs a string 'name'")
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode the arguments
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return BadToolCall(raw, "'arguments' is a string that is not JSON")
    if not isinstance(arguments, dict):
        return BadToolCall(raw, "'arguments' must be an object")
    return ToolCall(value["name"], arguments)


class ToolCallStream:
    def __init__(self) -> None:
        self._pending = ""  # text not yet given out: a possible tag, or a call's body
        self._close: str | None = None  # inside a call: the tag that ends it

    def feed(self, piece: str) -> list[StreamItem]:
        self._pending += piece
        out: list[StreamItem] = []
        while True:
            if self._close == "":  # a bare call: as far as the JSON goes
                text = BARE + self._pending
                try:
                    _, end = _JSON.raw_decode(text)
                except ValueError:
                    if len(text) > MAX_BARE_CHARS:
                        out.append(BadToolCall(text, "a bare call that never closes"))
                        self._pending, self._close = "", None
                    return out
                out.append(parse_call(text[:end]))
                self._pending, self._close = text[end:], None
                continue
            if self._close is not None:
                end = self._pending.find(self._close)
                if end < 0:
                    if len(self._pending) > MAX_CALL_CHARS:
                        out.append(BadToolCall(self._pending, f"no {self._close} in sight"))
                        self._pending, self._close = "", None
                    return out
                out.append(parse_call(self._pending[:end].strip()))
                self._pending = self._pending[end + len(self._close) :]
                self._close = None
                continue
            found = [(at, tag) for tag in MARKUP if (at := self._pending.find(tag)) >= 0]
            if found:
                start, tag = min(found)
                if start:
                    out.append(SpokenText(self._pending[:start]))
                self._pending = self._pending[start + len(tag) :]
                self._close = MARKUP[tag]
                continue
            keep = max(_partial_tag_at_end(self._pending, tag) for tag in MARKUP)
            speak = self._pending[: len(self._pending) - keep]
            if speak:
                out.append(SpokenText(speak))
            self._pending = self._pending[len(self._pending) - keep :]
            return out

    def close(self) -> list[StreamItem]:
        """The stream ended: held-back text is words after all; an open call is bad."""
        pending, self._pending = self._pending, ""
        if self._close is not None:
            self._close = None
            return [BadToolCall(pending, "the stream ended inside a tool call")]
        return [SpokenText(pending)] if pending else []
