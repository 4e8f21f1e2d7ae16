"""The turn machine, driven by event sequences: every decision is an action we can assert."""

from __future__ import annotations

from voxgate.turns import machine as tm

W = 512  # one Silero window (32 ms at 16 kHz)


class Driver:
    """Feeds VAD windows on a synthetic clock and collects the machine's actions."""

    def __init__(self, **config: object) -> None:
        config.setdefault("endpoint_min_ms", 200)  # the tests count windows against this
        self.m = tm.TurnMachine(tm.MachineConfig(**config))  # type: ignore[arg-type]
        self.t = 0
        self.actions: list[tm.Action] = []

    def windows(self, prob: float, n: int, cpu_idle: bool = True) -> list[tm.Action]:
        out: list[tm.Action] = []
        for _ in range(n):
            self.t += W
            out += self.m.handle(tm.VadWindow(self.t, W, prob, cpu_idle))
        self.actions += out
        return out

    def send(self, event: tm.MachineEvent) -> list[tm.Action]:
        out = self.m.handle(event)
        self.actions += out
        return out

    def of(self, kind: type) -> list[tm.Action]:
        return [a for a in self.actions if isinstance(a, kind)]

    def last_final_decode(self) -> tm.StartDecode:
        return [a for a in self.of(tm.StartDecode) if isinstance(a, tm.StartDecode) and a.final][-1]


def ms(n_windows: int) -> int:
    return n_windows * 32


def test_early_decode_then_speculation_then_commit_promotes_it() -> None:
    d = Driver(interim_stt=False)
    d.windows(0.9, 30)
    d.windows(0.0, 4)  # 128 ms of silence: a pause
    decode = d.last_final_decode()
    assert not d.of(tm.CommitTurn)
    spec = d.send(tm.DecodeLanded(decode.decode_id, "Ever tried."))
    (start,) = [a for a in spec if isinstance(a, tm.StartSpeculation)]
    # Speculation starts when the transcript lands, before the minimum delay has passed.
    assert not d.of(tm.CommitTurn)
    d.windows(0.0, 5)
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn)
    assert commit.reply_id == start.reply_id and commit.text == "Ever tried." and commit.turn == 1
    assert not d.of(tm.DropSpeculation)


def test_speech_resuming_cancels_the_decode_and_drops_the_speculation() -> None:
    d = Driver(interim_stt=False, endpoint_min_ms=1000)
    d.windows(0.9, 20)
    d.windows(0.0, 4)
    first = d.last_final_decode()
    d.send(tm.DecodeLanded(first.decode_id, "Ever tried."))
    (spec,) = d.of(tm.StartSpeculation)
    d.windows(0.9, 20)  # the user goes on
    assert any(isinstance(a, tm.DropSpeculation) and a.reply_id == spec.reply_id
               for a in d.actions)  # fmt: skip
    d.windows(0.0, 4)
    second = d.last_final_decode()
    assert second.decode_id != first.decode_id
    d.send(tm.DecodeLanded(second.decode_id, "Ever tried, ever failed."))
    d.windows(0.0, 40)
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn)
    assert commit.text == "Ever tried, ever failed."
    assert commit.reply_id != spec.reply_id  # a new speculation, promoted


def test_a_late_decode_of_a_resumed_pause_is_ignored() -> None:
    d = Driver(interim_stt=False)
    d.windows(0.9, 20)
    d.windows(0.0, 4)
    stale = d.last_final_decode()
    d.windows(0.9, 10)
    assert any(isinstance(a, tm.CancelDecode) and a.decode_id == stale.decode_id
               for a in d.actions)  # fmt: skip
    assert d.send(tm.DecodeLanded(stale.decode_id, "Ever tried.")) == []


def test_commit_at_max_delay_waits_for_a_slow_decode() -> None:
    d = Driver(interim_stt=False, endpoint_max_ms=640)
    d.windows(0.9, 20)
    d.windows(0.0, 30)  # past the maximum delay, the decode has not landed
    assert not d.of(tm.CommitTurn)
    decode = d.last_final_decode()
    d.send(tm.DecodeLanded(decode.decode_id, "and then"))
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn) and commit.text == "and then"


def test_no_words_is_not_a_turn() -> None:
    d = Driver(interim_stt=False, endpoint_max_ms=640)
    d.windows(0.9, 10)
    d.windows(0.0, 30)
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, ""))
    assert not d.of(tm.CommitTurn)
    assert [a.reason for a in d.of(tm.DiscardUtterance)] == ["no words"]  # type: ignore[attr-defined]


