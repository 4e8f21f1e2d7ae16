"""Realtime audio formats: G.711 bit-exact against CPython's own codec, base64, resampling."""

from __future__ import annotations

import base64
import warnings

import numpy as np
import pytest

from voxgate.realtime.audio_formats import (
    ALAW_TO_PCM,
    FORMATS,
    MULAW_TO_PCM,
    PCM24,
    PCMA,
    PCMU,
    Resampler,
    decode_audio,
    encode_audio,
    parse_format,
    pcm_to_alaw,
    pcm_to_mulaw,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference codec (CPython <= 3.12): our coder must match it exactly

EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int16)


def test_mulaw_matches_the_reference_for_every_sample() -> None:
    assert pcm_to_mulaw(EVERY_SAMPLE) == audioop.lin2ulaw(EVERY_SAMPLE.tobytes(), 2)
    reference = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype=np.int16)
    assert np.array_equal(MULAW_TO_PCM, reference)


def test_alaw_matches_the_reference_for_every_sample() -> None:
    assert pcm_to_alaw(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE.tobytes(), 2)
    reference = np.frombuffer(audioop.alaw2lin(bytes(range(256)), 2), dtype=np.int16)
    assert np.array_equal(ALAW_TO_PCM, reference)


@pytest.mark.parametrize("kind", [PCMU, PCMA])
def test_g711_round_trip_stays_close(kind: str) -> None:
    tone = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 12000).astype(np.int16)
    fmt = FORMATS[kind]
    back = decode_audio(encode_audio(tone, fmt), fmt)
    assert len(back) == len(tone)
    assert np.max(np.abs(back.astype(int) - tone)) < 12000 * 0.04  # G.711's coarse steps


def test_pcm_round_trip_is_exact() -> None:
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    assert np.array_equal(decode_audio(encode_audio(samples, PCM24), PCM24), samples)


@pytest.mark.parametrize(
    ("data", "problem"),
    [(b"not base64!", "base64"), (base64.b64encode(b"\x00\x01\x02"), "even number")],
)
def test_bad_audio_says_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_audio(data.decode(), PCM24)
    with pytest.raises(ValueError, match="base64 string"):
        decode_audio(123, PCM24)


def test_formats_parse_in_both_dialects() -> None:
    assert parse_format({"type": "audio/pcm", "rate": 24000}) is PCM24
    assert parse_format({"type": "audio/pcmu"}).rate == 8000
    assert parse_format("g711_alaw").kind == PCMA
    assert parse_format("pcm16") is PCM24
    for bad in ({"type": "audio/pcm", "rate": 16000}, {"type": "audio/flac"}, "mp3", None):
        with pytest.raises(ValueError, match="unsupported audio format"):
            parse_format(bad)


def test_streaming_resampler_keeps_duration_across_chunks() -> None:
    resampler = Resampler(22050, 24000)
    tone = np.sin(np.arange(22050) / 22050 * 2 * np.pi * 300).astype(np.float32)
    pieces = [resampler.push(tone[i : i + 441]) for i in range(0, len(tone), 441)]
    pieces.append(resampler.push(np.zeros(0, np.float32), last=True))
    out = np.concatenate(pieces)
    assert len(out) == 24000
    # No clicks at chunk seams: the resampled tone is as smooth as the original.
    assert np.max(np.abs(np.diff(out[100:-100]))) < 2 * np.max(np.abs(np.diff(tone)))
