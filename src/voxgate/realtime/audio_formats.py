"""Realtime audio on the wire: base64 PCM16 at 24 kHz, or G.711 mu-law / A-law at 8 kHz.

The session hears 16 kHz and the voices speak at their own rate (Piper 22.05 kHz,
Kokoro 24 kHz): both directions go through soxr's streaming resampler, one per
stream, so no chunk boundary clicks. G.711 is coded here with numpy (audioop is
gone from Python 3.13).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from voxgate.audio.pcm import FloatArray, Int16Array

PCM = "audio/pcm"
PCMU = "audio/pcmu"
PCMA = "audio/pcma"
BETA_NAMES = {PCM: "pcm16", PCMU: "g711_ulaw", PCMA: "g711_alaw"}


@dataclass(frozen=True, slots=True)
class AudioFormat:
    kind: str  # PCM, PCMU or PCMA
    rate: int

    def ga(self) -> dict[str, Any]:
        """The GA API's shape: ``{"type": "audio/pcm", "rate": 24000}``."""
        return {"type": self.kind, "rate": self.rate} if self.kind == PCM else {"type": self.kind}

    def beta(self) -> str:
        """The beta API's name: ``pcm16``, ``g711_ulaw`` or ``g711_alaw``."""
        return BETA_NAMES[self.kind]

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.kind == PCM else 1


PCM24 = AudioFormat(PCM, 24000)
FORMATS = {PCM: PCM24, PCMU: AudioFormat(PCMU, 8000), PCMA: AudioFormat(PCMA, 8000)}


def parse_format(value: Any) -> AudioFormat:
    """A GA format object or a beta format name; ValueError names what is accepted."""
    if isinstance(value, str):
        for kind, name in BETA_NAMES.items():
            if value == name:
                return FORMATS[kind]
    elif isinstance(value, dict):
        named, rate = value.get("type"), value.get("rate")
        known = isinstance(named, str) and named in FORMATS
        if known and (rate is None or (named == PCM and rate == 24000)):
            return FORMATS[str(named)]
    raise ValueError(
        f"unsupported audio format {value!r}: use {{'type': 'audio/pcm', 'rate': 24000}}, "
        "{'type': 'audio/pcmu'} or {'type': 'audio/pcma'} (beta: pcm16, g711_ulaw, g711_alaw)"
    )


# -- G.711 -----------------------------------------------------------------------------

_MU_BIAS = 0x21  # in the 14-bit domain the encoder works in
_MU_CLIP = 8159


def _mulaw_table() -> Int16Array:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> Int16Array:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (codes & 0x70) >> 4
    level = ((codes & 0x0F) << 4) + 8
    magnitude = np.where(segment == 0, level, (level + 0x100) << np.maximum(segment - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


MULAW_TO_PCM = _mulaw_table()
ALAW_TO_PCM = _alaw_table()


def _top_bit(values: Any) -> Any:
    """Index of the highest set bit (values > 0)."""
    return np.floor(np.log2(np.maximum(values, 1))).astype(np.int32)


def pcm_to_mulaw(pcm: Int16Array) -> bytes:
    x = pcm.astype(np.int32) >> 2  # mu-law codes 14 bits
    negative = x < 0
    magnitude = np.minimum(np.where(negative, -x, x), _MU_CLIP) + _MU_BIAS
    segment = np.maximum(_top_bit(magnitude) - 5, 0)
    exponent = np.minimum(segment, 7)
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    code = np.where(segment > 7, 0x7F, (exponent << 4) | mantissa)  # saturated
    return bytes(((code ^ np.where(negative, 0x7F, 0xFF)) & 0xFF).astype(np.uint8).tobytes())


def pcm_to_alaw(pcm: Int16Array) -> bytes:
    x = pcm.astype(np.int32) >> 3  # A-law codes 13 bits
    mask = np.where(x >= 0, 0xD5, 0x55)
    magnitude = np.minimum(np.where(x >= 0, x, -x - 1), 0xFFF)
    segment = np.clip(_top_bit(magnitude) - 4, 0, 7)  # 0..31 -> 0, 32..63 -> 1, ...
    step = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((magnitude >> step) & 0x0F)
    return bytes(((code ^ mask) & 0xFF).astype(np.uint8).tobytes())


# -- base64 in and out -------------------------------------------------------------------


def decode_audio(data: Any, fmt: AudioFormat) -> Int16Array:
    """A base64 string in ``fmt`` as PCM16 at ``fmt.rate``; ValueError says what is wrong."""
    if not isinstance(data, str):
        raise ValueError("'audio' must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"'audio' is not valid base64: {exc}") from None
    if fmt.kind == PCM:
        if len(raw) % 2:
            raise ValueError("audio/pcm needs whole 16-bit samples (an even number of bytes)")
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    codes = np.frombuffer(raw, dtype=np.uint8)
    table = MULAW_TO_PCM if fmt.kind == PCMU else ALAW_TO_PCM
    return table[codes]


def encode_audio(pcm: Int16Array, fmt: AudioFormat) -> str:
    if fmt.kind == PCM:
        raw = pcm.astype("<i2").tobytes()
    elif fmt.kind == PCMU:
        raw = pcm_to_mulaw(pcm)
    else:
        raw = pcm_to_alaw(pcm)
    return base64.b64encode(raw).decode("ascii")


# -- resampling ----------------------------------------------------------------------------


def stream_quality(source: int, target: int) -> str:
    """soxr's quality for a live stream: each step up holds more audio back. Measured
    here in 20 ms chunks: 24 -> 16 kHz holds back 6 ms at MQ, 33 ms at HQ; 8 -> 16 kHz
    75 ms at MQ, 0.2 ms at QQ. Speech for a VAD and Whisper loses nothing at MQ, and
    telephone audio (nothing above 4 kHz) nothing at QQ's cubic interpolation."""
    return "QQ" if min(source, target) <= 8000 else "MQ"


class Resampler:
    """One continuous stream from ``source`` Hz to ``target`` Hz (float32 in [-1, 1])."""

    def __init__(self, source: int, target: int, quality: str | None = None) -> None:
        self.source, self.target = source, target
        quality = quality or stream_quality(source, target)
        self._stream = (
            None
            if source == target
            else soxr.ResampleStream(source, target, 1, dtype="float32", quality=quality)
        )

    def push(self, samples: FloatArray, last: bool = False) -> FloatArray:
        if self._stream is None:
            return samples.astype(np.float32, copy=False)
        out = self._stream.resample_chunk(samples.astype(np.float32, copy=False), last=last)
        return np.asarray(out, dtype=np.float32)


def int16_to_float(pcm: Int16Array) -> FloatArray:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def float_to_int16(samples: FloatArray) -> Int16Array:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
