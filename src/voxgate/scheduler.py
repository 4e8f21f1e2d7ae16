"""One gate for the CPU: the live turn computes first.

On 2 cores, STT, LLM and TTS running at once oversubscribe each other and
all get slower. Engines run in their own threads and take this gate around
each unit of work (one STT call, one LLM decode step, one TTS clause); when
it is released, the waiter with the best priority goes next. Units are short
(a decode step is ~25 ms), so a live request never waits long behind
speculative work.
"""

from __future__ import annotations

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
    # Prefilling the user's words while they still speak: useful only if nothing else
    # wants the CPU, and it must never keep an interim decode from starting.
    BACKGROUND = 4


class ComputeGate:
    """A priority lock shared by all engine threads of the process.

    Waiters hold a ``PriorityRef`` or a plain priority; the best one is chosen
    at each release from the *current* values, so a speculative request that
    is promoted while it waits goes ahead at its new priority (no inversion).
    """

    def __init__(self, slots: int = 1) -> None:
        self._cond = threading.Condition()
        self._free = slots
        self._waiting: list[tuple[PriorityRef, int]] = []
        self._holding: list[PriorityRef] = []
        self._seq = itertools.count()

    def _best(self) -> tuple[PriorityRef, int]:
        return min(self._waiting, key=lambda ticket: (int(ticket[0].value), ticket[1]))

    @contextmanager
    def hold(self, priority: int | PriorityRef) -> Iterator[None]:
        ref = priority if isinstance(priority, PriorityRef) else PriorityRef(Priority(priority))
        ticket = (ref, next(self._seq))
        with self._cond:
            self._waiting.append(ticket)
            while self._free == 0 or self._best() is not ticket:
                self._cond.wait()
            self._waiting.remove(ticket)
            self._free -= 1
            self._holding.append(ref)
        try:
            yield
        finally:
            with self._cond:
                self._holding.remove(ref)
                self._free += 1
                self._cond.notify_all()

    def busy(self) -> bool:
        """True when someone holds or waits for the gate with more than background work:
        optional work (an interim decode) should skip a beat."""
        with self._cond:
            refs = [*self._holding, *(ref for ref, _ in self._waiting)]
            return any(ref.value < Priority.BACKGROUND for ref in refs)


class PriorityRef:
    """A mutable priority: a speculative request is promoted when it becomes the live one."""

    __slots__ = ("value",)

    def __init__(self, value: Priority) -> None:
        self.value = value


# What engines accept: a fixed priority, or a reference the session can promote.
PriorityLike = Priority | PriorityRef
