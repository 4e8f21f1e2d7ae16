import pytest

from voxgate.turns.endpointing import (
    EndpointConfig,
    Endpointer,
    EventKind,
    Verdict,
    looks_complete,
    transcript_verdict,
)

WINDOW = 512


@pytest.mark.parametrize(("text", "complete"), [
    ("What time is it?", True),
    ("Ever tried.", True),
    ("I went to the", False),
    ("I think that...", False),
    ("Front,", False),
    ("and then I said and.", False),
    ("", False),
])
def test_looks_complete(text: str, complete: bool) -> None:
    assert looks_complete(text) is complete


def run(probs: list[float], endpointer: Endpointer,
        start: int = 0) -> list[tuple[EventKind, int]]:
    events = []
    for i, p in enumerate(probs, start):
        for e in endpointer.update((i + 1) * WINDOW, WINDOW, p):
            events.append((e.kind, i))
    return events


def test_pause_then_max_delay_ends_the_turn_without_a_verdict() -> None:
    ep = Endpointer(EndpointConfig(min_delay_ms=200, max_delay_ms=640))
    events = run([0.9] * 10 + [0.0] * 30, ep)
    kinds = [k for k, _ in events]
    assert kinds == [EventKind.SPEECH_START, EventKind.PAUSE, EventKind.END_OF_TURN]
    end_window = events[-1][1]
    assert (end_window + 1 - 10) * 32 >= 640


def test_complete_transcript_ends_the_turn_at_the_minimum_delay() -> None:
    ep = Endpointer(EndpointConfig(min_delay_ms=200, max_delay_ms=1500))
    run([0.9] * 10 + [0.0] * 4, ep)
    ep.set_transcript_complete(True)
    events = run([0.0] * 3, ep, start=14)  # the stream goes on: 14 windows = 448 ms
    assert [k for k, _ in events] == [EventKind.END_OF_TURN]


def test_speech_resuming_in_the_pause_is_a_resume_not_a_new_turn() -> None:
    ep = Endpointer(EndpointConfig(min_delay_ms=200, max_delay_ms=1500))
    kinds = [k for k, _ in run([0.9] * 10 + [0.0] * 8 + [0.9] * 5, ep)]
    assert kinds == [EventKind.SPEECH_START, EventKind.PAUSE, EventKind.RESUME]


def test_a_single_window_click_is_not_speech() -> None:
    ep = Endpointer(EndpointConfig())
    assert run([0.0, 0.95, 0.0, 0.0, 0.9, 0.1], ep) == []


def _paused(config: EndpointConfig) -> Endpointer:
    ep = Endpointer(config)
    run([0.9] * 10 + [0.0] * 4, ep)
    return ep


def test_the_delay_follows_what_is_known_about_the_pause() -> None:
    config = EndpointConfig(min_delay_ms=400, max_delay_ms=1500)
    ep = _paused(config)
    assert ep.delay_ms() == 1500  # nothing known yet
    ep.set_transcript_complete(True)
    assert ep.delay_ms() == 400
    ep.set_transcript_complete(False)
    assert ep.delay_ms() == 1500


def test_with_a_turn_score_a_complete_text_also_needs_the_audio_to_sound_finished() -> None:
    config = EndpointConfig(min_delay_ms=400, max_delay_ms=1500, use_score=True, mid_delay_ms=800)
    ep = _paused(config)
    ep.set_transcript_complete(True)
    assert ep.delay_ms() == 1500  # waiting for the score
    ep.set_turn_score(0.2)
    assert ep.delay_ms() == 800
    ep.set_turn_score(0.7)
    assert ep.delay_ms() == 400
    ep.set_transcript_complete(False)
    assert ep.delay_ms() == 1500  # the audio alone never shortens an unfinished thought
    run([0.9] * 3, ep, start=14)  # the user resumed: the score belonged to the last pause
    run([0.0] * 4, ep, start=17)
    ep.set_transcript_complete(True)
    assert ep.delay_ms() == 1500


def test_a_pause_with_no_words_is_judged_on_the_audio_alone() -> None:
    """The model hears the audio, no words cover the pause: the end-of-turn score
    decides when there is one, else the middle wait."""
    plain = _paused(EndpointConfig(min_delay_ms=400, max_delay_ms=1500, mid_delay_ms=800))
    plain.set_transcript_verdict(Verdict.UNHEARD)
    assert plain.delay_ms() == 800
    scored = _paused(EndpointConfig(min_delay_ms=400, max_delay_ms=1500, use_score=True))
    scored.set_transcript_verdict(Verdict.UNHEARD)
    assert scored.delay_ms() == 1500  # waiting for the score
    scored.set_turn_score(0.9)
    assert scored.delay_ms() == 400
    scored.set_turn_score(0.1)
    assert scored.delay_ms() == 1500


@pytest.mark.parametrize(("text", "verdict"), [
    ("Ever tried.", Verdict.COMPLETE),
    ("Ever failed", Verdict.MAYBE),  # Whisper dropped the period
    ("I went to the", Verdict.INCOMPLETE),
    ("Front,", Verdict.INCOMPLETE),
    ("", Verdict.INCOMPLETE),
])
def test_transcript_verdict(text: str, verdict: Verdict) -> None:
    assert transcript_verdict(text) is verdict


def test_a_transcript_that_may_be_finished_waits_the_middle_delay() -> None:
    ep = _paused(EndpointConfig(min_delay_ms=400, max_delay_ms=1500, mid_delay_ms=800))
    ep.set_transcript_verdict(Verdict.MAYBE)
    assert ep.delay_ms() == 800
    with_score = _paused(
        EndpointConfig(min_delay_ms=400, max_delay_ms=1500, mid_delay_ms=800, use_score=True)
    )
    with_score.set_transcript_verdict(Verdict.MAYBE)
    with_score.set_turn_score(0.9)
    assert with_score.delay_ms() == 800
    with_score.set_turn_score(0.1)
    assert with_score.delay_ms() == 1500
