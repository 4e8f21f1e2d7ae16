"""The Realtime conversation as the client sees it: items by id, in order.

Items are plain dicts in the GA shape; ``for_dialect`` renames content types for
beta clients. The session's context (what the model reads) is kept by the
session itself; this list is what ``retrieve``, ``delete`` and
``previous_item_id`` refer to.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

# Oldest items are forgotten past this: a long call must not grow without bound.
MAX_ITEMS = 512
_counter = itertools.count(1)


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (``item_...``, ``resp_...``, ``event_...``)."""
    return f"{prefix}_{secrets.token_hex(6)}{next(_counter):04x}"


def _user_item(item_id: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": list(parts),
    }


def user_text_item(item_id: str, text: str, images: int = 0) -> dict[str, Any]:
    """A user message; ``images``: how many camera frames came with it (they went to
    the session's camera, so the item shows them without their data)."""
    parts = [{"type": "input_text", "text": text}] if text or not images else []
    return _user_item(item_id, *parts, *({"type": "input_image"} for _ in range(images)))


def user_audio_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    return _user_item(item_id, {"type": "input_audio", "transcript": transcript})


def assistant_item(item_id: str, status: str, speak: bool, text: str = "") -> dict[str, Any]:
    part = (
        {"type": "output_audio", "transcript": text}
        if speak
        else {"type": "output_text", "text": text}
    )
    content = [part] if status != "in_progress" else []
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def function_output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call_output",
        "call_id": call_id,
        "output": output,
    }


_BETA_CONTENT = {"output_audio": "audio", "output_text": "text"}


def for_dialect(item: dict[str, Any], beta: bool) -> dict[str, Any]:
    """``item`` as the client's dialect spells it (beta: ``audio``/``text`` content)."""
    if not beta or "content" not in item:
        return item
    content = [
        {**part, "type": _BETA_CONTENT.get(part.get("type", ""), part.get("type"))}
        for part in item["content"]
    ]
    return {**item, "content": content}


class Conversation:
    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self.turn_of: dict[str, int] = {}  # assistant item -> the session's turn

    def add(self, item: dict[str, Any], turn: int | None = None) -> str | None:
        """Append ``item``; returns the id of the item before it (``previous_item_id``)."""
        previous = next(reversed(self._items), None) if self._items else None
        self._items[item["id"]] = item
        if turn is not None:
            self.turn_of[item["id"]] = turn
        while len(self._items) > MAX_ITEMS:
            oldest = next(iter(self._items))
            del self._items[oldest]
            self.turn_of.pop(oldest, None)
        return previous

    def get(self, item_id: Any) -> dict[str, Any] | None:
        return self._items.get(item_id) if isinstance(item_id, str) else None

    def update(self, item: dict[str, Any]) -> None:
        if item["id"] in self._items:
            self._items[item["id"]] = item

    def delete(self, item_id: str) -> dict[str, Any] | None:
        self.turn_of.pop(item_id, None)
        return self._items.pop(item_id, None)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items