def test_a_failed_decode_is_discarded_with_its_error() -> None:
    d = Driver(interim_stt=False, endpoint_max_ms=640)
    d.windows(0.9, 10)
    d.windows(0.0, 30)
    d.send(tm.DecodeFailed(d.last_final_decode().decode_id, "boom"))
    (discard,) = d.of(tm.DiscardUtterance)
    assert isinstance(discard, tm.DiscardUtterance) and discard.error == "boom"


def _commit_one(d: Driver, text: str = "Hello there.") -> tm.CommitTurn:
    d.windows(0.9, 20)
    d.windows(0.0, 4)
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, text))
    d.windows(0.0, 10)
    commit = d.of(tm.CommitTurn)[-1]
    assert isinstance(commit, tm.CommitTurn)
    return commit


def test_barge_in_interrupts_after_the_minimum_speech() -> None:
    d = Driver(interim_stt=False, interrupt_min_ms=300)
    commit = _commit_one(d)
    assert d.m.reply_playing()  # from the commit on, before any audio
    out = d.windows(0.9, 8)  # 256 ms of speech (two windows to be believed)
    assert not [a for a in out if isinstance(a, tm.Interrupt)]
    # Held at once, interrupted only once the speech is long enough to mean it.
    assert [a for a in out if isinstance(a, tm.HoldOutput)] == [tm.HoldOutput(commit.turn)]
    out = d.windows(0.9, 3)
    assert [a for a in out if isinstance(a, tm.Interrupt)] == [tm.Interrupt(commit.turn)]
    assert not d.m.reply_playing()


def test_a_cough_over_the_reply_is_not_a_turn_even_before_the_first_audio() -> None:
    d = Driver(interim_stt=False, interrupt_min_ms=300)
    _commit_one(d)
    d.windows(0.9, 5)  # 160 ms: a cough, while the reply is still being generated
    d.windows(0.0, 4)
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, "Hm."))
    d.windows(0.0, 50)
    assert len(d.of(tm.CommitTurn)) == 1
    assert not d.of(tm.Interrupt)
    assert [a.reason for a in d.of(tm.DiscardUtterance)] == ["cough"]  # type: ignore[attr-defined]
    # The reply's audio was held while the cough lasted, and released at its pause.
    assert d.of(tm.HoldOutput) == [tm.HoldOutput(1)] and d.of(tm.ResumeOutput) == [
        tm.ResumeOutput(1)
    ]


def test_the_reply_stops_playing_when_the_client_has_played_it() -> None:
    d = Driver(interim_stt=False)
    commit = _commit_one(d)
    d.send(tm.ReplyFinished(commit.turn, plays_until=d.t + 10 * W))
    assert d.m.reply_playing()
    d.windows(0.0, 11)
    assert not d.m.reply_playing()
    # Speech now is a new turn, not a barge-in.
    d.windows(0.9, 20)
    assert not d.of(tm.Interrupt)


def test_two_typed_turns_interrupt_in_order() -> None:
    d = Driver()
    first = d.send(tm.TypedTurn("one", 0))
    second = d.send(tm.TypedTurn("two", 10))
    assert [type(a) for a in first] == [tm.CommitTurn]
    assert second[0] == tm.Interrupt(1)
    assert isinstance(second[1], tm.CommitTurn) and second[1].turn == 2


def test_sequential_mode_decodes_only_after_the_commit() -> None:
    d = Driver(overlap=False, speculate=False, interim_stt=False,
               endpoint_min_ms=500, endpoint_max_ms=500)  # fmt: skip
    d.windows(0.9, 20)
    d.windows(0.0, 10)
    assert not d.of(tm.StartDecode)
    d.windows(0.0, 10)
    decode = d.last_final_decode()
    d.send(tm.DecodeLanded(decode.decode_id, "Ever tried."))
    assert not d.of(tm.StartSpeculation)
    assert len(d.of(tm.CommitTurn)) == 1


def test_interim_decodes_only_when_the_cpu_is_idle_and_one_at_a_time() -> None:
    d = Driver(interim_interval_ms=300)
    d.windows(0.9, 30, cpu_idle=False)
    assert not d.of(tm.StartDecode)
    d.windows(0.9, 30)
    interims = [a for a in d.of(tm.StartDecode) if isinstance(a, tm.StartDecode) and not a.final]
    assert len(interims) == 1  # the first is still in flight
    shown = d.send(tm.DecodeLanded(interims[0].decode_id, "Ever"))
    # Shown, and prefilled for the reply while the user goes on speaking.
    assert shown == [tm.ShowTranscript("Ever", final=False), tm.PrimePartial(1, "Ever")]
    d.windows(0.9, 10)
    assert len([a for a in d.of(tm.StartDecode) if not a.final]) == 2  # type: ignore[attr-defined]


