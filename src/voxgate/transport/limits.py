"""Input limits the gateway enforces per session. Pure: callers pass the clock in.

A microphone produces audio at real time. A client that pushes audio much
faster (a flood, or a file streamed without pacing) would make the server
run VAD and decodes for minutes of audio per second of wall time and starve
every other session. ``AudioRateLimiter`` compares the audio clock with the
wall clock over a short sliding window and refuses the excess; the session
itself goes on.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from voxgate.protocol.frames import HEADER_SIZE, MAX_FRAME_BYTES, FrameType

# 3x leaves room for network jitter (a stalled connection delivering a burst)
# while still refusing a file streamed flat out (tens of times real time).
DEFAULT_MAX_SPEED = 3.0
# Long enough that one burst after a short stall is absorbed, short enough
# that a flood is cut within a couple of seconds.
DEFAULT_WINDOW_S = 2.0
# One error frame per second at most while audio keeps being dropped.
DEFAULT_REPORT_EVERY_S = 1.0
# Window granularity: bounded memory (window / slot entries) whatever the
# number of messages.
SLOT_S = 0.1


class Admission(Enum):
    ACCEPT = "accept"
    DROP = "drop"  # refuse this chunk; the client was told recently
    DROP_REPORT = "drop_report"  # refuse this chunk and tell the client
    # Accept this chunk, and tell the client about audio dropped since the last report.
    ACCEPT_REPORT = "accept_report"


def audio_samples(message: bytes, max_bytes: int = MAX_FRAME_BYTES) -> int:
    """Samples a raw AUDIO_CHUNK message delivers; 0 for any other message and for chunks
    the decoder refuses anyway (oversized, odd length), so those get their own error."""
    if len(message) < HEADER_SIZE or len(message) > max_bytes:
        return 0
    if message[0] != FrameType.AUDIO_CHUNK or (len(message) - HEADER_SIZE) % 2:
        return 0
    return (len(message) - HEADER_SIZE) // 2


class AudioRateLimiter:
    """Accepts at most ``max_speed`` x ``window_s`` seconds of audio in any window of
    ``window_s`` wall seconds.

    A single chunk longer than that allowance (6 s by default) is always
    refused: clients send audio in real-time-sized pieces (20 ms).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        max_speed: float = DEFAULT_MAX_SPEED,
        window_s: float = DEFAULT_WINDOW_S,
        report_every_s: float = DEFAULT_REPORT_EVERY_S,
    ) -> None:
        if sample_rate <= 0 or max_speed <= 0 or window_s < SLOT_S:
            raise ValueError("sample_rate and max_speed must be > 0, window_s >= 0.1")
        self.sample_rate = sample_rate
        self.max_speed = max_speed
        self.window_s = window_s
        self.report_every_s = report_every_s
        self.budget_samples = int(max_speed * window_s * sample_rate)
        self._n_slots = round(window_s / SLOT_S)
        self._slots: deque[list[int]] = deque()  # [slot index, samples accepted in it]
        self._in_window = 0
        self._last_report: float | None = None
        self.dropped_samples = 0  # since the last report
        self.dropped_total = 0

    def _expire(self, slot: int) -> None:
        oldest = slot - self._n_slots + 1
        while self._slots and self._slots[0][0] < oldest:
            self._in_window -= self._slots.popleft()[1]

    def admit(self, n_samples: int, now: float) -> Admission:
        """``now``: a monotonic wall clock in seconds."""
        slot = int(now / SLOT_S)
        self._expire(slot)
        accept = self._in_window + n_samples <= self.budget_samples
        if accept:
            if self._slots and self._slots[-1][0] == slot:
                self._slots[-1][1] += n_samples
            else:
                self._slots.append([slot, n_samples])
            self._in_window += n_samples
        else:
            self.dropped_samples += n_samples
            self.dropped_total += n_samples
        # Drops are reported at once, then at most every report_every_s, also by the first
        # accepted chunk after that: every dropped sample is reported exactly once.
        due = self._last_report is None or now - self._last_report >= self.report_every_s
        if self.dropped_samples and due:
            self._last_report = now
            return Admission.ACCEPT_REPORT if accept else Admission.DROP_REPORT
        return Admission.ACCEPT if accept else Admission.DROP

    def report(self) -> str:
        """The ERROR message for a DROP_REPORT or ACCEPT_REPORT: the audio dropped since the
        last report (and in the whole session); resets the since-report count."""
        ms = 1000 / self.sample_rate
        since_report = self.dropped_samples * ms
        self.dropped_samples = 0
        return (
            f"audio arrives faster than {self.max_speed:g}x real time over "
            f"{self.window_s:g} s; dropped {since_report:.0f} ms of audio since the last "
            f"report ({self.dropped_total * ms:.0f} ms in this session); stream it paced "
            "in real time"
        )


class EventRateLimiter:
    """A token bucket for one kind of client event: ``burst`` at once, then ``per_s``.

    A typed turn costs an LLM generation and its speech; a client sending them in a
    loop would keep the shared compute busy for every other session.
    """

    def __init__(self, per_s: float, burst: int) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError("per_s must be > 0 and burst >= 1")
        self.per_s = per_s
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None
        self.refused = 0

    def admit(self, now: float) -> bool:
        """``now``: a monotonic wall clock in seconds."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_s)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False

    def remaining(self, now: float) -> int:
        """How many would be admitted at ``now``, without taking one."""
        tokens = self._tokens
        if self._last is not None:
            tokens = min(self.burst, tokens + (now - self._last) * self.per_s)
        return int(tokens)

    def describe(self) -> str:
        return f"at most {self.burst} at once, then {self.per_s:g} per second"
