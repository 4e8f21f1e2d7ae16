"""Endpointing on the audio clock: when did speech start, pause, resume, and when is the turn over.

Pure and synchronous (no I/O, no wall time), so a recorded stream replays
deterministically in tests. The session feeds VAD probabilities and reads
events; it separately tells the detector whether the transcript so far
looks like a finished thought, which decides between the minimum and the
maximum endpointing delay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# Silero is confident on speech at > 0.5; a lower exit threshold stops a
# soft syllable from splitting one utterance into two (hysteresis).
SPEECH_ON = 0.5
SPEECH_OFF = 0.35
# Two windows (64 ms) of speech before we believe it: clicks and breaths are shorter.
START_WINDOWS = 2
# Silence needed before we call it a pause and start the final decode.
# Short on purpose: the decode overlaps the endpointing wait, and a resumed
# utterance only costs a discarded decode.
PAUSE_MS = 96


class Phase(Enum):
    IDLE = "idle"
    SPEAKING = "speaking"
    PAUSED = "paused"  # silence after speech, turn not yet committed


class EventKind(Enum):
    SPEECH_START = "speech_start"
    PAUSE = "pause"  # silence long enough to start the final decode
    RESUME = "resume"  # speech again before the turn was committed
    END_OF_TURN = "end_of_turn"


@dataclass(frozen=True, slots=True)
class TurnEvent:
    kind: EventKind
    sample: int  # absolute sample index (audio clock) the event refers to
    speech_start: int = 0
    speech_end: int = 0


@dataclass(slots=True)
class EndpointConfig:
    min_delay_ms: int = 400
    max_delay_ms: int = 1500
    rate: int = 16000
    # A transcript that may be finished (Verdict.MAYBE) waits ``mid_delay_ms``; so does,
    # with a learned end-of-turn score (Smart Turn), a complete-looking transcript whose
    # audio does not sound finished.
    use_score: bool = False
    mid_delay_ms: int = 800
    score_threshold: float = 0.5
    # Speech starts above this VAD probability and ends below it minus the hysteresis.
    speech_on: float = SPEECH_ON


_CONTINUATION = frozenset(
    [
        "and",
        "or",
        "but",
        "so",
        "because",
        "if",
        "when",
        "while",
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "as",
        "that",
        "which",
        "who",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "is",
        "are",
        "was",
        "were",
        "be",
    ]
)


class Verdict(Enum):
    """What a transcript says about whether the thought is finished."""

    COMPLETE = "complete"  # terminal punctuation, no dangling function word
    # No terminal punctuation but nothing left hanging either ("Ever failed"): Whisper
    # often drops the final period when the audio stops right after the last word.
    MAYBE = "maybe"
    INCOMPLETE = "incomplete"  # a trailing comma, ellipsis or function word, or nothing
    # No words cover the pause yet and none are needed (the model hears the audio): the
    # audio's own end-of-turn score decides, else the middle wait.
    UNHEARD = "unheard"


def transcript_verdict(text: str) -> Verdict:
    stripped = text.strip()
    if not stripped or stripped.endswith(("...", "…", ",", "-", "—", ";", ":")):
        return Verdict.INCOMPLETE
    words = re.findall(r"[a-zA-Z']+", stripped.lower())
    if not words or words[-1] in _CONTINUATION:
        return Verdict.INCOMPLETE
    return Verdict.COMPLETE if stripped[-1] in ".!?" else Verdict.MAYBE


def looks_complete(text: str) -> bool:
    """A cheap end-of-thought guess: terminal punctuation and no dangling function word."""
    return transcript_verdict(text) is Verdict.COMPLETE


class Endpointer:
    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.phase = Phase.IDLE
        self._speech_run = 0
        self._speech_start = 0
        self._last_speech = 0  # end of the last speech window
        self._verdict: Verdict | None = None  # on the current pause's transcript
        self._score: float | None = None  # the end-of-turn model's, for the current pause

    @property
    def speech_start(self) -> int:
        return self._speech_start

    @property
    def speech_end(self) -> int:
        return self._last_speech

    def _ms(self, samples: int) -> float:
        return samples * 1000.0 / self.config.rate

    def set_transcript_verdict(self, verdict: Verdict) -> None:
        """Called when the transcript of the current pause is known."""
        if self.phase is Phase.PAUSED:
            self._verdict = verdict

    def set_transcript_complete(self, complete: bool) -> None:
        self.set_transcript_verdict(Verdict.COMPLETE if complete else Verdict.INCOMPLETE)

    def set_turn_score(self, probability: float) -> None:
        """Called when the end-of-turn model's verdict on the current pause lands."""
        if self.phase is Phase.PAUSED:
            self._score = probability

    def delay_ms(self) -> float:
        """How much silence ends the turn, given what is known about this pause so far."""
        c = self.config
        mid = min(max(c.mid_delay_ms, c.min_delay_ms), c.max_delay_ms)
        if self._verdict is None or self._verdict is Verdict.INCOMPLETE:
            return c.max_delay_ms
        if self._verdict is Verdict.UNHEARD:
            if not c.use_score:
                return mid
            if self._score is None:
                return c.max_delay_ms
            return c.min_delay_ms if self._score > c.score_threshold else c.max_delay_ms
        if c.use_score:
            if self._score is None:  # wait for the audio's verdict too
                return c.max_delay_ms
            if self._score <= c.score_threshold:  # does not sound finished: one step longer
                return mid if self._verdict is Verdict.COMPLETE else c.max_delay_ms
        return c.min_delay_ms if self._verdict is Verdict.COMPLETE else mid

    def update(self, window_end: int, window_len: int, prob: float) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        on = self.config.speech_on
        speaking = self.phase is Phase.SPEAKING
        threshold = max(on - (SPEECH_ON - SPEECH_OFF), 0.01) if speaking else on
        is_speech = prob >= threshold
        if is_speech:
            self._speech_run += 1
            if self.phase is Phase.IDLE and self._speech_run >= START_WINDOWS:
                self._speech_start = window_end - self._speech_run * window_len
                self.phase = Phase.SPEAKING
                events.append(
                    TurnEvent(EventKind.SPEECH_START, self._speech_start, self._speech_start)
                )
            elif self.phase is Phase.PAUSED and self._speech_run >= START_WINDOWS:
                self.phase = Phase.SPEAKING
                self._verdict = self._score = None
                events.append(TurnEvent(EventKind.RESUME, window_end, self._speech_start))
            if self.phase is Phase.SPEAKING:
                self._last_speech = window_end
        else:
            self._speech_run = 0
            if (
                self.phase is Phase.SPEAKING
                and self._ms(window_end - self._last_speech) >= PAUSE_MS
            ):
                self.phase = Phase.PAUSED
                self._verdict = self._score = None
                events.append(self._event(EventKind.PAUSE, window_end))
        events.extend(self.poll(window_end))
        return events

    def poll(self, now: int) -> list[TurnEvent]:
        """Commit the turn once the delay for the current verdict has passed."""
        if self.phase is not Phase.PAUSED:
            return []
        if self._ms(now - self._last_speech) < self.delay_ms():
            return []
        self.phase = Phase.IDLE
        self._verdict = self._score = None
        return [self._event(EventKind.END_OF_TURN, now)]

    def force_end(self, now: int) -> list[TurnEvent]:
        """The client closed the stream: an utterance in progress ends here."""
        if self.phase is Phase.IDLE:
            return []
        self.phase = Phase.IDLE
        self._verdict = self._score = None
        # Speech that goes on starts a new utterance from here, not from where the
        # ended one started (which would end it again at once, window after window).
        self._speech_run = 0
        return [self._event(EventKind.END_OF_TURN, now)]

    def _event(self, kind: EventKind, sample: int) -> TurnEvent:
        return TurnEvent(kind, sample, self._speech_start, self._last_speech)