def test_the_utterance_cap_ends_a_turn_that_never_pauses() -> None:
    d = Driver(interim_stt=False, max_utterance_ms=1000)
    d.windows(0.9, 40)
    first = d.of(tm.StartDecode)[0]
    assert isinstance(first, tm.StartDecode) and first.final
    assert ms(first.end // W) <= 1100  # cut at the cap, not at the end of the talking
    d.send(tm.DecodeLanded(first.decode_id, "blah blah"))
    assert len(d.of(tm.CommitTurn)) == 1


def test_a_burst_just_under_the_minimum_is_a_cough_not_an_interruption() -> None:
    """Both rules measure speech to its last window: never an interrupt and a cough at once."""
    d = Driver(interim_stt=False, interrupt_min_ms=300)
    _commit_one(d)
    d.windows(0.9, 9)  # 288 ms of speech, then the pause's trailing silence
    d.windows(0.0, 4)
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, "Hm."))
    d.windows(0.0, 50)
    assert not d.of(tm.Interrupt)
    assert [a.reason for a in d.of(tm.DiscardUtterance)] == ["cough"]  # type: ignore[attr-defined]
    assert d.of(tm.ResumeOutput) == [tm.ResumeOutput(1)]


def test_a_held_reply_is_released_when_the_stream_ends_during_a_short_burst() -> None:
    d = Driver(interim_stt=False, interrupt_min_ms=300)
    _commit_one(d)
    d.windows(0.9, 5)  # 160 ms over the reply, then the client closes its stream
    out = d.send(tm.AudioEnded(d.t))
    assert tm.ResumeOutput(1) in out
    assert d.m.holding() is None


def test_a_typed_turn_does_not_move_the_audio_clock() -> None:
    """A typed turn stamped ahead of the audio must not make the next pause look long."""
    d = Driver(interim_stt=False, endpoint_min_ms=1000)
    d.send(tm.TypedTurn("typed first", 160_000))
    d.send(tm.ReplyFinished(1, plays_until=0))
    d.windows(0.9, 20)
    d.windows(0.0, 4)
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, "Ever tried."))
    assert len(d.of(tm.CommitTurn)) == 1  # only the typed one: the minimum delay still runs
    d.windows(0.0, 40)
    assert len(d.of(tm.CommitTurn)) == 2


def _interims(d: Driver) -> list[tm.StartDecode]:
    return [a for a in d.of(tm.StartDecode) if isinstance(a, tm.StartDecode) and not a.final]


def _finals(d: Driver) -> list[tm.StartDecode]:
    return [a for a in d.of(tm.StartDecode) if isinstance(a, tm.StartDecode) and a.final]


def test_the_first_silence_after_speech_is_decoded_at_once() -> None:
    d = Driver(interim_interval_ms=300)
    d.windows(0.9, 30)
    assert _interims(d) and not _finals(d)  # a periodic interim is still in flight
    d.windows(0.0, 1)
    # The tail: on the final decode's path at once, the interim in flight does not stop it.
    (tail,) = _finals(d)
    assert tail.end == d.t


def test_a_partial_covering_all_the_speech_is_the_transcript_at_the_pause() -> None:
    d = Driver(interim_interval_ms=300)
    d.windows(0.9, 30)
    d.windows(0.0, 1)
    (tail,) = _finals(d)
    d.send(tm.DecodeLanded(tail.decode_id, "Ever tried."))
    paused = d.windows(0.0, 2)
    # No decode at the pause: the tail's text is the transcript, and speculation starts.
    assert len(_finals(d)) == 1
    assert tm.TranscriptReady(1, "partial") in paused
    (spec,) = [a for a in paused if isinstance(a, tm.StartSpeculation)]
    assert spec.text == "Ever tried." and not d.of(tm.CommitTurn)
    d.windows(0.0, 5)
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn)
    assert commit.text == "Ever tried." and commit.reply_id == spec.reply_id


