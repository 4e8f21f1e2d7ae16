"""Short-context Whisper decoding: the rules that keep it as accurate as the 30 s path.

Whisper was trained on 30 s windows, and faster-whisper always pads to them,
so the encoder spends most of its time on silence (~150-550 ms on 2 cores
against ~20 ms for 10 s). CTranslate2 accepts shorter mel inputs; below about
8 s of context the decoder starts to loop on short clips ("Side left. Side
left. ..."), so we keep at least ``MIN_CONTEXT_S``, cap the tokens by the
audio's length and hand anything suspicious back to the 30 s path.
"""

from __future__ import annotations

import itertools
import re
import zlib

import numpy as np

from voxgate.audio.pcm import FloatArray

RATE = 16000
# Context the encoder sees at least: shorter contexts loop on short clips.
MIN_CONTEXT_S = 10.0
# Silence appended after the speech: Whisper ends words cleanly when it hears them end.
TRAILING_SILENCE_S = 1.0
# Longer audio goes to the 30 s path, which also splits what does not fit a window.
MAX_SHORT_S = 28.0
# Nobody says more than ~5 words (~7 tokens) a second; a loop blows through this.
CAP_BASE_TOKENS = 12
CAP_TOKENS_PER_S = 8.0
# Whisper's own hallucination test: text that compresses this well is repetition.
MAX_COMPRESSION_RATIO = 2.4
# Whisper's "no speech" verdict, as faster-whisper applies it on the 30 s path.
NO_SPEECH_PROB = 0.6
MIN_AVG_LOGPROB = -1.0
# What Whisper writes for breath, clicks and room noise (its training data's subtitles).
NOISE_PHRASES = frozenset(
    ["you", "thank you", "thanks", "thank you very much", "thanks for watching", "bye", "i'm"]
)
# The same phrase (1-4 words) this many times in a row is a decoder loop.
MAX_REPEATS = 3


def is_no_speech(no_speech_prob: float, avg_logprob: float, text: str) -> bool:
    """faster-whisper's default rule (thresholds 0.6 and -1.0), plus: Whisper's stock
    phrases for noise, when the model itself thinks there is no speech."""
    if no_speech_prob <= NO_SPEECH_PROB:
        return False
    stock = " ".join(re.findall(r"[\w']+", text.lower())) in NOISE_PHRASES
    return avg_logprob < MIN_AVG_LOGPROB or stock


def fits_short_context(audio: FloatArray) -> bool:
    return len(audio) <= MAX_SHORT_S * RATE


def context_audio(audio: FloatArray) -> FloatArray:
    """The utterance, a second of silence after it, and zeros up to the minimum context."""
    length = max(len(audio) + int(TRAILING_SILENCE_S * RATE), int(MIN_CONTEXT_S * RATE))
    padded = np.zeros(length, dtype=np.float32)
    padded[: len(audio)] = audio
    return padded


def token_cap(audio: FloatArray) -> int:
    """The most text tokens a real utterance of this length produces."""
    return CAP_BASE_TOKENS + int(CAP_TOKENS_PER_S * len(audio) / RATE)


def _repeats_in_a_row(words: list[str], size: int) -> int:
    """The longest run of one ``size``-word phrase repeated back to back."""
    longest = 1
    for start in range(len(words) - size):
        phrase, runs, at = words[start : start + size], 1, start + size
        while words[at : at + size] == phrase:
            runs, at = runs + 1, at + size
        longest = max(longest, runs)
    return longest


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def looks_looped(text: str) -> bool:
    """A decoder loop: a 1-4 word phrase three times in a row, one sentence twice in a
    row (a short context likes to say the last one again), or text far more repetitive
    than speech."""
    words = _words(text)
    if any(_repeats_in_a_row(words, size) >= MAX_REPEATS for size in range(1, 5)):
        return True
    sentences = [" ".join(_words(part)) for part in re.split(r"[.!?]+", text)]
    sentences = [s for s in sentences if s]
    if any(a == b for a, b in itertools.pairwise(sentences)):
        return True
    data = text.encode()
    return len(data) > 40 and len(data) / len(zlib.compress(data)) > MAX_COMPRESSION_RATIO
