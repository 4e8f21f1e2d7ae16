"""Pairing a speaking model's streamed speech with the words that passed the guard."""

from __future__ import annotations

import numpy as np

from voxgate.model_speech import ModelSpeech


def tone(samples: int) -> bytes:
    return (np.full(samples, 1000, dtype="<i2")).tobytes()


def test_speech_is_given_out_once_at_the_output_rate() -> None:
    speech = ModelSpeech(out_rate=16000)
    assert not speech.buffered and len(speech.take()) == 0
    speech.add(tone(2400), 24000)  # 100 ms
    speech.add(tone(2400), 24000)
    assert speech.buffered
    out = speech.take()
    assert abs(len(out) - 3200) <= 2  # 200 ms at 16 kHz
    assert not speech.buffered and len(speech.take()) == 0


def test_a_cut_keeps_only_the_share_of_the_words_released() -> None:
    speech = ModelSpeech(out_rate=24000)
    speech.said_chars, speech.released_chars = 100, 40
    speech.add(tone(1000), 24000)
    speech.take()  # went out with the first words
    speech.add(tone(9000), 24000)  # 10000 received in all: 40 % of it is 4000
    speech.keep_released_share()
    assert len(speech.take()) == 3000


def test_a_clean_end_keeps_everything_and_a_reset_forgets_it() -> None:
    speech = ModelSpeech(out_rate=24000)
    speech.said_chars = speech.released_chars = 50
    speech.add(tone(4800), 24000)
    speech.keep_released_share()
    assert len(speech.take()) == 4800
    speech.add(tone(4800), 24000)
    speech.reset()
    assert not speech.buffered and speech.said_chars == speech.released_chars == 0
