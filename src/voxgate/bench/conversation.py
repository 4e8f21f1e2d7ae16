"""The benchmark conversation, built from the project's real test speech.

Turns are single utterances of real human speech (tests/data: beckett.wav
split at its pauses, clone-test.wav), plus the sentence of clone-test.wav
with a pause of 300, 400 or 600 ms inserted mid-sentence: pauses that must
NOT end the turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxgate.audio.pcm import FloatArray
from voxgate.audio.wav import read_wav
from voxgate.turns.vad import SileroStreamVad

RATE = 16000
MID_SENTENCE_PAUSE_MS = 400
EXTRA_PAUSES_MS = (300, 600)  # at the end of the cycle, so the first 8 turns stay as they were
LEAD_SILENCE_MS = 300


@dataclass(frozen=True)
class Utterance:
    label: str
    audio: FloatArray
    mid_sentence_pause: bool = False


def default_speech_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "tests" / "data"


def speech_segments(audio: FloatArray, min_gap_ms: int = 400) -> list[tuple[int, int]]:
    """(start, end) samples of speech, split where Silero hears >= min_gap_ms of silence."""
    vad = SileroStreamVad()
    windows = vad.feed(audio)
    segments: list[tuple[int, int]] = []
    start: int | None = None
    last_speech = 0
    for end, prob in windows:
        if prob >= 0.5:
            if start is None:
                start = end - vad.window
            last_speech = end
        elif start is not None and (end - last_speech) * 1000 / RATE >= min_gap_ms:
            segments.append((start, last_speech))
            start = None
    if start is not None:
        segments.append((start, last_speech))
    return segments


def _silence(ms: int) -> FloatArray:
    return np.zeros(RATE * ms // 1000, dtype=np.float32)


def _pad(audio: FloatArray) -> FloatArray:
    return np.concatenate([_silence(LEAD_SILENCE_MS), audio])


def insert_pause(audio: FloatArray, ms: int) -> FloatArray:
    """Insert silence at the quietest 20 ms frame in the middle third of the speech."""
    frame = RATE // 50
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    lo, hi = n // 3, 2 * n // 3
    cut = (lo + int(np.argmin(rms[lo:hi]))) * frame
    return np.concatenate([audio[:cut], _silence(ms), audio[cut:]])


def build_conversation(speech_dir: Path | None = None, turns: int = 6) -> list[Utterance]:
    directory = speech_dir or default_speech_dir()
    beckett_path, clone_path = directory / "beckett.wav", directory / "clone-test.wav"
    for path in (beckett_path, clone_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"benchmark speech {path} is missing: run from a voxgate "
                "checkout or pass --speech-dir with beckett.wav and "
                "clone-test.wav"
            )
    beckett = read_wav(beckett_path, RATE)[0]
    clone = read_wav(clone_path, RATE)[0]
    tail = RATE * 120 // 1000  # keep the word onsets and tails the VAD trims
    sentences = [beckett[max(s - tail, 0) : e + tail] for s, e in speech_segments(beckett)]
    pool = [
        Utterance("clone-test", _pad(clone)),
        Utterance(
            f"clone-test+pause{MID_SENTENCE_PAUSE_MS}",
            _pad(insert_pause(clone, MID_SENTENCE_PAUSE_MS)),
            True,
        ),
    ]
    pool += [Utterance(f"beckett-{i + 1}", _pad(s)) for i, s in enumerate(sentences)]
    pool += [
        Utterance(f"clone-test+pause{ms}", _pad(insert_pause(clone, ms)), True)
        for ms in EXTRA_PAUSES_MS
    ]
    order = [0, 2, 1, *range(3, len(pool))]
    return [pool[order[i % len(order)] % len(pool)] for i in range(turns)]
