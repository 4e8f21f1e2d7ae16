"""Small speech measurements in numpy: pitch (F0) and long-term spectral envelope.

Enough to tell two synthetic voices apart in a test, not a phonetics toolkit.
Everything is computed at 16 kHz, so audio from engines with different
sample rates compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voxgate.audio.pcm import FloatArray, resample

ANALYSIS_RATE = 16000
# Speaking voices sit between ~70 Hz (low male) and ~400 Hz (child, high female).
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0
# 40 ms holds two periods of the lowest F0: the autocorrelation needs both.
PITCH_FRAME_MS = 40.0
HOP_MS = 10.0
# Normalised autocorrelation above this at the best lag: periodic enough to be voiced.
VOICING_THRESHOLD = 0.5
# Frames this far below the loudest frame are pauses or breath, not speech.
SILENCE_DB = 35.0
SPECTRUM_FRAME_MS = 25.0
N_MELS = 40
MEL_LOW_HZ = 60.0
MEL_HIGH_HZ = 7600.0

AnyAudio = npt.NDArray[np.floating] | npt.NDArray[np.integer]


def as_float(samples: AnyAudio) -> FloatArray:
    """float32 in [-1, 1]; PCM16 is scaled."""
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / 32768.0
    return samples.astype(np.float32)


def _at_analysis_rate(samples: AnyAudio, rate: int) -> FloatArray:
    return resample(as_float(samples), rate, ANALYSIS_RATE)


def frames(samples: FloatArray, size: int, hop: int) -> FloatArray:
    """(n_frames, size) view-copy; a signal shorter than one frame gives no frames."""
    if len(samples) < size:
        return np.zeros((0, size), dtype=np.float32)
    count = 1 + (len(samples) - size) // hop
    index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    out: FloatArray = samples[index]
    return out


def _loud(frame_rms: FloatArray) -> npt.NDArray[np.bool_]:
    if len(frame_rms) == 0 or float(frame_rms.max()) <= 0.0:
        return np.zeros(len(frame_rms), dtype=bool)
    floor = float(frame_rms.max()) * 10 ** (-SILENCE_DB / 20)
    return np.asarray(frame_rms > floor)


def f0_track(samples: AnyAudio, rate: int) -> FloatArray:
    """F0 in Hz per 10 ms frame, NaN where unvoiced or silent.

    Autocorrelation per frame, normalised by the frame energy; the biased
    estimate (no division by overlap length) favours the true period over
    its multiples, which are the usual octave errors. The peak lag is refined
    by parabolic interpolation.
    """
    x = _at_analysis_rate(samples, rate)
    size = int(ANALYSIS_RATE * PITCH_FRAME_MS / 1000)
    hop = int(ANALYSIS_RATE * HOP_MS / 1000)
    block = frames(x, size, hop)
    if len(block) == 0:
        return np.zeros(0, dtype=np.float32)
    block = block - block.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(block, n=2 * size, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :size]
    energy = acf[:, 0]
    lo = int(ANALYSIS_RATE / F0_MAX_HZ)
    hi = min(int(ANALYSIS_RATE / F0_MIN_HZ), size - 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = acf / energy[:, None]
    lag = lo + np.argmax(norm[:, lo:hi + 1], axis=1)
    rows = np.arange(len(block))
    peak = norm[rows, lag]
    left, right = norm[rows, lag - 1], norm[rows, lag + 1]
    curve = left - 2 * peak + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curve < 0, 0.5 * (left - right) / curve, 0.0)
    period = lag + np.clip(shift, -0.5, 0.5)
    voiced = _loud(np.sqrt(np.maximum(energy, 0) / size).astype(np.float32))
    voiced &= np.nan_to_num(peak) > VOICING_THRESHOLD
    f0 = np.where(voiced, ANALYSIS_RATE / period, np.nan)
    return f0.astype(np.float32)


# Frames further than this ratio from the median F0 are octave jumps of the
# tracker (or creak), not the speaker's pitch: the mean leaves them out.
OCTAVE_JUMP_RATIO = 1.5


@dataclass(frozen=True, slots=True)
class Pitch:
    mean_hz: float  # over voiced frames, octave jumps excluded; NaN when nothing is voiced
    median_hz: float
    voiced_fraction: float  # of all frames


def pitch(samples: AnyAudio, rate: int) -> Pitch:
    track = f0_track(samples, rate)
    voiced = track[~np.isnan(track)]
    if len(voiced) == 0:
        return Pitch(float("nan"), float("nan"), 0.0)
    median = float(np.median(voiced))
    steady = voiced[(voiced < median * OCTAVE_JUMP_RATIO) & (voiced > median / OCTAVE_JUMP_RATIO)]
    return Pitch(float(steady.mean()), median, len(voiced) / len(track))


def mel_filterbank(n_fft: int, rate: int = ANALYSIS_RATE, n_mels: int = N_MELS,
                   low_hz: float = MEL_LOW_HZ, high_hz: float = MEL_HIGH_HZ) -> FloatArray:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale."""

    def mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(low_hz)), mel(np.array(high_hz)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def envelope_db(samples: AnyAudio, rate: int) -> FloatArray:
    """Long-term spectral envelope: mean log-mel energy (dB) over the speech frames,
    with its overall level removed, so loudness does not count as timbre."""
    x = _at_analysis_rate(samples, rate)
    size = int(ANALYSIS_RATE * SPECTRUM_FRAME_MS / 1000)
    block = frames(x, size, int(ANALYSIS_RATE * HOP_MS / 1000))
    if len(block) == 0:
        raise ValueError("audio shorter than one analysis frame")
    speech = _loud(np.sqrt((block**2).mean(axis=1)).astype(np.float32))
    power = np.abs(np.fft.rfft(block[speech] * np.hanning(size), axis=1)) ** 2
    mel_power = power @ mel_filterbank(size).T
    # A floor relative to the loudest band (-80 dB): empty bands then read the
    # same whatever the level, where an absolute floor would count loudness.
    floor = max(float(mel_power.max()) * 1e-8, 1e-20)
    mel_db = 10.0 * np.log10(np.maximum(mel_power, floor))
    mean = mel_db.mean(axis=0)
    out: FloatArray = (mean - mean.mean()).astype(np.float32)
    return out


def envelope_distance_db(a: FloatArray, b: FloatArray) -> float:
    """RMS difference of two envelopes in dB. With the level removed this equals
    the Euclidean distance of their orthonormal cepstra without c0 (MFCC-like)."""
    return float(np.sqrt(np.mean((a - b) ** 2)))


@dataclass(frozen=True, slots=True)
class VoiceProfile:
    pitch: Pitch
    envelope: FloatArray  # envelope_db

    def distance_db(self, other: VoiceProfile) -> float:
        return envelope_distance_db(self.envelope, other.envelope)


def voice_profile(samples: AnyAudio, rate: int) -> VoiceProfile:
    return VoiceProfile(pitch(samples, rate), envelope_db(samples, rate))
