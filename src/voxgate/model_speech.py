"""A speaking model's own speech (the audio_out route), paired with the reply's words.

The API streams the speech and its transcript side by side, with no alignment between
them. A reply releases words clause by clause once the guard passes them; the speech
buffered by then goes out with them. So speech never goes out ahead of words that
passed, a regenerated attempt's speech is never played, and when the reply is cut
(the guard failed a later clause, the model failed) only the share of the speech that
belongs to the words released is kept: the transcript's share of characters, as the
speech goes at an even pace.
"""

from __future__ import annotations

import numpy as np

from voxgate.audio.pcm import Int16Array, resample


class ModelSpeech:
    def __init__(self, out_rate: int) -> None:
        self.out_rate = out_rate  # the session's output rate: what the client plays
        self._chunks: list[Int16Array] = []  # received, not yet given out
        self._rate = out_rate  # the model's rate, as the engine reports it
        self._received = 0  # samples this attempt, at the model's rate
        self._given = 0  # of those, given out with words
        self.said_chars = 0  # transcript characters streamed this attempt
        self.released_chars = 0  # of those, released with a clause (passed the guard)

    def reset(self) -> None:
        """A new attempt: what the last one said is never played."""
        self._chunks, self._received, self._given = [], 0, 0
        self.said_chars = self.released_chars = 0

    def add(self, pcm: bytes, rate: int) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        self._rate = rate
        self._chunks.append(samples)
        self._received += len(samples)

    @property
    def buffered(self) -> bool:
        return any(len(chunk) for chunk in self._chunks)

    def take(self) -> Int16Array:
        """All the speech buffered, at the output rate (empty when none came yet).
        Resampled per piece, not per chunk, so chunk edges make no clicks."""
        taken, self._chunks = self._chunks, []
        if not taken:
            return np.zeros(0, dtype=np.int16)
        pcm = np.concatenate(taken)
        self._given += len(pcm)
        samples = resample(pcm.astype(np.float32) / 32768.0, self._rate, self.out_rate)
        out: Int16Array = np.clip(samples * 32768.0, -32768, 32767).astype(np.int16)
        return out

    def keep_released_share(self) -> None:
        """Drop the buffered speech beyond the words released (a cut reply's rest)."""
        if self.said_chars <= 0 or self.released_chars >= self.said_chars:
            return
        share = self.released_chars / self.said_chars
        keep = max(round(share * self._received) - self._given, 0)
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        self._chunks = [pcm[:keep]]
