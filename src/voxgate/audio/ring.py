"""A fixed-capacity ring of float32 samples addressed by absolute sample index.

The session keeps the current utterance (plus its pre-roll) here. Appending a
20 ms frame copies that frame and nothing else: the storage is allocated once
and never grows, and audio older than ``capacity`` samples is overwritten.
Reading an index range returns a copy of whatever part of it is still held
(clamped to ``[start, end)``), never stale or overwritten data.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class AudioRing:
    """``append`` at the end, ``slice`` any held range, ``trim_before`` to forget.

    Indices are absolute: the first sample ever appended is index 0, and a
    sample keeps its index for as long as it is held. ``start`` is the oldest
    index still readable, ``end`` one past the newest. ``end - start`` never
    exceeds ``capacity``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, not {capacity}")
        self._ring: FloatArray = np.zeros(capacity, dtype=np.float32)
        self._end = 0  # absolute index one past the newest sample
        self._floor = 0  # set by trim_before: nothing older is readable

    @property
    def capacity(self) -> int:
        return len(self._ring)

    @property
    def end(self) -> int:
        return self._end

    @property
    def start(self) -> int:
        return max(self._floor, self._end - len(self._ring))

    def __len__(self) -> int:
        return self._end - self.start

    def append(self, samples: npt.ArrayLike) -> None:
        """Copy ``samples`` (1-D) in: O(len(samples)), no allocation of the ring."""
        data = np.asarray(samples, dtype=np.float32)
        if data.ndim != 1:
            raise ValueError(f"samples must be 1-D, not shape {data.shape}")
        n = len(data)
        if n == 0:
            return
        cap = len(self._ring)
        new_end = self._end + n
        if n > cap:  # only the newest ``cap`` samples can be held
            data = data[n - cap :]
            n = cap
        pos = (new_end - n) % cap
        first = min(n, cap - pos)
        self._ring[pos : pos + first] = data[:first]
        if first < n:
            self._ring[: n - first] = data[first:]
        self._end = new_end

    def slice(self, begin: int, end: int) -> FloatArray:
        """A copy of samples ``[begin, end)``, clamped to what is held."""
        lo = max(begin, self.start)
        hi = min(end, self._end)
        if hi <= lo:
            return np.zeros(0, dtype=np.float32)
        cap = len(self._ring)
        pos = lo % cap
        n = hi - lo
        if pos + n <= cap:
            return self._ring[pos : pos + n].copy()
        return np.concatenate((self._ring[pos:], self._ring[: pos + n - cap]))

    def trim_before(self, index: int) -> None:
        """Forget samples before ``index`` (O(1); the storage is simply reused)."""
        self._floor = max(self._floor, min(index, self._end))

    def grow(self, capacity: int) -> None:
        """Enlarge the ring to ``capacity`` samples, keeping what it holds at its indices."""
        if capacity <= len(self._ring):
            return
        held_from, held = self.start, self.slice(self.start, self._end)
        self._ring = np.zeros(capacity, dtype=np.float32)
        # Absolute index i lives at i % capacity.
        self._ring[np.arange(held_from, self._end) % capacity] = held
        self._floor = max(self._floor, held_from)

    def clear(self) -> None:
        """Forget everything held; indices keep counting from ``end``."""
        self._floor = self._end
