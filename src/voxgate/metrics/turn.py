"""Per-turn timestamps, spans and the durations derived from them.

Timestamps are milliseconds on the session's audio clock (see
``SessionClock``), so the user's speech end and the server's work are on one
axis.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from voxgate.llm.base import LLMUsage

STAMPS = (
    "speech_start",
    "speech_end",
    "final_transcript",
    "speculation_start",
    "committed",
    "llm_start",
    "llm_first_token",
    "first_tts_audio",
    "first_audio_sent",
    "holding_line_sent",
    "first_answer_audio_sent",
    "reply_end",
)


class SessionClock:
    """Audio ms received, advanced by wall time between input frames.

    A client streams in real time, so between frames the two clocks agree;
    when input stops (end of a file) the clock still moves with the server's
    work instead of freezing.
    """

    def __init__(self, rate: int = 16000) -> None:
        self.rate = rate
        self.samples = 0
        self._wall_at_last = time.monotonic()

    def advance(self, n_samples: int) -> None:
        self.samples += n_samples
        self._wall_at_last = time.monotonic()

    def sample_ms(self, sample: int) -> float:
        return sample * 1000.0 / self.rate

    def now_ms(self) -> float:
        return self.sample_ms(self.samples) + (time.monotonic() - self._wall_at_last) * 1000.0


@dataclass(slots=True)
class Span:
    stage: str
    start_ms: float
    end_ms: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TurnMetrics:
    turn: int
    persona: str
    mode: str
    stamps: dict[str, float] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    transcript: str = ""
    reply: str = ""
    llm: LLMUsage = field(default_factory=LLMUsage)
    speculative: str = "none"  # "none" | "hit" | "miss"
    wasted_llm_calls: int = 0
    stt_calls: int = 0
    stt_final_calls: int = 0  # of those, decodes on the turn's path (not interim captions)
    tts_calls: int = 0  # syntheses of this turn's reply (holding lines made ahead excluded)
    # Which path each sense took: camera -> "image" (a model that sees got the frame),
    # "description" (the offline bridge) or absent (no camera).
    routes: dict[str, str] = field(default_factory=dict)
    # Where the transcript came from (turns.machine.TranscriptReady): partial | interim | decode.
    stt_source: str | None = None
    interrupted: bool = False
    filler: str | None = None
    error: str | None = None
    # What an interruption's truncation used: "client" (its playback reports) or "estimate".
    playback: str | None = None
    # Reply guard hits: rule, reason, attempt, action (regenerated | fallback | truncated).
    guard: list[dict[str, object]] = field(default_factory=list)

    def stamp(self, name: str, at_ms: float, overwrite: bool = False) -> None:
        if overwrite or name not in self.stamps:
            self.stamps[name] = round(at_ms, 1)

    def span(self, stage: str, start_ms: float, **attrs: Any) -> Span:
        span = Span(stage, round(start_ms, 1), attrs=attrs)
        self.spans.append(span)
        return span

    def _between(self, start: str, end: str) -> float | None:
        if start in self.stamps and end in self.stamps:
            return round(self.stamps[end] - self.stamps[start], 1)
        return None

    def durations(self) -> dict[str, float | None]:
        stt = next((s for s in reversed(self.spans) if s.stage == "stt_final"), None)
        stt_ms = round(stt.end_ms - stt.start_ms, 1) if stt and stt.end_ms is not None else None
        return {
            "endpointing": self._between("speech_end", "committed"),
            "stt": stt_ms,
            "stt_after_speech_end": self._between("speech_end", "final_transcript"),
            "llm_ttft": self._between("llm_start", "llm_first_token"),
            "llm_after_commit": self._after_commit("llm_first_token"),
            "tts_first_byte": self._tts_first_byte(),
            "first_audio": self._between("speech_end", "first_audio_sent"),
            "voice_to_voice": self._between("speech_end", "first_answer_audio_sent"),
            # A tool turn: when the holding line began, while the tool ran.
            "holding_line": self._between("speech_end", "holding_line_sent"),
            "answer_after_commit": self._between("committed", "first_answer_audio_sent"),
            # How long before the commit the speculative reply that was kept had started.
            "speculation_lead": (
                self._between("speculation_start", "committed")
                if self.speculative == "hit"
                else None
            ),
            "reply": self._between("first_answer_audio_sent", "reply_end"),
        }

    def answer_ready_at_commit(self) -> bool | None:
        """Was the first answer clause already synthesized when the turn was committed?"""
        if "committed" not in self.stamps:
            return None
        ready = self.stamps.get("first_tts_audio")
        return ready is not None and ready <= self.stamps["committed"]

    def _after_commit(self, name: str) -> float | None:
        if name in self.stamps and "committed" in self.stamps:
            return round(max(self.stamps[name] - self.stamps["committed"], 0.0), 1)
        return None

    def _tts_first_byte(self) -> float | None:
        first = next((s for s in self.spans if s.stage == "tts" and s.end_ms is not None), None)
        if first is None or first.end_ms is None:
            return None
        return round(first.end_ms - first.start_ms, 1)

    def event(self) -> dict[str, Any]:
        """The ``metrics`` event sent to the client."""
        return {
            "type": "metrics",
            "turn": self.turn,
            "persona": self.persona,
            "mode": self.mode,
            "transcript": self.transcript,
            "reply": self.reply,
            "timestamps": dict(self.stamps),
            "durations": self.durations(),
            "llm": asdict(self.llm),
            "speculative": self.speculative,
            "wasted_llm_calls": self.wasted_llm_calls,
            "stt_calls": self.stt_calls,
            "stt_final_calls": self.stt_final_calls,
            "tts_calls": self.tts_calls,
            "routes": dict(self.routes),
            "stt_source": self.stt_source,
            "answer_ready_at_commit": self.answer_ready_at_commit(),
            "interrupted": self.interrupted,
            "filler": self.filler,
            "error": self.error,
            "playback": self.playback,
            "guard": list(self.guard),
        }

    def record(self, session_id: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSONL trace record: the event (built here unless given) plus every span."""
        record = dict(event if event is not None else self.event())
        record["type"] = "turn"
        record["session"] = session_id
        record["spans"] = [asdict(s) for s in self.spans]
        return record
