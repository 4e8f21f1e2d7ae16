"""The rules around short-context Whisper decoding (no model needed)."""

from __future__ import annotations

import numpy as np

from voxgate.stt import short_context as sc


def test_context_is_at_least_ten_seconds_and_keeps_a_second_of_silence() -> None:
    short = np.ones(sc.RATE, dtype=np.float32)
    padded = sc.context_audio(short)
    assert len(padded) == sc.MIN_CONTEXT_S * sc.RATE
    assert np.all(padded[: sc.RATE] == 1) and np.all(padded[sc.RATE :] == 0)
    long = np.ones(12 * sc.RATE, dtype=np.float32)
    assert len(sc.context_audio(long)) == 13 * sc.RATE


def test_token_cap_grows_with_the_audio() -> None:
    assert sc.token_cap(np.zeros(0, dtype=np.float32)) == 12
    assert sc.token_cap(np.zeros(2 * sc.RATE, dtype=np.float32)) == 28


def test_loops_are_recognised_and_speech_is_not() -> None:
    assert sc.looks_looped("Side left. Side left. Side left.")
    assert sc.looks_looped("the the the the")
    assert sc.looks_looped("I think that " * 8)
    assert not sc.looks_looped("Ever tried. Ever failed. No matter. Try again. Fail again.")
    assert not sc.looks_looped("I do. I think that America could do it very well.")
    assert not sc.looks_looped("")


def test_no_speech_needs_the_model_to_say_so() -> None:
    assert sc.is_no_speech(0.8, -1.5, "Okay then.")
    assert sc.is_no_speech(0.8, -0.5, "Thank you.")
    assert not sc.is_no_speech(0.8, -0.5, "Okay then.")
    assert not sc.is_no_speech(0.2, -1.5, "Thank you.")


def test_a_repeated_last_sentence_is_a_loop() -> None:
    # Seen on the whole Beckett passage: the short context said its last sentence twice.
    assert sc.looks_looped("Try again. Fail again. Fail better. Fail better.")
    assert not sc.looks_looped("No, no, I said the other one.")


def test_a_phrase_twice_inside_a_sentence_is_speech() -> None:
    text = "Ever tried, ever failed. No matter, try again. Fail again, fail better."
    assert not sc.looks_looped(text)