def test_a_tail_decode_in_flight_at_the_pause_becomes_the_pause_decode() -> None:
    d = Driver(interim_interval_ms=300)
    d.windows(0.9, 30)
    stale = _interims(d)[-1]
    d.windows(0.0, 3)  # the pause: the tail decode is still running
    (tail,) = _finals(d)
    assert tm.CancelDecode(stale.decode_id) in d.actions  # it covers less
    assert tm.CancelDecode(tail.decode_id) not in d.actions
    landed = d.send(tm.DecodeLanded(tail.decode_id, "Ever tried."))
    assert tm.TranscriptReady(1, "interim") in landed
    assert any(isinstance(a, tm.StartSpeculation) for a in landed)
    assert d.send(tm.DecodeLanded(stale.decode_id, "Ever")) == []  # too late, ignored
    d.windows(0.0, 5)
    assert len(d.of(tm.CommitTurn)) == 1


def test_speech_after_the_tail_needs_a_decode_of_its_own() -> None:
    d = Driver(interim_interval_ms=300)
    d.windows(0.9, 30)
    d.windows(0.0, 1)
    (tail,) = _finals(d)
    d.windows(0.9, 4)  # only a gap between words: the user goes on
    landed = d.send(tm.DecodeLanded(tail.decode_id, "Ever"))
    assert tm.ShowTranscript("Ever", final=False) in landed  # an interim transcript now
    d.windows(0.0, 3)
    final = _finals(d)[-1]
    assert final.decode_id != tail.decode_id and final.end > tail.end
    d.send(tm.DecodeLanded(final.decode_id, "Ever tried."))
    d.windows(0.0, 5)
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn) and commit.text == "Ever tried."


def _scored_pause() -> tuple[Driver, tm.ScoreTurn]:
    """An utterance paused with a turn model on: the machine asked for the pause's score."""
    d = Driver(interim_stt=False, turn_score=True, endpoint_mid_ms=800)
    d.windows(0.9, 30)
    d.windows(0.0, 3)
    scores = [a for a in d.actions if isinstance(a, tm.ScoreTurn)]
    return d, scores[-1]


def test_with_turn_scores_a_finished_sounding_pause_commits_at_the_minimum() -> None:
    d, score = _scored_pause()
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, "Ever tried."))
    d.windows(0.0, 5)
    assert not d.of(tm.CommitTurn)  # the text is complete, the audio's verdict is not in
    d.send(tm.TurnScored(score.score_id, 0.9))
    d.windows(0.0, 1)
    assert len(d.of(tm.CommitTurn)) == 1


def test_with_turn_scores_an_unfinished_sounding_pause_waits_the_middle_delay() -> None:
    d, score = _scored_pause()
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, "Ever tried."))
    d.send(tm.TurnScored(score.score_id, 0.1))
    d.windows(0.0, ms_to_windows(700))
    assert not d.of(tm.CommitTurn)
    d.windows(0.0, ms_to_windows(150))
    assert len(d.of(tm.CommitTurn)) == 1


def test_a_score_for_a_pause_the_user_spoke_past_is_ignored() -> None:
    d, old = _scored_pause()
    d.windows(0.9, 10)  # resumed
    d.windows(0.0, 3)
    new = [a for a in d.actions if isinstance(a, tm.ScoreTurn)][-1]
    assert new.score_id != old.score_id
    d.send(tm.DecodeLanded(d.last_final_decode().decode_id, "Ever tried again."))
    d.send(tm.TurnScored(old.score_id, 0.99))
    d.windows(0.0, 8)
    assert not d.of(tm.CommitTurn)  # still waiting for this pause's own score


def test_a_transcript_without_its_final_period_is_answered_after_the_middle_delay() -> None:
    d = Driver(interim_stt=False, endpoint_min_ms=400, endpoint_mid_ms=800)
    d.windows(0.9, 30)
    d.windows(0.0, 3)
    landed = d.send(tm.DecodeLanded(d.last_final_decode().decode_id, "Ever failed"))
    (spec,) = [a for a in landed if isinstance(a, tm.StartSpeculation)]  # speculated on
    d.windows(0.0, ms_to_windows(600))
    assert not d.of(tm.CommitTurn)  # not at the minimum
    d.windows(0.0, ms_to_windows(250))
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn) and commit.reply_id == spec.reply_id


def ms_to_windows(ms: int) -> int:
    return ms // 32


# -- the audio_turns route: the model hears the audio, nothing is decoded for the turn --


def test_audio_turns_commit_the_audio_without_a_final_decode() -> None:
    d = Driver(interim_stt=False, audio_turns=True)
    d.windows(0.9, 30)
    d.windows(0.0, 4)  # a pause: speculation on the audio so far, no decode
    (spec,) = d.of(tm.StartSpeculation)
    assert isinstance(spec, tm.StartSpeculation)
    assert spec.audio is not None and spec.text == ""
    d.windows(0.0, 40)
    assert not d.of(tm.StartDecode)
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn)
    assert commit.reply_id == spec.reply_id  # the speculation heard the same audio
    assert commit.audio == spec.audio
    start, end = commit.audio
    preroll = tm.MachineConfig().preroll_ms * 16
    assert start == -preroll  # speech started at sample 0 (the first window)
    assert end >= 30 * W  # all of the speech, up to the pause
    # No words to show (none were decoded): only the turn's end, for the client's record.
    assert d.of(tm.ShowTranscript) == [tm.ShowTranscript("", True)]


