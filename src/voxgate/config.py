"""Session configuration: defaults, per-persona overrides, client updates (validated)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voxgate.personas.persona import Persona


class SessionConfig(BaseModel):
    # Strict: JSON `true` is not the number 1, nor "400" the number 400.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    # Silence before a complete-looking turn is committed. The reply has started
    # speculatively well before (compute early, commit late), so waiting costs little.
    endpoint_min_ms: int = Field(400, ge=0, le=5000)
    endpoint_max_ms: int = Field(1500, ge=0, le=10000)
    # Ask Smart Turn v3.2 (if set-up fetched it) whether the pause's audio sounds finished;
    # a complete-looking transcript that does not then waits endpoint_mid_ms.
    smart_turn: bool = False
    endpoint_mid_ms: int = Field(800, ge=0, le=10000)
    interrupt_min_ms: int = Field(300, ge=0, le=5000)
    # Silero's speech probability at which speech starts (it ends 0.15 lower): higher
    # ignores more background noise, lower hears softer speech.
    vad_threshold: float = Field(0.5, ge=0.05, le=0.95)
    # Start the final decode at the VAD's speech end, overlapping the endpointing wait.
    overlap: bool = True
    # Run the LLM (and first TTS) on the early-final transcript before the turn is committed.
    speculate: bool = True
    clause_chunking: bool = True
    # > 0: speak the first N words of a reply before its first punctuation mark (sooner
    # audio, a seam in the melody). 0: the first chunk ends at punctuation.
    first_chunk_words: int = Field(0, ge=0, le=20)
    # Re-decode the utterance while the user speaks (when the CPU is free): interim
    # transcripts, and at the pause the last one is the transcript when it covers all speech.
    interim_stt: bool = True
    interim_interval_ms: int = Field(300, ge=100, le=10000)
    # Prefill each interim transcript into the LLM's KV cache while the user speaks: at
    # the pause the reply prefills only the words said since (embedded engine only).
    prime_partials: bool = True
    fillers: bool = True
    filler_after_ms: int = Field(800, ge=0, le=10000)
    max_utterance_ms: int = Field(30000, ge=1000, le=120000)
    # Reply audio leaves at most this far ahead of real-time playback, so that an
    # interruption stops it at the source (the first chunk always goes at once).
    output_lead_ms: int = Field(300, ge=100, le=60000)
    # Stop sending a reply's audio the moment the user speaks over it (resumed if it
    # was only a cough), rather than only once the speech is long enough to interrupt.
    hold_on_speech: bool = True
    # Check each reply clause before it is spoken: regenerate a reply that parrots the
    # prompt, echoes the user or repeats itself (voxgate.quality.guard).
    reply_guard: bool = True
    # Seeds the sequence of per-reply sampling seeds: the same conversation then gets the
    # same replies (benchmarks compare settings on equal replies). None: fresh each session.
    seed: int | None = Field(None, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _ordered(self) -> SessionConfig:
        if self.endpoint_max_ms < self.endpoint_min_ms:
            raise ValueError("endpoint_max_ms must be >= endpoint_min_ms")
        return self

    @property
    def mode(self) -> str:
        return "voxgate" if self.overlap else "sequential"


def sequential_config() -> SessionConfig:
    """The naive baseline of the design documents: every stage waits for the previous one."""
    return SessionConfig(
        endpoint_min_ms=500,
        endpoint_max_ms=500,
        overlap=False,
        speculate=False,
        clause_chunking=False,
        interim_stt=False,
        prime_partials=False,
        fillers=False,
    )


def config_for(
    persona: Persona, base: SessionConfig, update: dict[str, Any] | None
) -> SessionConfig:
    """Persona preferences first, then what the client asked for."""
    values = base.model_dump()
    if base.overlap:  # the sequential baseline keeps its fixed 500 ms
        if persona.endpoint_min_ms is not None:
            values["endpoint_min_ms"] = persona.endpoint_min_ms
        if persona.endpoint_max_ms is not None:
            values["endpoint_max_ms"] = persona.endpoint_max_ms
        if persona.interrupt_min_ms is not None:
            values["interrupt_min_ms"] = persona.interrupt_min_ms
    values.update(update or {})
    return SessionConfig(**values)


def updated_config(current: SessionConfig, update: dict[str, Any]) -> SessionConfig:
    """A client's later update: on top of what the session has now (persona preferences
    were applied at the start and may since have been overridden by the client)."""
    return SessionConfig(**{**current.model_dump(), **update})
