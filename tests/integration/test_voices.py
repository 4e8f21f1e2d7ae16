"""The built-in personas' voices, on the real Piper and Kokoro models.

Two personas must be told apart by ear: the same sentence in two voices
differs in mean F0 and/or spectral envelope by much more than the same
voice run twice (Piper samples noise, so its reruns are not identical).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voxgate.audio.analysis import VoiceProfile, voice_profile
from voxgate.audio.pcm import Int16Array
from voxgate.personas.persona import Persona, VoiceSpec, load_personas
from voxgate.scheduler import ComputeGate, Priority
from voxgate.tts.base import TTSError
from voxgate.tts.router import VoiceRouter, build_tts

pytestmark = pytest.mark.models
try:  # Kokoro is an optional extra; without it the room is the three Piper voices.
    import kokoro_onnx  # noqa: F401

    HAVE_KOKORO = True
except ImportError:
    HAVE_KOKORO = False
needs_kokoro = pytest.mark.skipif(not HAVE_KOKORO,
                                  reason="Kokoro is optional: pip install 'voxgate[kokoro]'")

SENTENCE = "Could you tell me the way to the station before the rain starts?"
RATE = 24000  # the one output rate of a mixed Piper + Kokoro room
# Distinct means further apart than the same voice run twice, by this factor,
# and at least by these floors (a just-noticeable change, roughly). Measured over
# four takes each: a voice differs from itself by 0.3-1.0 dB of envelope and
# < 5 Hz of F0; the closest pair (Ada, Max) by 3.8 dB and 14 Hz.
NOISE_FACTOR = 3.0
SAME_VOICE_MAX_DB = 1.2
MIN_F0_GAP_HZ = 20.0
MIN_ENVELOPE_GAP_DB = 1.5


@pytest.fixture(scope="module")
def room() -> list[Persona]:
    personas = load_personas()
    ids = ("ada", "max", "luna", "pip") if HAVE_KOKORO else ("ada", "max", "pip")
    return [personas[p] for p in ids]


@pytest.fixture(scope="module")
def router(room: list[Persona]) -> Iterator[VoiceRouter]:
    tts = build_tts(ComputeGate(), room, sample_rate=RATE)
    yield tts
    asyncio.run(tts.close())


@pytest.fixture(scope="module")
def takes(router: VoiceRouter, room: list[Persona]) -> dict[str, tuple[Int16Array, Int16Array]]:
    """Each persona says SENTENCE twice."""

    async def run() -> dict[str, tuple[Int16Array, Int16Array]]:
        out = {}
        for persona in room:
            first = await router.synthesize(SENTENCE, persona.voice, Priority.TTS_LIVE)
            second = await router.synthesize(SENTENCE, persona.voice, Priority.TTS_LIVE)
            out[persona.id] = (first, second)
        return out

    return asyncio.run(run())


@pytest.fixture(scope="module")
def profiles(takes: dict[str, tuple[Int16Array, Int16Array]]
             ) -> dict[str, tuple[VoiceProfile, VoiceProfile]]:
    return {pid: (voice_profile(a, RATE), voice_profile(b, RATE)) for pid, (a, b) in takes.items()}


def _noise(profiles: dict[str, tuple[VoiceProfile, VoiceProfile]]) -> tuple[float, float]:
    """The largest F0 and envelope differences of a voice with itself."""
    f0 = max(abs(a.pitch.mean_hz - b.pitch.mean_hz) for a, b in profiles.values())
    env = max(a.distance_db(b) for a, b in profiles.values())
    return f0, env


def test_every_voice_speaks_at_the_room_rate(takes: dict[str, tuple[Int16Array, Int16Array]],
                                             router: VoiceRouter) -> None:
    assert router.sample_rate == RATE
    for pid, (audio, _) in takes.items():
        seconds = len(audio) / RATE
        assert 1.5 < seconds < 8.0, (pid, seconds)
        assert np.abs(audio).max() > 3000, f"{pid} is nearly silent"


def test_same_voice_twice_is_near_zero(profiles: dict[str, tuple[VoiceProfile, VoiceProfile]]
                                       ) -> None:
    for pid, (a, b) in profiles.items():
        assert a.pitch.voiced_fraction > 0.3, pid
        assert abs(a.pitch.mean_hz - b.pitch.mean_hz) < 8.0, (pid, a.pitch, b.pitch)
        assert a.distance_db(b) < SAME_VOICE_MAX_DB, (pid, a.distance_db(b))


def test_two_personas_differ_in_pitch_and_envelope(
        profiles: dict[str, tuple[VoiceProfile, VoiceProfile]]) -> None:
    f0_noise, env_noise = _noise(profiles)
    ada, pip = profiles["ada"][0], profiles["pip"][0]
    f0_gap = abs(ada.pitch.mean_hz - pip.pitch.mean_hz)
    assert f0_gap > max(MIN_F0_GAP_HZ, NOISE_FACTOR * f0_noise), (ada.pitch, pip.pitch)
    assert ada.distance_db(pip) > max(MIN_ENVELOPE_GAP_DB, NOISE_FACTOR * env_noise)


def test_every_pair_in_the_room_is_distinct(
        profiles: dict[str, tuple[VoiceProfile, VoiceProfile]]) -> None:
    """Pitch or timbre: two low male voices (Ada, Max) differ by envelope, not F0."""
    f0_noise, env_noise = _noise(profiles)
    f0_margin = max(MIN_F0_GAP_HZ, NOISE_FACTOR * f0_noise)
    env_margin = max(MIN_ENVELOPE_GAP_DB, NOISE_FACTOR * env_noise)
    for x, y in itertools.combinations(sorted(profiles), 2):
        a, b = profiles[x][0], profiles[y][0]
        f0_gap, env_gap = abs(a.pitch.mean_hz - b.pitch.mean_hz), a.distance_db(b)
        assert f0_gap > f0_margin or env_gap > env_margin, (x, y, f0_gap, env_gap)


def test_every_voice_speaks_intelligible_english(
        takes: dict[str, tuple[Int16Array, Int16Array]], room: list[Persona]) -> None:
    """Kokoro's Japanese styles with lang en-us, and Piper beside Kokoro's espeak-ng
    in one process, both come out as English Whisper understands."""
    from faster_whisper import WhisperModel

    from voxgate.audio.pcm import resample
    from voxgate.metrics.wer import wer
    from voxgate.models.assets import whisper_model_dir

    model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8",
                         cpu_threads=1)
    for persona in room:
        audio = resample(takes[persona.id][0].astype(np.float32) / 32768.0, RATE, 16000)
        segments, _ = model.transcribe(audio, language="en", beam_size=1)
        heard = " ".join(s.text for s in segments)
        assert wer(SENTENCE, heard) <= 0.3, (persona.id, heard)


@needs_kokoro
async def test_unknown_style_is_refused_with_the_known_ones(router: VoiceRouter) -> None:
    with pytest.raises(TTSError, match="jm_kumo"):
        router.check_voice(VoiceSpec("kokoro", "af_nobody:0.5,jm_kumo:0.5"))
    with pytest.raises(TTSError, match="unknown Kokoro style"):
        await router.synthesize("Hello.", VoiceSpec("kokoro", "af_nobody"), Priority.TTS_LIVE)


@needs_kokoro
async def test_unspeakable_text_is_silence(router: VoiceRouter) -> None:
    audio = await router.synthesize("...", VoiceSpec("kokoro", "jm_kumo"), Priority.TTS_LIVE)
    assert len(audio) < RATE // 10


@needs_kokoro
def test_kokoro_model_assembles_from_its_parts(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from voxgate.models.assets import KOKORO_SHA256, kokoro_model_path, sha256_file

    monkeypatch.setenv("VOXGATE_CACHE", str(tmp_path))
    path = kokoro_model_path()
    assert path.is_relative_to(tmp_path)
    assert sha256_file(path) == KOKORO_SHA256
    assert kokoro_model_path(assemble=False) == path  # the sidecar vouches now


OFFLINE_CHILD = """
import asyncio
from voxgate.scheduler import ComputeGate, Priority
from voxgate.tts.kokoro_tts import KokoroTTS, kokoro_voice
tts = KokoroTTS(ComputeGate())
audio = asyncio.run(tts.synthesize("Nothing here needs the network.", kokoro_voice("jm_kumo"),
                                   Priority.TTS_LIVE))
print(len(audio))
asyncio.run(tts.close())
"""


@needs_kokoro
def test_kokoro_runs_without_a_network() -> None:
    """espeak-ng (phonemes) and the model come from pip packages: no download at run time."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rn", "true"], capture_output=True
                                         ).returncode != 0:
        pytest.skip("no user namespaces here to cut the network")
    done = subprocess.run([unshare, "-rn", sys.executable, "-c", OFFLINE_CHILD],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > RATE  # more than a second of speech
