"""Pitch and spectral envelope measurements on signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from voxgate.audio.analysis import (
    envelope_db,
    envelope_distance_db,
    f0_track,
    pitch,
    voice_profile,
)
from voxgate.audio.pcm import FloatArray


def harmonic(f0: float, rate: int, seconds: float = 0.8, tilt: float = 1.0,
             harmonics: int = 15) -> FloatArray:
    """A voiced-like tone: harmonics of f0 falling off as 1/k**tilt."""
    t = np.arange(int(rate * seconds)) / rate
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k**tilt for k in range(1, harmonics + 1))
    out: FloatArray = (0.3 * tone / np.max(np.abs(tone))).astype(np.float32)
    return out


@pytest.mark.parametrize("rate", [16000, 22050, 24000])
@pytest.mark.parametrize("f0", [75.0, 110.0, 210.0, 320.0])
def test_f0_of_a_harmonic_tone(f0: float, rate: int) -> None:
    result = pitch(harmonic(f0, rate), rate)
    assert result.voiced_fraction > 0.9
    assert result.mean_hz == pytest.approx(f0, rel=0.01)


def test_pcm16_input_is_scaled() -> None:
    tone = harmonic(150.0, 16000)
    as_pcm = (tone * 32767).astype(np.int16)
    assert pitch(as_pcm, 16000).mean_hz == pytest.approx(pitch(tone, 16000).mean_hz, rel=1e-3)


def test_silence_and_noise_are_unvoiced() -> None:
    rng = np.random.default_rng(1)
    assert pitch(np.zeros(16000, np.float32), 16000).voiced_fraction == 0.0
    noise = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    assert pitch(noise, 16000).voiced_fraction < 0.05
    assert np.isnan(pitch(noise[:10], 16000).mean_hz)  # shorter than a frame


def test_pauses_are_not_voiced() -> None:
    rate = 16000
    tone, gap = harmonic(200.0, rate, 0.5), np.zeros(rate // 2, np.float32)
    track = f0_track(np.concatenate([tone, gap, tone]), rate)
    voiced = ~np.isnan(track)
    assert 0.55 < voiced.mean() < 0.75  # ~2/3 of the frames carry the tone
    middle = slice(len(track) // 2 - 10, len(track) // 2 + 10)
    assert not voiced[middle].any()


def test_octave_jumps_do_not_move_the_mean() -> None:
    rate = 16000
    steady = harmonic(120.0, rate, 1.0)
    jump = harmonic(240.0, rate, 0.15)  # a short stretch an octave up
    result = pitch(np.concatenate([steady, jump]), rate)
    assert result.mean_hz == pytest.approx(120.0, rel=0.02)


def test_envelope_ignores_level_but_not_timbre() -> None:
    rate = 22050
    bright, dull = harmonic(150.0, rate, tilt=0.5), harmonic(150.0, rate, tilt=2.0)
    assert envelope_distance_db(envelope_db(bright, rate), envelope_db(bright * 0.2, rate)) < 0.1
    assert envelope_distance_db(envelope_db(bright, rate), envelope_db(dull, rate)) > 5.0


def test_envelope_compares_across_sample_rates() -> None:
    a = voice_profile(harmonic(180.0, 22050), 22050)
    b = voice_profile(harmonic(180.0, 24000), 24000)
    assert a.distance_db(b) < 0.5
    assert a.pitch.mean_hz == pytest.approx(b.pitch.mean_hz, rel=0.005)


def test_envelope_of_too_short_audio_raises() -> None:
    with pytest.raises(ValueError, match="shorter than one analysis frame"):
        envelope_db(np.zeros(10, np.float32), 16000)
