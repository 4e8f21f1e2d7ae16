"""WAV files in and out (mono PCM16), resampled to what the caller needs."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from voxgate.audio.pcm import FloatArray, float_to_pcm16, resample


def read_wav(path: str | Path, rate: int | None = None) -> tuple[FloatArray, int]:
    """Read a PCM WAV as mono float32, resampled to ``rate`` when given."""
    with wave.open(str(path), "rb") as wav:
        channels, width, src_rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.float32)
    if rate is not None and rate != src_rate:
        return resample(samples, src_rate, rate), rate
    return samples, src_rate


def write_wav_bytes(path: str | Path, pcm16: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16)


def wav_bytes(samples: FloatArray, rate: int) -> bytes:
    """A mono PCM16 WAV file in memory (the audio_in route's ``input_audio`` part)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(float_to_pcm16(samples))
    return out.getvalue()
