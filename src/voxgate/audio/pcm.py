"""PCM16 <-> float32 conversion and resampling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

FloatArray = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


def pcm16_to_float(data: bytes) -> FloatArray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: npt.NDArray[np.floating]) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0) * 32767.0
    return bytes(clipped.astype("<i2").tobytes())


def int16_to_bytes(samples: Int16Array) -> bytes:
    return bytes(samples.astype("<i2").tobytes())


def resample(samples: FloatArray, rate_in: int, rate_out: int) -> FloatArray:
    if rate_in == rate_out:
        return samples
    out: FloatArray = soxr.resample(samples, rate_in, rate_out).astype(np.float32)
    return out


class SampleBuffer:
    """A growable float32 buffer addressed by absolute sample index.

    The session keeps the current utterance here; ``trim_before`` drops audio
    that no decode can need any more, so memory stays bounded in long sessions.
    """

    def __init__(self) -> None:
        self._chunks: list[FloatArray] = []
        self._data: FloatArray = np.zeros(0, dtype=np.float32)
        self.start = 0  # absolute index of self._data[0]

    @property
    def end(self) -> int:
        return self.start + len(self._data) + sum(len(c) for c in self._chunks)

    def append(self, samples: FloatArray) -> None:
        self._chunks.append(samples)

    def _flatten(self) -> None:
        if self._chunks:
            self._data = np.concatenate([self._data, *self._chunks])
            self._chunks = []

    def slice(self, begin: int, end: int) -> FloatArray:
        self._flatten()
        lo = max(begin, self.start) - self.start
        hi = max(min(end, self.end) - self.start, lo)
        return self._data[lo:hi].copy()

    def trim_before(self, index: int) -> None:
        self._flatten()
        cut = min(max(index - self.start, 0), len(self._data))
        self._data = self._data[cut:]
        self.start += cut
