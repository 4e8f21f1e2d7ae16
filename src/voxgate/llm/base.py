"""The LLM engine interface every backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from voxgate.scheduler import Priority, PriorityRef


@dataclass(frozen=True, slots=True)
class MediaPart:
    """An image or a stretch of audio sent with a message to a model that takes it."""

    kind: str  # "image" | "audio"
    data: bytes  # the file: JPEG or PNG for an image, WAV for audio
    mime: str  # image/jpeg, image/png, audio/wav


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str
    # Besides the text, for a backend whose model sees or hears (LLMCapabilities); the
    # text stays what the history, templates and other backends use.
    parts: tuple[MediaPart, ...] = ()


@dataclass(frozen=True, slots=True)
class LLMCapabilities:
    """What the backend's model takes and gives besides text. Declared in configuration
    (``voxgate serve --llm-vision`` ...) or read from the server where it says so."""

    vision: bool = False  # image parts in: no camera description needed
    audio_in: bool = False  # the user's audio in: no final transcription needed
    audio_out: bool = False  # speech out: no synthesis needed
    voice: str = "alloy"  # the model's own voice it speaks in (audio_out)

    def label(self) -> str:
        named = [n for n in ("vision", "audio_in", "audio_out") if getattr(self, n)]
        return ", ".join(named) or "text only"


@dataclass(frozen=True, slots=True)
class SpeechWanted:
    """Ask a model that speaks (``audio_out``) for its speech with the text: each chunk
    goes to ``sink`` as it streams in, PCM16 mono at ``rate`` (what the engine got)."""

    voice: str
    sink: Callable[[bytes, int], None]  # (pcm16 bytes, sample rate)


@dataclass(slots=True)
class LLMRequest:
    persona_id: str
    messages: list[ChatMessage]
    max_tokens: int = 80
    temperature: float = 0.6
    seed: int = 0
    # Read at every decode step, so a speculative run is promoted in place.
    priority: PriorityRef = field(default_factory=lambda: PriorityRef(Priority.LLM_LIVE))
    # Two sessions with one persona have two histories: each keeps its own KV state.
    conversation_id: str = ""
    # Reply openings not to start with again (a guard retry after a template loop): the
    # embedded engine bans each one's first token; a remote server ignores them.
    avoid_openings: tuple[str, ...] = ()
    # Tool definitions for a server that takes them as the API's ``tools`` (the embedded
    # engine reads them in the system message instead).
    tools: tuple[dict[str, Any], ...] = ()
    # The audio_out route: the model's own speech instead of synthesis. An engine whose
    # model does not speak never gets one (the session routes by its capabilities).
    speech: SpeechWanted | None = None

    @property
    def slot_key(self) -> str:
        """Whose KV state this request extends: the persona, in this conversation."""
        return (
            f"{self.persona_id}/{self.conversation_id}" if self.conversation_id else self.persona_id
        )


@dataclass(slots=True)
class LLMUsage:
    """Filled in by the engine while it streams; read by turn metrics."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # prefix served from a persona's KV state / the server's cache
    evaluated_tokens: int = 0  # prompt tokens actually prefilled this turn
    generated_tokens: int = 0
    restore_ms: float = 0.0  # time to load the persona's KV slot
    prefill_ms: float = 0.0
    decode_ms: float = 0.0


class LLMError(RuntimeError):
    """The backend failed; the message says what to do about it."""


class LLMEngine(Protocol):
    name: str

    async def warm(self) -> None:
        """Load and run once so that a user's first turn is not the cold one."""

    def stream(self, request: LLMRequest, usage: LLMUsage) -> AsyncIterator[str]:
        """Yield reply text deltas. Closing the iterator cancels generation and
        returns only after the backend has stopped working on it."""
        ...

    async def close(self) -> None: ...
