"""The session's output messages as Realtime server events.

Runs inside the outbox's one writer task, so its state (the open responses, the
user item being spoken) changes in exactly the order the client sees events.
A session turn is one Realtime response with one assistant message item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxgate.ports import (
    AudioOut,
    Interrupted,
    ReplyText,
    SessionError,
    SpeechActivity,
    ToolActivity,
    Transcript,
    TurnDone,
    TurnReport,
    TurnStarted,
    UtteranceDropped,
)
from voxgate.realtime.audio_formats import (
    AudioFormat,
    Resampler,
    encode_audio,
    float_to_int16,
    int16_to_float,
)
from voxgate.realtime.conversation import (
    Conversation,
    assistant_item,
    new_id,
    user_audio_item,
)
from voxgate.realtime.events import error_event


@dataclass(frozen=True, slots=True)
class ItemAdded:
    """A conversation item the client created (or committed): added here, in wire order,
    so that ``previous_item_id`` is what the client saw before it."""

    item: dict[str, Any]
    done: bool = True  # False: its transcript follows (ItemTranscribed)
    committed: bool = False  # from the input buffer: input_audio_buffer.committed first


@dataclass(frozen=True, slots=True)
class ItemTranscribed:
    item: dict[str, Any]
    seconds: float


@dataclass
class Response:
    id: str
    item_id: str
    turn: int
    speak: bool
    format: AudioFormat
    resampler: Resampler
    text: list[str] = field(default_factory=list)
    audio_samples: int = 0  # sent, at the output format's rate
    status: str = "in_progress"
    reason: str | None = None
    heard: str | None = None  # what the user heard, when cut off
    error: tuple[str, str] | None = None  # (code, message)
    metrics: dict[str, Any] | None = None
    tool_items: list[dict[str, Any]] = field(default_factory=list)  # its function calls
    calling: dict[str, Any] | None = None  # the call whose outcome is awaited

    @property
    def audio_ms(self) -> float:
        return self.audio_samples * 1000.0 / self.format.rate

    def transcript(self) -> str:
        return self.heard if self.heard is not None else "".join(self.text).strip()


@dataclass
class ResponseEncoder:
    """Turns ``OutputMessage``s into GA-shaped events (``events.for_client`` renames)."""

    conversation: Conversation
    tts_rate: int
    output_format: AudioFormat  # read when a response starts: the session's current one
    beta: bool = False
    cancelled: set[int] = field(default_factory=set)  # turns the client cancelled
    responses: dict[int, Response] = field(default_factory=dict)
    turns_finished: int = 0
    rate_limits: Callable[[], list[dict[str, Any]]] | None = None  # for rate_limits.updated
    # The user item each utterance in progress becomes, and the interim text sent for it.
    speech_items: dict[int | None, str] = field(default_factory=dict)
    _interims: dict[int | None, str] = field(default_factory=dict)

    def encode(self, message: object) -> list[dict[str, Any]]:
        if isinstance(message, AudioOut):
            return self._audio(message)
        if isinstance(message, ReplyText):
            return self._text(message)
        if isinstance(message, SpeechActivity):
            return self._speech(message)
        if isinstance(message, Transcript):
            return self._transcript(message)
        if isinstance(message, TurnStarted):
            return self._started(message)
        if isinstance(message, Interrupted):
            if (response := self.responses.get(message.turn)) is not None:
                response.status = "cancelled"
                response.heard = message.heard
                client = message.turn in self.cancelled
                response.reason = "client_cancelled" if client else "turn_detected"
            return []
        if isinstance(message, TurnReport):
            if (response := self.responses.get(message.turn)) is not None:
                response.metrics = message.payload
            return []
        if isinstance(message, SessionError):
            return self._error(message)
        if isinstance(message, UtteranceDropped):  # never a turn: its item is never added
            self.speech_items.pop(message.utterance, None)
            self._interims.pop(message.utterance, None)
            return []
        if isinstance(message, ToolActivity):
            return self._tool(message)
        if isinstance(message, ItemAdded):
            return self._item_added(message)
        if isinstance(message, ItemTranscribed):
            return self._item_transcribed(message)
        if isinstance(message, TurnDone):
            return self._done(message.turn)
        return []  # SessionReady, ConfigChanged: the adapter answers those itself

    # -- the user's speech -------------------------------------------------------------

    def _user_item(self, utterance: int | None) -> str:
        if utterance not in self.speech_items:
            self.speech_items[utterance] = new_id("item")
        return self.speech_items[utterance]

    def _speech(self, message: SpeechActivity) -> list[dict[str, Any]]:
        item_id = self._user_item(message.utterance)
        if message.speaking:
            return [
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": message.audio_ms,
                    "item_id": item_id,
                }
            ]
        return [
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": message.audio_ms,
                "item_id": item_id,
            }
        ]

    def _transcript(self, message: Transcript) -> list[dict[str, Any]]:
        item_id = self._user_item(message.utterance)
        if not message.final:
            # Interim transcripts are re-decodes; deltas can only append, so only words
            # that extend what was sent go out (the completed event has the final text).
            sent = self._interims.get(message.utterance, "")
            if not message.text.startswith(sent) or message.text == sent:
                return []
            delta = message.text[len(sent) :]
            self._interims[message.utterance] = message.text
            return [
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": delta,
                }
            ]
        self.speech_items.pop(message.utterance, None)
        self._interims.pop(message.utterance, None)
        pending = user_audio_item(item_id, None)
        previous = self.conversation.add(pending)
        done = user_audio_item(item_id, message.text)
        self.conversation.update(done)
        return [
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            },
            {"type": "conversation.item.added", "previous_item_id": previous, "item": pending},
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": message.text,
                "usage": {"type": "duration", "seconds": 0},
            },
            {"type": "conversation.item.done", "previous_item_id": previous, "item": done},
        ]

    # -- the reply -------------------------------------------------------------------

    def _started(self, message: TurnStarted) -> list[dict[str, Any]]:
        response = Response(
            id=new_id("resp"),
            item_id=new_id("item"),
            turn=message.turn,
            speak=message.speak,
            format=self.output_format,
            resampler=Resampler(self.tts_rate, self.output_format.rate),
        )
        self.responses[message.turn] = response
        item = assistant_item(response.item_id, "in_progress", response.speak)
        previous = self.conversation.add(item, message.turn)
        part = (
            {"type": "audio", "transcript": ""} if response.speak else {"type": "text", "text": ""}
        )
        where = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        limits = (
            [{"type": "rate_limits.updated", "rate_limits": self.rate_limits()}]
            if self.rate_limits is not None
            else []
        )
        return [
            {"type": "response.created", "response": self._response_object(response, [])},
            *limits,
            {
                "type": "response.output_item.added",
                "response_id": response.id,
                "output_index": 0,
                "item": item,
            },
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
            {"type": "response.content_part.added", **where, "content_index": 0, "part": part},
        ]

    def _where(self, response: Response) -> dict[str, Any]:
        return {
            "response_id": response.id,
            "item_id": response.item_id,
            "output_index": 0,
            "content_index": 0,
        }

    def _text(self, message: ReplyText) -> list[dict[str, Any]]:
        response = self.responses.get(message.turn)
        if response is None or not message.text:
            return []
        # A filler (or holding line) is its own sentence.
        text = message.text.rstrip() + " " if message.filler else message.text
        response.text.append(text)
        kind = (
            "response.output_audio_transcript.delta"
            if response.speak
            else "response.output_text.delta"
        )
        event = {"type": kind, **self._where(response), "delta": text}
        if message.filler:  # voxgate's extra: an acknowledgment, not yet the answer
            event["voxgate_filler"] = True
        return [event]

    def _audio(self, message: AudioOut) -> list[dict[str, Any]]:
        response = self.responses.get(message.turn)
        if response is None or not response.speak:
            return []
        samples = response.resampler.push(int16_to_float(message.pcm))
        return self._audio_delta(response, samples, message.filler)

    def _audio_delta(
        self, response: Response, samples: Any, filler: bool = False
    ) -> list[dict[str, Any]]:
        if len(samples) == 0:
            return []
        pcm = float_to_int16(np.asarray(samples, dtype=np.float32))
        response.audio_samples += len(pcm)
        delta = encode_audio(pcm, response.format)
        event = {"type": "response.output_audio.delta", **self._where(response), "delta": delta}
        if filler:
            event["voxgate_filler"] = True
        return [event]

    def _item_added(self, message: ItemAdded) -> list[dict[str, Any]]:
        item = message.item
        previous = self.conversation.add(item)
        events: list[dict[str, Any]] = []
        if message.committed:
            events.append(
                {
                    "type": "input_audio_buffer.committed",
                    "previous_item_id": previous,
                    "item_id": item["id"],
                }
            )
        where = {"previous_item_id": previous, "item": item}
        events.append({"type": "conversation.item.added", **where})
        if message.done:
            events.append({"type": "conversation.item.done", **where})
        return events

    def _item_transcribed(self, message: ItemTranscribed) -> list[dict[str, Any]]:
        item = message.item
        self.conversation.update(item)
        transcript = item["content"][0]["transcript"]
        return [
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item["id"],
                "content_index": 0,
                "transcript": transcript,
                "usage": {"type": "duration", "seconds": round(message.seconds, 3)},
            },
            {"type": "conversation.item.done", "item": item},
        ]

    def _tool(self, message: ToolActivity) -> list[dict[str, Any]]:
        """A server-side tool call as a function_call item of the response, and its
        result as a function_call_output item; voxgate.tool carries the details."""
        response = self.responses.get(message.turn)
        event = message.event
        extra = {"type": "voxgate.tool", "response_id": response and response.id, **event}
        if response is None or not event.get("name"):
            return [extra]
        if event.get("outcome") == "started":
            return [*self._call_added(response, message.turn, event), extra]
        call, response.calling = response.calling, None
        if call is None or call["name"] != event["name"]:
            return [extra]
        outcome = event.get("outcome")
        output = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "function_call_output",
            "status": "completed",
            "call_id": call["call_id"],
            "output": event.get("result", "") if outcome == "ok" else f"error: {outcome}",
        }
        previous = self.conversation.add(output, message.turn)
        where = {"previous_item_id": previous, "item": output}
        return [
            {"type": "conversation.item.added", **where},
            {"type": "conversation.item.done", **where},
            extra,
        ]

    def _call_added(
        self, response: Response, turn: int, event: dict[str, Any]
    ) -> list[dict[str, Any]]:
        call = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "completed",
            "call_id": new_id("call"),
            "name": event["name"],
            "arguments": json.dumps(event.get("arguments") or {}),
        }
        response.calling = call
        response.tool_items.append(call)
        previous = self.conversation.add(call, turn)
        index = len(response.tool_items)  # the reply's message is output 0
        where = {
            "response_id": response.id,
            "item_id": call["id"],
            "output_index": index,
            "call_id": call["call_id"],
        }
        placed = {"response_id": response.id, "output_index": index}
        return [
            {"type": "response.output_item.added", **placed,
             "item": {**call, "status": "in_progress"}},
            {"type": "conversation.item.added", "previous_item_id": previous, "item": call},
            {"type": "response.function_call_arguments.delta", **where,
             "delta": call["arguments"]},
            {"type": "response.function_call_arguments.done", **where,
             "name": call["name"], "arguments": call["arguments"]},
            {"type": "response.output_item.done", **placed, "item": call},
            {"type": "conversation.item.done", "previous_item_id": previous, "item": call},
        ]  # fmt: skip

    def _error(self, message: SessionError) -> list[dict[str, Any]]:
        if message.turn is not None and (failed := self.responses.get(message.turn)) is not None:
            failed.error = (message.code, message.message)
        kind = "invalid_request_error" if message.code == "rate_limited" else "server_error"
        return [error_event(kind, message.code, message.message)]

    def _done(self, turn: int) -> list[dict[str, Any]]:
        response = self.responses.pop(turn, None)
        self.turns_finished += 1
        self.cancelled.discard(turn)
        if response is None:
            return []
        events: list[dict[str, Any]] = []
        if response.speak and response.status != "cancelled":  # the resampler's tail
            events += self._audio_delta(
                response, response.resampler.push(np.zeros(0, np.float32), last=True)
            )
        if response.status == "in_progress":
            response.status = "failed" if response.error else "completed"
        transcript = response.transcript()
        where = self._where(response)
        if response.speak:
            events.append({"type": "response.output_audio.done", **where})
            events.append(
                {"type": "response.output_audio_transcript.done", **where, "transcript": transcript}
            )
            part: dict[str, Any] = {"type": "audio", "transcript": transcript}
        else:
            events.append({"type": "response.output_text.done", **where, "text": transcript})
            part = {"type": "text", "text": transcript}
        events.append({"type": "response.content_part.done", **where, "part": part})
        status = "completed" if response.status == "completed" else "incomplete"
        item = assistant_item(response.item_id, status, response.speak, transcript)
        self.conversation.update(item)
        events.append(
            {
                "type": "response.output_item.done",
                "response_id": response.id,
                "output_index": 0,
                "item": item,
            }
        )
        events.append({"type": "conversation.item.done", "item": item})
        events.append(
            {
                "type": "response.done",
                "response": self._response_object(response, [item, *response.tool_items]),
            }
        )
        if response.metrics is not None:  # voxgate's extra: clients that don't know it skip it
            events.append(
                {
                    "type": "voxgate.turn.metrics",
                    "response_id": response.id,
                    "item_id": response.item_id,
                    "metrics": response.metrics,
                }
            )
        return events

    def _response_object(self, response: Response, output: list[dict[str, Any]]) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if response.status == "cancelled":
            details = {"type": "cancelled", "reason": response.reason}
        elif response.status == "failed" and response.error is not None:
            code, message = response.error
            details = {
                "type": "failed",
                "error": {"type": "server_error", "code": code, "message": message},
            }
        modalities = ["audio"] if response.speak else ["text"]
        body: dict[str, Any] = {
            "id": response.id,
            "object": "realtime.response",
            "status": response.status,
            "status_details": details,
            "output": output,
            "conversation_id": "conv_default",
            "usage": self._usage(response),
        }
        if self.beta:
            body["modalities"] = ["text", "audio"] if response.speak else ["text"]
        else:
            body["output_modalities"] = modalities
            body["audio"] = {"output": {"format": response.format.ga()}}
        return body

    @staticmethod
    def _usage(response: Response) -> dict[str, Any] | None:
        if response.metrics is None:
            return None
        llm = response.metrics.get("llm") or {}
        prompt = int(llm.get("prompt_tokens", 0))
        generated = int(llm.get("generated_tokens", 0))
        return {
            "total_tokens": prompt + generated,
            "input_tokens": prompt,
            "output_tokens": generated,
            "input_token_details": {
                "cached_tokens": int(llm.get("reused_tokens", 0)),
                "text_tokens": prompt,
                "audio_tokens": 0,
            },
            "output_token_details": {"text_tokens": generated, "audio_tokens": 0},
        }