def test_audio_turns_show_the_last_interim_words() -> None:
    d = Driver(audio_turns=True, interim_interval_ms=300)
    d.windows(0.9, 15)
    (interim,) = d.of(tm.StartDecode)
    assert isinstance(interim, tm.StartDecode) and not interim.final
    d.send(tm.DecodeLanded(interim.decode_id, "Ever tried"))
    d.windows(0.9, 15)
    d.windows(0.0, 60)
    assert all(isinstance(a, tm.StartDecode) and not a.final for a in d.of(tm.StartDecode))
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn)
    assert commit.text == "Ever tried" and commit.audio is not None
    assert tm.ShowTranscript("Ever tried", True) in d.actions


def test_audio_turns_resumed_speech_drops_the_speculation() -> None:
    d = Driver(interim_stt=False, audio_turns=True, endpoint_max_ms=1500)
    d.windows(0.9, 20)
    d.windows(0.0, 4)
    (first,) = d.of(tm.StartSpeculation)
    d.windows(0.9, 20)  # the user goes on: that audio was not all of it
    assert any(isinstance(a, tm.DropSpeculation) for a in d.actions)
    d.windows(0.0, 60)
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn) and isinstance(first, tm.StartSpeculation)
    assert commit.reply_id != first.reply_id
    assert commit.audio is not None and commit.audio[1] > 40 * W


def test_audio_turns_decode_a_short_wordless_burst_to_tell_a_word_from_a_noise() -> None:
    """Under interrupt_min_ms with no interim words, the audio alone cannot say whether
    it was "Yes." or a cough: that burst alone gets a final decode (no speculation)."""
    for words, is_turn in (("", False), ("Yes.", True)):
        d = Driver(interim_stt=False, audio_turns=True)
        d.windows(0.9, 5)  # 160 ms
        d.windows(0.0, 60)
        assert not d.of(tm.StartSpeculation)
        decode = d.last_final_decode()
        d.send(tm.DecodeLanded(decode.decode_id, words))
        commits = d.of(tm.CommitTurn)
        if is_turn:
            (commit,) = commits
            assert isinstance(commit, tm.CommitTurn)
            assert commit.text == "Yes." and commit.audio is not None  # still heard
        else:
            assert not commits
            (dropped,) = d.of(tm.DiscardUtterance)
            assert isinstance(dropped, tm.DiscardUtterance) and dropped.reason == "no words"


def test_audio_turns_an_interim_landing_in_the_pause_judges_it() -> None:
    """Words that cover the pause and look finished end the turn at the short delay; the
    audio alone would have waited the middle one."""
    d = Driver(audio_turns=True, interim_interval_ms=300, endpoint_min_ms=200,
               endpoint_mid_ms=800)  # fmt: skip
    d.windows(0.9, 20, cpu_idle=False)  # no periodic interim while the user speaks
    d.windows(0.0, 4)  # the first silent window gets a caption decode; then the pause
    decodes = [a for a in d.of(tm.StartDecode) if isinstance(a, tm.StartDecode)]
    assert decodes and not any(a.final for a in decodes)  # nothing the turn waits for
    running = next(a for a in decodes if a.end > 20 * W)
    d.send(tm.DecodeLanded(running.decode_id, "Ever tried."))
    d.windows(0.0, 4)
    (commit,) = d.of(tm.CommitTurn)
    assert isinstance(commit, tm.CommitTurn) and commit.text == "Ever tried."
    assert commit.audio is not None


def test_speech_past_max_utterance_starts_a_new_utterance_not_a_flood() -> None:
    """A forced end at max_utterance_ms while the user talks on: the speech after it is
    one new utterance from there, not the old one ended again window after window."""
    for audio_turns in (False, True):
        d = Driver(interim_stt=False, audio_turns=audio_turns, max_utterance_ms=1000)
        d.windows(0.9, 60)  # 1.9 s of speech
        d.windows(0.0, 60)
        ends = d.of(tm.CommitTurn) if audio_turns else d.of(tm.StartDecode)
        assert len(ends) == 2, (audio_turns, len(ends))
