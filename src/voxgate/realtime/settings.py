"""A Realtime session's settings: ``session.update`` parsed (GA and beta shapes) and echoed.

What maps onto voxgate: instructions (after the persona's own), the voice, audio
formats, turn detection (server VAD's silence and threshold, semantic VAD's
eagerness, or none for manual commits), text-only replies and a token cap. What
does not map is accepted and echoed where harmless, refused with a clear error
where pretending would mislead (``create_response: false``, tools for now).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from voxgate.realtime.audio_formats import PCM24, AudioFormat, parse_format

# OpenAI's voices: a client written for the OpenAI API names one of these. They keep
# the persona's own voice (there is no "alloy" here), and are echoed as sent.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)
# semantic_vad eagerness -> the endpointer's (min, max) silence in ms: "high" answers
# sooner, "low" lets the user think longer.
EAGERNESS = {"low": (800, 3000), "medium": (400, 1500), "auto": (400, 1500), "high": (200, 800)}
TRANSCRIPTION_MODEL = "whisper-tiny.en"
# Session fields accepted and echoed without effect here (documented in docs/realtime.md).
IGNORED_FIELDS = frozenset(
    {
        "type",
        "model",
        "object",
        "id",
        "include",
        "prompt",
        "tracing",
        "truncation",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "temperature",
        "speed",
        "input_audio_transcription",
        "input_audio_noise_reduction",
        "client_secret",
        "expires_at",
    }
)
SESSION_FIELDS = frozenset(
    {
        "instructions",
        "voice",
        "audio",
        "output_modalities",
        "modalities",
        "max_output_tokens",
        "max_response_output_tokens",
        "turn_detection",
        "input_audio_format",
        "output_audio_format",
        "tools",
        "voxgate",  # voxgate's own SessionConfig values (docs/realtime.md)
    }
)
MAX_INSTRUCTIONS = 8000


@dataclass(frozen=True, slots=True)
class TurnDetection:
    type: str  # "server_vad" or "semantic_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 400
    eagerness: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        common = {"create_response": True, "interrupt_response": True}
        if self.type == "semantic_vad":
            return {"type": self.type, "eagerness": self.eagerness, **common}
        return {
            "type": self.type,
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "idle_timeout_ms": None,
            **common,
        }

    def endpointing(self) -> tuple[int, int]:
        """The endpointer's (min, max) silence before a turn ends."""
        if self.type == "semantic_vad":
            return EAGERNESS[self.eagerness]
        # server_vad's one silence is the wait for a complete-looking turn; an unfinished
        # one may wait longer, as voxgate's own endpointing does.
        return self.silence_duration_ms, max(self.silence_duration_ms, 1500)


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    voice: str
    instructions: str = ""
    input_format: AudioFormat = PCM24
    output_format: AudioFormat = PCM24
    turn_detection: TurnDetection | None = field(
        default_factory=lambda: TurnDetection("server_vad")
    )
    modalities: tuple[str, ...] = ("audio",)
    max_output_tokens: int | None = None

    @property
    def speak(self) -> bool:
        return "audio" in self.modalities

    def config_update(self) -> dict[str, Any]:
        """The SessionConfig values these settings imply."""
        if self.turn_detection is None:
            return {}
        low, high = self.turn_detection.endpointing()
        return {
            "endpoint_min_ms": low,
            "endpoint_max_ms": high,
            "vad_threshold": self.turn_detection.threshold,
        }


def _int(value: Any, name: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def _max_tokens(value: Any, name: str) -> int | None:
    if value == "inf" or value is None:
        return None
    return _int(value, name, 1, 4096)


def _modalities(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in ("text", "audio") for v in value)
    ):
        raise ValueError(f"output_modalities must be ['audio'] or ['text'], got {value!r}")
    return ("audio",) if "audio" in value else ("text",)


