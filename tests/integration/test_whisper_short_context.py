"""Short-context Whisper decoding against the 30 s path, on the project's real speech."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voxgate.audio.pcm import FloatArray
from voxgate.audio.wav import read_wav
from voxgate.bench.conversation import speech_segments
from voxgate.metrics.wer import wer
from voxgate.scheduler import ComputeGate, Priority
from voxgate.stt import short_context as sc
from voxgate.stt.whisper import WhisperSTT

pytestmark = pytest.mark.models

DATA = Path(__file__).resolve().parents[1] / "data"
RATE = 16000
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
CLONE = "I do. I think that America could do it very well."


@pytest.fixture(scope="module")
def stt() -> Iterator[WhisperSTT]:
    engine = WhisperSTT(ComputeGate())
    yield engine
    asyncio.run(engine.close())


def _clips() -> list[FloatArray]:
    beckett = read_wav(DATA / "beckett.wav", RATE)[0]
    clone = read_wav(DATA / "clone-test.wav", RATE)[0]
    tail = RATE // 8
    sentences = [beckett[max(s - tail, 0) : e + tail] for s, e in speech_segments(beckett)]
    return [beckett, clone, *sentences]


def test_short_context_words_match_the_30s_path(stt: WhisperSTT) -> None:
    clips = _clips()
    short = [stt._decode_short(c) for c in clips]
    full = [stt._decode_30s(c) for c in clips]
    assert all(s is not None for s in short), short  # no fallback on clean speech
    reference, hypothesis = " ".join(full), " ".join(s or "" for s in short)
    assert wer(reference, hypothesis) <= 0.05, (full, short)
    # Against what was really said, no worse than the 30 s path by more than 2 points.
    assert wer(BECKETT, short[0] or "") <= wer(BECKETT, full[0]) + 0.02
    assert wer(CLONE, short[1] or "") <= wer(CLONE, full[1]) + 0.02


def test_a_short_clip_does_not_loop(stt: WhisperSTT) -> None:
    for clip in _clips()[2:]:  # single words and short phrases: where short contexts loop
        text = stt._decode_short(clip[: int(1.4 * RATE)])
        assert text is not None and not sc.looks_looped(text), text
        assert len(text.split()) <= 6, text


def test_a_decode_that_hits_its_cap_falls_back_to_the_30s_path(
    stt: WhisperSTT, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = read_wav(DATA / "clone-test.wav", RATE)[0]
    monkeypatch.setattr(sc, "CAP_BASE_TOKENS", 2)
    monkeypatch.setattr(sc, "CAP_TOKENS_PER_S", 0.0)
    before = stt.counters.fallbacks
    text = asyncio.run(stt.transcribe(clone, Priority.STT_FINAL))
    assert stt.counters.fallbacks == before + 1
    assert wer(CLONE, text) <= 0.2, text


def test_silence_and_noise_give_no_words(stt: WhisperSTT) -> None:
    rng = np.random.default_rng(1)
    quiet = (rng.standard_normal(RATE) * 0.001).astype(np.float32)
    assert asyncio.run(stt.transcribe(quiet, Priority.STT_FINAL)) == ""
    # Lead silence and the first half second of the recording, no word in it yet: Whisper
    # says "Thank you." with a high no-speech probability, and that is dropped.
    onset = read_wav(DATA / "clone-test.wav", RATE)[0][: RATE // 2]
    padded = np.concatenate([np.zeros(RATE * 3 // 10, dtype=np.float32), onset])
    assert stt._decode_short(padded) == ""
