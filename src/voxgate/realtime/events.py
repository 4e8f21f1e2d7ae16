"""Server events on the wire: ids, the error shape, and the beta dialect's names.

Everything is built in the GA shape; ``for_client`` renames it for a client that
sent ``OpenAI-Beta: realtime=v1`` (and drops the GA-only ``conversation.item.done``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxgate.realtime.conversation import for_dialect, new_id

GA_TO_BETA = {
    "conversation.item.added": "conversation.item.created",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
}
GA_ONLY = frozenset({"conversation.item.done"})


@dataclass(frozen=True, slots=True)
class WireEvent:
    """An event the adapter itself sends, queued in order with the session's output."""

    event: dict[str, Any]


def client_error(
    code: str, message: str, event_id: str | None = None, param: str | None = None
) -> WireEvent:
    """A client's mistake: the documented ``error`` event; the session goes on."""
    return WireEvent(error_event("invalid_request_error", code, message, event_id, param))


def error_event(
    kind: str, code: str, message: str, event_id: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


def for_client(event: dict[str, Any], beta: bool) -> dict[str, Any] | None:
    """``event`` with its ``event_id``, in the client's dialect; None: not in that dialect."""
    kind = event["type"]
    if beta:
        if kind in GA_ONLY:
            return None
        event = {**event, "type": GA_TO_BETA.get(kind, kind)}
        if isinstance(event.get("item"), dict):
            event["item"] = for_dialect(event["item"], beta)
        if isinstance(response := event.get("response"), dict) and "output" in response:
            event["response"] = {
                **response,
                "output": [for_dialect(i, beta) for i in response["output"]],
            }
    return {"event_id": new_id("event"), **event}
