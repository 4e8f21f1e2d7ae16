"""One gate for the CPU: the live turn computes first.

On 2 cores, STT, LLM and TTS running at once oversubscribe each other and
all get slower. Engines run in their own threads and take this gate around
each unit of work (one STT call, one LLM decode step, one TTS clause); when
it is released, the waiter with the best priority goes next. Units are short
(a decode step is ~25 ms), so a live request never waits long behind
speculative work.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum


class Priority(IntEnum):
    """Lower runs first."""

    STT_FINAL = 0  # the final transcript of the live turn
    # Audio about to play outranks further LLM tokens: decoding (~40 tok/s)
    # outruns speech (~3 words/s), but a clause waiting for synthesis is silence.
    TTS_LIVE = 1
    LLM_LIVE = 2  # the reply being spoken
    SPECULATIVE = 3  # speculative LLM and TTS, interim STT, warm-up


class ComputeGate:
    """A priority lock shared by all engine threads of the process."""

    def __init__(self, slots: int = 1) -> None:
        self._cond = threading.Condition()
        self._free = slots
        self._waiting: list[tuple[int, int]] = []
        self._seq = itertools.count()
        self.grants = 0

    @contextmanager
    def hold(self, priority: int) -> Iterator[None]:
        ticket = (int(priority), next(self._seq))
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            while self._free == 0 or self._waiting[0] != ticket:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self.grants += 1
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    def busy(self) -> bool:
        """True when someone holds or waits for the gate: background work should skip a beat."""
        with self._cond:
            return self._free == 0 or bool(self._waiting)


class PriorityRef:
    """A mutable priority: a speculative request is promoted when it becomes the live one."""

    __slots__ = ("value",)

    def __init__(self, value: Priority) -> None:
        self.value = value
