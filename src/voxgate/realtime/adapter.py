"""One Realtime API connection: client events in, a ``Session`` behind, server events out.

Client events become calls on the session's input port (audio, commits, user
items, responses, cancels, truncation); the session's output messages become
server events in ``responses.ResponseEncoder``. Nothing here decides turns:
with server VAD the session's turn machine does, exactly as for the native
protocol; with ``turn_detection: null`` the client commits and asks for replies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from voxgate.audio.pcm import FloatArray
from voxgate.config import SessionConfig
from voxgate.engines import Engines
from voxgate.personas.persona import VoiceSpec
from voxgate.ports import Outbox
from voxgate.realtime.audio_formats import Resampler, decode_audio, int16_to_float
from voxgate.realtime.conversation import (
    Conversation,
    function_output_item,
    new_id,
    user_audio_item,
    user_text_item,
)
from voxgate.realtime.events import WireEvent, client_error, for_client
from voxgate.realtime.responses import ItemAdded, ItemTranscribed, ResponseEncoder
from voxgate.realtime.settings import (
    OPENAI_VOICES,
    RealtimeSettings,
    TurnDetection,
    session_object,
    updated_settings,
)
from voxgate.scheduler import Priority
from voxgate.session import INPUT_RATE, MAX_USER_TEXT, ReplyOptions, Session, session_setup
from voxgate.transport.limits import Admission, AudioRateLimiter, EventRateLimiter
from voxgate.tts.router import voice_problem

log = logging.getLogger("voxgate.realtime")

# A base64 append bigger than this (about 16 s of 24 kHz PCM16) is refused: clients
# stream audio in small pieces, and one event must not make the server buffer much.
MAX_APPEND_CHARS = 1 << 20
MAX_EVENT_CHARS = MAX_APPEND_CHARS + (64 << 10)  # an append and its envelope
MIN_COMMIT_MS = 100  # OpenAI's own minimum for a manual commit
# Events that cost real work, and how often (per second, burst): as the native protocol.
EVENT_RATES = {
    "response.create": (1.0, 5),
    "conversation.item.create": (2.0, 10),
    "conversation.item.truncate": (2.0, 10),
    "conversation.item.delete": (2.0, 10),
    "session.update": (2.0, 10),
}
MAX_ID = 64  # a client's item and call ids
IMAGE_URL_PREFIXES = ("data:image/jpeg;base64,", "data:image/png;base64,")
IMAGE_WAIT_S = 3.0  # a response.create after an input_image waits this long for its words
MAX_FUNCTION_OUTPUT = 8000  # characters of a function_call_output kept in the context
MAX_AUDIO_END_MS = 3_600_000
OPENAI_MODEL_PREFIX = "gpt-"  # an OpenAI model name: the server's default persona


class ClientMistake(ValueError):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


def resolve_persona(engines: Engines, model: str | None) -> str | None:
    """The persona a ``model`` query names: a persona id, or None for the default one
    (no model, or an OpenAI model name). KeyError names the personas there are."""
    if not model or model.startswith(OPENAI_MODEL_PREFIX):
        return None
    if model not in engines.personas:
        raise KeyError(
            f"unknown model {model!r}: this server's models are its personas: "
            f"{', '.join(sorted(engines.personas))} (an OpenAI model name such as "
            "gpt-realtime picks the default one)"
        )
    return model


class RealtimeConnection:
    def __init__(
        self,
        engines: Engines,
        send: Callable[[str], Awaitable[None]],
        base_config: SessionConfig,
        *,
        beta: bool = False,
        send_stall_s: float = 30.0,
    ) -> None:
        self.engines, self.base_config, self.beta = engines, base_config, beta
        self.send_stall_s = send_stall_s
        self.id = "sess_" + uuid.uuid4().hex[:16]
        self.conversation = Conversation()
        # Each client item's text as the session's context holds it, for delete.
        self._context: dict[str, tuple[str, str]] = {}
        self._image_sent = False  # an input_image not yet followed by a response.create
        self.settings = RealtimeSettings("")  # until start(): the persona's voice and config
        self.encoder = ResponseEncoder(
            self.conversation, engines.tts.sample_rate, self.settings.output_format, beta
        )
        self.outbox: Outbox[str] = Outbox(send, self._encode)
        self.session: Session | None = None
        self.model = ""
        self._input = Resampler(self.settings.input_format.rate, INPUT_RATE)
        self._manual: list[FloatArray] = []  # audio since the last commit, without VAD
        self._manual_samples = 0
        self._audio_limit = AudioRateLimiter(INPUT_RATE)
        self._event_limits = {
            kind: EventRateLimiter(per_s, burst) for kind, (per_s, burst) in EVENT_RATES.items()
        }
        self.encoder.rate_limits = self._rate_limits
        self._handlers = self._event_handlers()  # built once: appends arrive 50 times a second

    def _rate_limits(self) -> list[dict[str, Any]]:
        """What ``rate_limits.updated`` reports: the responses this client may still ask for."""
        limit = self._event_limits["response.create"]
        return [
            {
                "name": "requests",
                "limit": limit.burst,
                "remaining": limit.remaining(time.monotonic()),
                "reset_seconds": round(1 / limit.per_s, 3),
            }
        ]

    # -- what the server loop needs (transport/server.py) ------------------------------------

    @property
    def ready(self) -> bool:
        return self.session is not None

    def error(self, code: str, message: str, event_id: str | None = None) -> None:
        self.outbox.emit(client_error(code, message, event_id))

    def _send(self, event: dict[str, Any]) -> None:
        self.outbox.emit(WireEvent(event))

    def _encode(self, message: object) -> list[str]:
        events = [message.event] if isinstance(message, WireEvent) else self.encoder.encode(message)
        out = (for_client(e, self.beta) for e in events)
        return [json.dumps(e, separators=(",", ":")) for e in out if e is not None]

    async def start(self, model: str | None) -> None:
        """Open the session for ``model`` (a persona id); KeyError/ValueError: refused."""
        persona = resolve_persona(self.engines, model)
        setup = session_setup(self.engines, self.base_config, persona=persona)
        session = Session(self.engines, self.outbox, setup, self.id)
        await session.start()
        self.session = session
        self.model = model or session.persona.id
        voice = session.persona.voice
        self.settings = RealtimeSettings(
            voice=f"{voice.engine}:{voice.name}",
            turn_detection=TurnDetection(
                "server_vad",
                threshold=session.config.vad_threshold,
                silence_duration_ms=session.config.endpoint_min_ms,
            ),
        )
        self._send({"type": "session.created", "session": self._session_object()})

    def _session_object(self) -> dict[str, Any]:
        body = session_object(self.settings, session_id=self.id, model=self.model, beta=self.beta)
        if self.session is not None:  # voxgate's own settings: clients that don't know skip it
            body["voxgate"] = self.session.config.model_dump()
        return body

    async def close(self) -> None:
        try:
            if self.session is not None:
                await self.session.close()
        finally:
            await self.outbox.close()

    # -- client events ----------------------------------------------------------------------

    async def on_text(self, data: str) -> None:
        """One client event (a text WebSocket message). Mistakes get an ``error`` event.

        TimeoutError: the client has not taken this event's answers for ``send_stall_s``
        (it stopped reading). Only the sending is bounded: a transcription may take longer.
        """
        try:
            await self._dispatch(data)
        finally:
            async with asyncio.timeout(self.send_stall_s):
                await self.outbox.flush()  # what this event caused is on the wire, in order

    async def _dispatch(self, data: str) -> None:
        if len(data) > MAX_EVENT_CHARS:
            self.error("event_too_large", f"an event may be at most {MAX_EVENT_CHARS} characters")
            return
        try:
            event = json.loads(data)
        except (ValueError, RecursionError) as exc:
            self.error("invalid_json", f"the event is not valid JSON: {exc}")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("invalid_event", "an event must be a JSON object with a string 'type'")
            return
        kind = event["type"]
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self._handlers.get(kind)
        if handler is None:
            self.error(
                "invalid_event_type",
                f"unknown event type {kind!r}; supported: {', '.join(sorted(self._handlers))}",
                event_id,
            )
            return
        limit = self._event_limits.get(kind)
        if limit is not None and not limit.admit(time.monotonic()):
            self.error("rate_limited", f"too many {kind} events ({limit.describe()})", event_id)
            return
        assert self.session is not None, "start() the connection first"
        try:
            await handler(self.session, event)
        except ClientMistake as exc:
            self.outbox.emit(client_error(exc.code, str(exc), event_id, exc.param))
        except ValueError as exc:
            self.outbox.emit(client_error("invalid_value", str(exc), event_id))

    def _event_handlers(
        self,
    ) -> dict[str, Callable[[Session, dict[str, Any]], Awaitable[None]]]:
        return {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._truncate,
            "conversation.item.delete": self._delete,
            "conversation.item.retrieve": self._retrieve,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    async def _session_update(self, session: Session, event: dict[str, Any]) -> None:
        settings = updated_settings(self.settings, event.get("session"))
        voice = self._voice(session, settings.voice)  # checked before anything changes
        extra = event["session"].get("voxgate") or {}
        if not isinstance(extra, dict):
            raise ClientMistake("invalid_value", "session.voxgate must be an object", "voxgate")
        # ValueError: nothing of the update is applied.
        session.update_config({**settings.config_update(), **extra})
        if settings.turn_detection is None and self.settings.turn_detection is not None:
            session.end_audio()  # an utterance in progress ends where VAD stops
        if settings.input_format != self.settings.input_format:
            self._input = Resampler(settings.input_format.rate, INPUT_RATE)
        session.instructions = settings.instructions
        session.voice = voice
        session.reply_options = ReplyOptions(
            speak=settings.speak, max_tokens=settings.max_output_tokens
        )
        self.encoder.output_format = settings.output_format
        self.settings = settings
        self._send({"type": "session.updated", "session": self._session_object()})

    def _voice(self, session: Session, name: str) -> VoiceSpec | None:
        """A voice name as a voice: OpenAI's names keep the persona's voice; a persona id
        takes that persona's voice; ``piper:NAME`` or ``kokoro:STYLE`` names one."""
        if name in OPENAI_VOICES or name == self.settings.voice:
            return session.voice
        if name in self.engines.personas:
            voice = self.engines.personas[name].voice
        elif ":" in name and len(name) <= MAX_ID and not set(name) & set(",*"):
            # One named voice; blends stay in persona files (each blend is a cached vector).
            engine, _, style = name.partition(":")
            voice = VoiceSpec(engine=engine, name=style)
        else:
            raise ClientMistake(
                "invalid_value",
                f"unknown voice {name!r}: use an OpenAI voice name (keeps the persona's "
                f"voice), a persona id ({', '.join(sorted(self.engines.personas))}), or "
                "piper:NAME / kokoro:STYLE",
                "session.audio.output.voice",
            )
        if problem := voice_problem(self.engines.tts, voice):
            raise ClientMistake("invalid_value", f"voice {name!r}: {problem}", "voice")
        return voice

    async def _append(self, session: Session, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if isinstance(audio, str) and len(audio) > MAX_APPEND_CHARS:
            raise ClientMistake(
                "audio_too_large",
                f"one append may carry at most {MAX_APPEND_CHARS} base64 characters; "
                "send audio in small pieces (20-100 ms) as it is captured",
                "audio",
            )
        pcm = decode_audio(audio, self.settings.input_format)
        samples = self._input.push(int16_to_float(pcm))
        admission = self._audio_limit.admit(len(samples), time.monotonic())
        if admission in (Admission.DROP_REPORT, Admission.ACCEPT_REPORT):
            self.error("rate_limited", self._audio_limit.report(), event.get("event_id"))
        if admission in (Admission.DROP, Admission.DROP_REPORT) or not len(samples):
            return
        if self.settings.turn_detection is not None:
            session.push_audio(samples)
            return
        limit = session.config.max_utterance_ms * INPUT_RATE // 1000
        if self._manual_samples + len(samples) > limit:
            raise ClientMistake(
                "input_audio_buffer_full",
                f"the input buffer holds at most {session.config.max_utterance_ms} ms; "
                "commit (or clear) it first",
            )
        self._manual.append(samples)
        self._manual_samples += len(samples)

    async def _commit(self, session: Session, event: dict[str, Any]) -> None:
        if self.settings.turn_detection is not None:
            if session.machine.utterance_start() is None:
                raise ClientMistake(
                    "input_audio_buffer_commit_empty",
                    "no speech in the buffer to commit (server VAD commits turns itself)",
                )
            session.end_audio()  # the turn machine commits the utterance now
            return
        ms = self._manual_samples * 1000 / INPUT_RATE
        if ms < MIN_COMMIT_MS:
            raise ClientMistake(
                "input_audio_buffer_commit_empty",
                f"buffer too small: at least {MIN_COMMIT_MS} ms of audio is needed, "
                f"it holds {ms:.0f} ms",
            )
        audio = np.concatenate(self._manual)
        self._manual, self._manual_samples = [], 0
        await self._add_audio_item(session, new_id("item"), audio, committed=True)

    async def _add_audio_item(
        self, session: Session, item_id: str, audio: FloatArray, *, committed: bool = False
    ) -> None:
        """A user audio item: announced, transcribed, then in the context."""
        self.outbox.emit(ItemAdded(user_audio_item(item_id, None), done=False, committed=committed))
        await self.outbox.flush()  # the client sees the item before the (slower) transcript
        try:
            text = (await self.engines.stt.transcribe(audio, Priority.STT_FINAL)).strip()
        except Exception as exc:  # the item stays, without words: the session goes on
            log.warning("realtime %s: transcription failed: %s", self.id, exc)
            self._send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item_id,
                    "content_index": 0,
                    "error": {"type": "server_error", "code": "stt_failed", "message": str(exc)},
                }
            )
            return
        session.add_user_message(text)
        self._context[item_id] = ("user", text)
        self.outbox.emit(ItemTranscribed(user_audio_item(item_id, text), len(audio) / INPUT_RATE))

    async def _clear(self, session: Session, event: dict[str, Any]) -> None:
        self._manual, self._manual_samples = [], 0
        self._send({"type": "input_audio_buffer.cleared"})

    async def _item_create(self, session: Session, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ClientMistake("missing_required_parameter", "'item' is required", "item")
        kind = item.get("type", "message")
        given = item.get("id")
        item_id = given if isinstance(given, str) and given else new_id("item")
        if len(item_id) > MAX_ID:
            raise ClientMistake("invalid_value", f"item ids are at most {MAX_ID} characters")
        if item_id in self.conversation:
            raise ClientMistake("item_exists", f"an item with id {item_id!r} already exists")
        if kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not isinstance(output, str):
                raise ClientMistake(
                    "missing_required_parameter",
                    "a function_call_output needs string 'call_id' and 'output'",
                )
            if len(call_id) > MAX_ID or len(output) > MAX_FUNCTION_OUTPUT:
                raise ClientMistake(
                    "string_above_max_length",
                    f"call_id may be {MAX_ID} and output {MAX_FUNCTION_OUTPUT} characters",
                )
            context = f"(result of function call {call_id}) {output}"
            session.add_user_message(context)
            self._announce(function_output_item(item_id, call_id, output), context)
            return
        if kind != "message" or item.get("role") not in ("user", "system"):
            raise ClientMistake(
                "invalid_value",
                "this server takes user and system messages and function_call_output items",
                "item",
            )
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise ClientMistake(
                "missing_required_parameter", "'item.content' must be a list", "item.content"
            )
        texts, audio, images = [], [], []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "input_audio" and item.get("role") == "user":
                pcm = decode_audio(part.get("audio"), self.settings.input_format)
                resampled = Resampler(self.settings.input_format.rate, INPUT_RATE).push(
                    int16_to_float(pcm), last=True
                )
                # The same budget as streamed audio: each second of it costs a transcription.
                admission = self._audio_limit.admit(len(resampled), time.monotonic())
                if admission in (Admission.DROP, Admission.DROP_REPORT):
                    raise ClientMistake("rate_limited", self._audio_limit.report())
                audio.append(resampled)
            elif kind == "input_image" and item.get("role") == "user":
                images.append(image_from_url(part.get("image_url")))
            else:
                raise ClientMistake(
                    "invalid_value",
                    f"unsupported content part {kind!r}: use input_text, input_audio or "
                    "input_image",
                    "item.content",
                )
        text = " ".join(t.strip() for t in texts if t.strip())
        if len(text) > MAX_USER_TEXT:
            raise ClientMistake(
                "string_above_max_length", f"item text may be at most {MAX_USER_TEXT} characters"
            )
        for image in images:  # the camera's newest frame: described (or seen) from now on
            session.push_image(image, still=True)
            self._image_sent = True
        if audio:
            await self._add_audio_item(session, item_id, np.concatenate(audio))
            return
        context = f"(instruction) {text}" if item["role"] == "system" and text else text
        if context:
            session.add_user_message(context)
        item_out = user_text_item(item_id, text, len(images))
        self._announce({**item_out, "role": item["role"]}, context)

    def _announce(self, item: dict[str, Any], context: str) -> None:
        """A client item, in the session's context as ``context``: on the wire in order."""
        self._context[item["id"]] = ("user", context)
        self.outbox.emit(ItemAdded(item))

    def _find(self, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        item_id = event.get("item_id")
        item = self.conversation.get(item_id)
        if item is None:
            raise ClientMistake("item_not_found", f"no item with id {item_id!r}", "item_id")
        return str(item_id), item

    async def _truncate(self, session: Session, event: dict[str, Any]) -> None:
        item_id, item = self._find(event)
        end_ms = event.get("audio_end_ms")
        if type(end_ms) is not int or not 0 <= end_ms <= MAX_AUDIO_END_MS:
            raise ClientMistake(
                "invalid_value",
                f"audio_end_ms must be an integer from 0 to {MAX_AUDIO_END_MS}",
                "audio_end_ms",
            )
        turn = self.conversation.turn_of.get(item_id)
        if item.get("role") != "assistant" or turn is None:
            raise ClientMistake("invalid_value", "only assistant audio items can be truncated")
        self.encoder.cancelled.add(turn)  # if it is still speaking: the client cut it
        heard = session.truncate(turn, float(end_ms))
        if heard is None:
            raise ClientMistake(
                "invalid_value",
                "only the newest reply can be truncated here (older ones are already "
                "final in the context)",
                "item_id",
            )
        self.conversation.update(
            {
                **item,
                "status": "incomplete",
                "content": [{"type": "output_audio", "transcript": heard}],
            }
        )
        self._send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    async def _delete(self, session: Session, event: dict[str, Any]) -> None:
        item_id, item = self._find(event)
        if item.get("status") == "in_progress":
            raise ClientMistake(
                "invalid_value", "this reply is in progress: send response.cancel first"
            )
        role, text = self._context.pop(item_id, ("", ""))
        if not role:  # a reply or a spoken turn: in the context as its transcript
            content = item.get("content") or [{}]
            role = str(item.get("role", "user"))
            text = content[0].get("transcript") or content[0].get("text") or ""
        if text:
            session.forget_message(role, text)
        self.conversation.delete(item_id)
        self._send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _retrieve(self, session: Session, event: dict[str, Any]) -> None:
        _, item = self._find(event)
        self._send({"type": "conversation.item.retrieved", "item": item})

    async def _response_create(self, session: Session, event: dict[str, Any]) -> None:
        self._refuse_if_active(session)
        if self._image_sent:  # the reply should know what the picture it follows shows
            self._image_sent = False
            await session.camera_settled(IMAGE_WAIT_S)
            self._refuse_if_active(session)  # a spoken turn may have begun meanwhile
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise ClientMistake("invalid_value", "'response' must be an object", "response")
        if params.get("conversation", "auto") not in ("auto", None) or params.get("input"):
            raise ClientMistake(
                "invalid_value",
                "out-of-band responses (conversation 'none', custom input) are not supported",
                "response.conversation",
            )
        if params.get("tools"):
            raise ClientMistake("invalid_value", "tools are not supported yet", "response.tools")
        instructions = params.get("instructions", "")
        if not isinstance(instructions, str) or len(instructions) > MAX_USER_TEXT:
            raise ClientMistake("invalid_value", "response.instructions must be a short string")
        speak = self.settings.speak
        for key in ("output_modalities", "modalities"):
            if key in params:
                speak = "audio" in updated_settings(self.settings, {key: params[key]}).modalities
        tokens = self.settings.max_output_tokens
        for key in ("max_output_tokens", "max_response_output_tokens"):
            if key in params:
                tokens = updated_settings(self.settings, {key: params[key]}).max_output_tokens
        session.respond("", ReplyOptions(speak=speak, max_tokens=tokens, instructions=instructions))

    def _refuse_if_active(self, session: Session) -> None:
        if session.machine.turns > self.encoder.turns_finished:
            raise ClientMistake(
                "conversation_already_has_active_response",
                "a response is in progress: wait for response.done or send response.cancel",
            )

    async def _response_cancel(self, session: Session, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        open_ids = [r.id for r in self.encoder.responses.values()]
        if wanted is not None and open_ids and wanted not in open_ids:
            raise ClientMistake(
                "invalid_value", f"response {wanted!r} is not in progress", "response_id"
            )
        cancelled = session.cancel_reply()
        if not cancelled:
            raise ClientMistake("response_cancel_not_active", "no response is in progress")
        self.encoder.cancelled.update(cancelled)


def image_from_url(url: object) -> bytes:
    """An ``input_image`` part's file: only inline ``data:`` URLs (this server fetches
    nothing); whether it is a JPEG or PNG is checked by the camera, which reports it."""
    if not isinstance(url, str) or not url.startswith(IMAGE_URL_PREFIXES):
        raise ClientMistake(
            "invalid_value",
            "input_image needs image_url as a data: URL of a base64 JPEG or PNG "
            "(data:image/jpeg;base64,...); this server fetches no other URLs",
            "item.content",
        )
    try:
        return base64.b64decode(url.partition(",")[2], validate=True)
    except ValueError as exc:
        raise ClientMistake(
            "invalid_value", f"input_image data is not base64: {exc}", "item.content"
        ) from exc
