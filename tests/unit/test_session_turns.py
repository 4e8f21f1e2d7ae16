"""The session's turn logic on real speech and the real VAD, with scripted engines (fakes).

Audio is fed faster than real time; the session's clock is the audio, so the
endpointing decisions are the same as in real time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes import (
    FakeLLM,
    FakeSTT,
    FakeTTS,
    FakeTurnScorer,
    PrimingFakeLLM,
    fake_engines,
    silence,
    speech,
)
from tests.session_harness import EVER_FAILED, EVER_TRIED, Harness
from voxgate.config import SessionConfig, sequential_config
from voxgate.protocol.frames import FrameType, encode_event
from voxgate.scheduler import Priority


async def test_two_utterances_are_two_turns_with_speculative_hits() -> None:
    stt = FakeSTT(lambda seconds: "Ever tried.")
    h = Harness(fake_engines(stt, tts=FakeTTS(ms_per_char=0)))
    await h.start()
    for _ in range(2):
        await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
        await h.feed(silence(1.0))
    await h.settle()
    metrics = h.events("metrics")
    assert [m["turn"] for m in metrics] == [1, 2]
    assert [m["speculative"] for m in metrics] == ["hit", "hit"]
    assert h.transcripts(final=True) == ["Ever tried.", "Ever tried."]
    assert [m.role for m in h.session.history] == ["user", "assistant"] * 2
    # Endpointing on a complete-looking transcript commits at the minimum delay,
    # measured on the audio clock: well before the 1500 ms maximum.
    assert all(m["durations"]["endpointing"] < 600 for m in metrics)
    await h.conn.close()


async def test_mid_sentence_pause_does_not_end_the_turn() -> None:
    def script(seconds: float) -> str:
        return "Ever tried and" if seconds < 1.6 else "Ever tried and ever failed."

    stt = FakeSTT(script)
    llm = FakeLLM()
    h = Harness(fake_engines(stt, llm, FakeTTS(ms_per_char=0)))
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.4))
    await h.feed(speech(start_s=EVER_FAILED[0], end_s=EVER_FAILED[1]))
    await h.feed(silence(1.0))
    await h.settle()
    starts = h.events("turn_start")
    assert [s["text"] for s in starts] == ["Ever tried and ever failed."]
    # The fragment never reached the LLM: it did not look like a finished thought.
    assert len(llm.requests) == 1
    await h.conn.close()


async def test_incomplete_transcript_waits_for_the_maximum_delay() -> None:
    stt = FakeSTT(lambda seconds: "Ever tried and")
    h = Harness(fake_engines(stt, tts=FakeTTS(ms_per_char=0)))
    await h.start({"endpoint_min_ms": 200, "endpoint_max_ms": 900})
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(1.5))
    await h.settle()
    (metrics,) = h.events("metrics")
    assert 850 <= metrics["durations"]["endpointing"] <= 1000
    await h.conn.close()


async def test_barge_in_stops_the_reply_and_keeps_only_what_was_heard() -> None:
    stt = FakeSTT(lambda seconds: "Ever tried." if seconds > 0.5 else "")
    llm = FakeLLM()
    h = Harness(fake_engines(stt, llm, FakeTTS(ms_per_char=60)))
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.6))
    await h.settle()
    assert h.events("turn_start"), "the first turn was not committed"
    await asyncio.sleep(0.6)  # let the first words of the reply 'play' (wall clock)
    # Speak over the reply (several seconds of audio are 'playing').
    await h.feed(speech(start_s=EVER_FAILED[0], end_s=EVER_FAILED[1]))
    (interrupted,) = h.events("interrupted")
    assert interrupted["turn"] == 1
    assistant = h.session.history[1]
    assert assistant.role == "assistant"
    assert interrupted["heard"] == assistant.content
    assert 0 < len(assistant.content) < len(llm.reply)
    assert llm.reply.startswith(assistant.content)
    await h.conn.close()


async def test_a_cough_does_not_interrupt() -> None:
    stt = FakeSTT(lambda seconds: "Ever tried." if seconds > 0.6 else "")
    h = Harness(fake_engines(stt, tts=FakeTTS(ms_per_char=60)))
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.6))
    await h.settle()
    await h.feed(speech(start_s=0.35, end_s=0.55))  # ~200 ms burst, under the 300 ms minimum
    await h.feed(silence(0.8))
    await h.settle()
    assert not h.events("interrupted")
    assert len(h.events("turn_start")) == 1
    await h.conn.close()


async def test_sequential_mode_waits_then_works_in_order() -> None:
    stt = FakeSTT(lambda seconds: "Ever tried.")
    llm = FakeLLM()
    h = Harness(fake_engines(stt, llm, FakeTTS(ms_per_char=0)), sequential_config())
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(1.0))
    await h.settle()
    (metrics,) = h.events("metrics")
    assert metrics["speculative"] == "none"
    assert metrics["durations"]["endpointing"] >= 500
    assert h.transcripts(final=False) == []  # no interim or early transcripts
    # The final decode started only after the endpointing wait.
    assert metrics["timestamps"]["final_transcript"] >= metrics["timestamps"]["committed"]
    await h.conn.close()


async def test_close_leaves_no_tasks() -> None:
    stt = FakeSTT(lambda seconds: "Ever tried.")
    h = Harness(fake_engines(stt, tts=FakeTTS(ms_per_char=60)))
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.5))
    await h.conn.close()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == []


@pytest.mark.parametrize(
    "hello",
    [
        {"type": "hello", "protocol": 3, "sample_rate": 16000},
        {"type": "hello", "protocol": 1, "sample_rate": 8000},
    ],
)
async def test_bad_hello_is_refused_with_an_error(hello: dict[str, Any]) -> None:
    from voxgate.transport.binary_protocol import CloseSession

    h = Harness(fake_engines(FakeSTT(lambda s: "")))
    with pytest.raises(CloseSession):
        await h.conn.on_message(encode_event(hello))
    errors = [f.text for f in h.frames if f.type is FrameType.ERROR]
    assert errors and errors[0].split(":")[0] in ("bad_protocol", "bad_sample_rate")


async def test_typed_turns_use_the_same_machinery() -> None:
    llm = FakeLLM("Paris, of course.")
    h = Harness(fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=0)))
    await h.start()
    await h.conn.on_message(encode_event({"type": "user_text", "text": " What is  the capital?"}))
    await h.settle()
    (metrics,) = h.events("metrics")
    assert metrics["transcript"] == "What is the capital?"
    assert metrics["reply"] == "Paris, of course."
    assert llm.requests[0].messages[-1].content == "What is the capital?"
    await h.conn.on_message(encode_event({"type": "user_text", "text": ""}))
    assert any(f.text.startswith("bad_event") for f in h.frames if f.type is FrameType.ERROR)
    await h.conn.close()


async def test_a_slow_answer_gets_a_filler_that_never_counts_as_the_answer() -> None:
    from voxgate.protocol.frames import FLAG_FILLER

    engines = fake_engines(
        FakeSTT(lambda s: ""),
        FakeLLM("Paris.", first_token_delay_s=0.3),
        FakeTTS(ms_per_char=20),
        fillers=("Mm-hmm.",),
    )
    await engines.warm()  # pre-synthesizes the filler audio
    h = Harness(engines, SessionConfig(fillers=True, filler_after_ms=50))
    await h.start()
    await h.conn.on_message(encode_event({"type": "user_text", "text": "Capital of France?"}))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if h.events("metrics"):
            break
    (metrics,) = h.events("metrics")
    audio = [f for f in h.frames if f.type is FrameType.TTS_AUDIO]
    assert audio[0].flags & FLAG_FILLER  # the acknowledgment came first...
    assert any(not f.flags & FLAG_FILLER for f in audio)  # ...then the answer
    assert metrics["filler"] == "Mm-hmm."
    assert metrics["durations"]["voice_to_voice"] > metrics["durations"]["first_audio"]
    await h.conn.close()


async def test_a_room_answers_by_name_and_everyone_hears_everything() -> None:
    llm = FakeLLM("Happy to help.")
    h = Harness(fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=0)))
    await h.start({"endpoint_min_ms": 200})
    h.session.room = [h.session.engines.persona(p) for p in ("ada", "max", "pip")]

    async def say(text: str) -> dict[str, Any]:
        before = len(h.events("metrics"))
        await h.conn.on_message(encode_event({"type": "user_text", "text": text}))
        for _ in range(50):
            await h.settle()
            if len(h.events("metrics")) > before:
                break
        return h.events("metrics")[-1]

    assert (await say("Hey Max, how are you?"))["persona"] == "max"
    assert (await say("And what do you think?"))["persona"] == "max"  # keeps the floor
    assert (await say("Pip, your turn."))["persona"] == "pip"
    assert [r.persona_id for r in llm.requests] == ["max", "max", "pip"]
    histories = h.session.histories
    # Ada never spoke but heard every exchange, with the speaker's name.
    assert [m.content for m in histories["ada"]][:2] == [
        "Hey Max, how are you?",
        "Max: Happy to help.",
    ]
    assert histories["max"][1].role == "assistant"
    # Pip's prompt held everything said before Pip was addressed.
    pip_prompt = [m.content for m in llm.requests[2].messages]
    assert "Max: Happy to help." in pip_prompt
    await h.conn.close()


async def test_a_reply_cut_off_before_a_word_leaves_no_empty_turn_in_the_history() -> None:
    stt = FakeSTT(lambda seconds: "Ever tried." if seconds > 0.5 else "")
    h = Harness(fake_engines(stt, FakeLLM(), FakeTTS(ms_per_char=60)))
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.6))
    await h.settle()
    await h.feed(speech(start_s=EVER_FAILED[0], end_s=EVER_FAILED[1]))  # at once
    assert h.events("interrupted")
    assert all(m.content.strip() for m in h.session.history)
    await h.conn.close()


async def test_a_dropped_speculation_is_counted_and_leaves_no_trace_in_the_turn() -> None:
    def script(seconds: float) -> str:  # the pause looks like the end of a thought
        return "Ever tried." if seconds < 1.6 else "Ever tried, ever failed."

    llm = FakeLLM(first_token_delay_s=0.0)
    h = Harness(fake_engines(FakeSTT(script), llm, FakeTTS(ms_per_char=0)))
    await h.start({"endpoint_min_ms": 1000, "endpoint_max_ms": 1500})
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.4))
    await h.settle()
    await h.feed(speech(start_s=EVER_FAILED[0], end_s=EVER_FAILED[1]))
    await h.feed(silence(1.6))
    await h.settle()
    (metrics,) = h.events("metrics")
    assert metrics["transcript"] == "Ever tried, ever failed."
    assert metrics["wasted_llm_calls"] == 1
    assert [r.messages[-1].content for r in llm.requests][-1] == "Ever tried, ever failed."
    stamps = metrics["timestamps"]
    assert stamps["speech_end"] <= stamps["final_transcript"] <= stamps["reply_end"]
    await h.conn.close()


async def test_partials_are_prefilled_and_the_reply_leads_the_commit() -> None:
    def script(seconds: float) -> str:
        return "Ever tried." if seconds < 1.9 else "Ever tried. Ever failed."

    stt = FakeSTT(script)
    llm = PrimingFakeLLM()
    h = Harness(fake_engines(stt, llm, FakeTTS(ms_per_char=0)))  # type: ignore[arg-type]
    # Beckett pauses ~0.6 s between the sentences: a longer minimum keeps them one turn.
    await h.start({"endpoint_min_ms": 800, "interim_interval_ms": 300})
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_FAILED[1]))
    await h.feed(silence(1.0))
    await h.settle()
    # Interim transcripts were prefilled in the background, in this session's KV slot.
    assert llm.primes
    assert all(conv == h.session.id and p is Priority.BACKGROUND for _, _, conv, p in llm.primes)
    assert llm.primes[0][1] == "Ever tried."
    (metrics,) = h.events("metrics")
    assert metrics["transcript"] == "Ever tried. Ever failed."
    assert metrics["speculative"] == "hit"
    assert metrics["stt_source"] in ("partial", "interim")
    # The reply started well before the commit, which waited the full minimum delay.
    assert metrics["durations"]["speculation_lead"] >= 100
    assert metrics["durations"]["endpointing"] >= 800
    await h.conn.close()


async def test_without_a_turn_model_smart_turn_is_refused_with_the_fix() -> None:
    from voxgate.transport.binary_protocol import CloseSession

    h = Harness(fake_engines(FakeSTT(lambda s: "")))
    with pytest.raises(CloseSession):
        await h.start({"smart_turn": True})
    errors = [f.text for f in h.frames if f.type is FrameType.ERROR]
    assert errors and "voxgate models assemble" in errors[0]


@pytest.mark.parametrize(("probability", "low", "high"), [(0.9, 350, 600), (0.1, 750, 1000)])
async def test_a_turn_model_that_hears_no_end_makes_the_turn_wait_the_middle_delay(
    probability: float, low: float, high: float
) -> None:
    engines = fake_engines(FakeSTT(lambda s: "Ever tried."), tts=FakeTTS(ms_per_char=0))
    scorer = FakeTurnScorer(probability)
    engines.turn_scorer = scorer  # type: ignore[assignment]
    h = Harness(engines)
    await h.start({"smart_turn": True, "endpoint_min_ms": 400, "endpoint_mid_ms": 800})
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(1.5))
    await h.settle()
    (metrics,) = h.events("metrics")
    assert scorer.calls  # the pause's audio was scored
    assert low <= metrics["durations"]["endpointing"] <= high
    await h.conn.close()


async def test_a_session_seed_gives_the_same_reply_seeds_and_none_gives_fresh_ones() -> None:
    async def reply_seeds(config: dict[str, Any]) -> list[int]:
        llm = FakeLLM("Fine.")
        h = Harness(fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=0)))
        await h.start(config)
        for done, text in enumerate(("One?", "Two?"), 1):
            await h.conn.on_message(encode_event({"type": "user_text", "text": text}))
            await h.wait_for_done(done)
        await h.conn.close()
        return [r.seed for r in llm.requests]

    seeded = await reply_seeds({"seed": 7})
    assert len(seeded) == 2 and seeded == await reply_seeds({"seed": 7})
    assert await reply_seeds({}) != await reply_seeds({})
