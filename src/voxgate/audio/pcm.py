"""PCM16 <-> float32 conversion and resampling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from voxgate.audio.ring import AudioRing

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


# The utterance buffer's default span: longer than the default ``max_utterance_ms``
# (30 s) plus pre-roll and the decode that follows the utterance's end.
SAMPLE_BUFFER_SECONDS = 40
SAMPLE_BUFFER_RATE = 16_000


class SampleBuffer(AudioRing):
    """The session's utterance buffer: an ``AudioRing`` of 40 s at 16 kHz by default.

    Appending a frame no longer grows or copies the whole buffer; audio older
    than ``capacity`` samples is overwritten, and ``trim_before`` is O(1). A
    session allowing utterances longer than ~39 s needs a larger ``capacity``.
    """

    def __init__(self, capacity: int = SAMPLE_BUFFER_SECONDS * SAMPLE_BUFFER_RATE) -> None:
        super().__init__(capacity)