def parse_turn_detection(value: Any, current: TurnDetection | None) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("turn_detection must be an object or null")
    kind = value.get("type", current.type if current else "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ValueError(f"turn_detection.type must be server_vad or semantic_vad, got {kind!r}")
    for flag in ("create_response", "interrupt_response"):
        if value.get(flag, True) is not True:
            raise ValueError(
                f"turn_detection.{flag}: false is not supported: voxgate answers each turn "
                "and stops a reply the user speaks over (set turn_detection to null and send "
                "input_audio_buffer.commit and response.create yourself)"
            )
    base = current if current is not None and current.type == kind else TurnDetection(kind)
    threshold = value.get("threshold", base.threshold)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise ValueError("turn_detection.threshold must be a number")
    if not 0.05 <= threshold <= 0.95:
        raise ValueError(f"turn_detection.threshold must be within 0.05..0.95, got {threshold}")
    eagerness = value.get("eagerness", base.eagerness)
    if not isinstance(eagerness, str) or eagerness not in EAGERNESS:
        raise ValueError(f"turn_detection.eagerness must be one of {sorted(EAGERNESS)}")
    return TurnDetection(
        kind,
        threshold=float(threshold),
        prefix_padding_ms=_int(
            value.get("prefix_padding_ms", base.prefix_padding_ms),
            "turn_detection.prefix_padding_ms",
            0,
            2000,
        ),
        silence_duration_ms=_int(
            value.get("silence_duration_ms", base.silence_duration_ms),
            "turn_detection.silence_duration_ms",
            0,
            5000,
        ),
        eagerness=eagerness,
    )


def updated_settings(current: RealtimeSettings, session: Any) -> RealtimeSettings:
    """``current`` with a ``session.update``'s ``session`` applied: all of it or, on
    ValueError, none of it. Accepts the GA shape and the beta one."""
    if not isinstance(session, dict):
        raise ValueError("session.update needs a 'session' object")
    unknown = set(session) - SESSION_FIELDS - IGNORED_FIELDS
    if unknown:
        raise ValueError(f"unknown session field(s): {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    if "instructions" in session:
        text = session["instructions"]
        if not isinstance(text, str) or len(text) > MAX_INSTRUCTIONS:
            raise ValueError(f"instructions must be a string of at most {MAX_INSTRUCTIONS} chars")
        changes["instructions"] = text
    if session.get("tools"):
        raise ValueError("tools are not supported yet by this server; leave 'tools' empty")
    for key in ("output_modalities", "modalities"):
        if key in session:
            changes["modalities"] = _modalities(session[key])
    for key in ("max_output_tokens", "max_response_output_tokens"):
        if key in session:
            changes["max_output_tokens"] = _max_tokens(session[key], key)
    voice: Any = session.get("voice")
    audio = session.get("audio")
    if audio is not None:  # GA: audio.input / audio.output
        if not isinstance(audio, dict):
            raise ValueError("audio must be an object")
        inp, out = audio.get("input") or {}, audio.get("output") or {}
        if not isinstance(inp, dict) or not isinstance(out, dict):
            raise ValueError("audio.input and audio.output must be objects")
        if "format" in inp:
            changes["input_format"] = parse_format(inp["format"])
        if "turn_detection" in inp:
            changes["turn_detection"] = parse_turn_detection(
                inp["turn_detection"], current.turn_detection
            )
        if "format" in out:
            changes["output_format"] = parse_format(out["format"])
        voice = out.get("voice", voice)
    if "input_audio_format" in session:  # beta
        changes["input_format"] = parse_format(session["input_audio_format"])
    if "output_audio_format" in session:
        changes["output_format"] = parse_format(session["output_audio_format"])
    if "turn_detection" in session:
        changes["turn_detection"] = parse_turn_detection(
            session["turn_detection"], current.turn_detection
        )
    if voice is not None:
        if isinstance(voice, dict):
            voice = voice.get("id")
        if not isinstance(voice, str) or not voice:
            raise ValueError("voice must be a voice name")
        changes["voice"] = voice
    return replace(current, **changes)


def session_object(
    settings: RealtimeSettings, *, session_id: str, model: str, beta: bool
) -> dict[str, Any]:
    """The ``session`` of ``session.created`` / ``session.updated``, in the client's dialect."""
    turn_detection = settings.turn_detection.as_dict() if settings.turn_detection else None
    tokens: int | str = settings.max_output_tokens or "inf"
    if beta:
        return {
            "id": session_id,
            "object": "realtime.session",
            "model": model,
            "modalities": ["text", "audio"] if settings.speak else ["text"],
            "instructions": settings.instructions,
            "voice": settings.voice,
            "input_audio_format": settings.input_format.beta(),
            "output_audio_format": settings.output_format.beta(),
            "input_audio_transcription": {"model": TRANSCRIPTION_MODEL},
            "turn_detection": turn_detection,
            "tools": [],
            "tool_choice": "auto",
            "temperature": 0.8,
            "max_response_output_tokens": tokens,
        }
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": list(settings.modalities),
        "instructions": settings.instructions,
        "audio": {
            "input": {
                "format": settings.input_format.ga(),
                "transcription": {"model": TRANSCRIPTION_MODEL},
                "noise_reduction": None,
                "turn_detection": turn_detection,
            },
            "output": {"format": settings.output_format.ga(), "voice": settings.voice},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": tokens,
    }
