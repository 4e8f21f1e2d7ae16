"""Regression tests for the races of the first turn engine, with slow fakes that yield.

Each test names the defect it pins down (issue "Turn engine v2", section "What
was found"). The engines are fakes (named so) that take time and yield, so the
interleavings that broke the old engine happen here on purpose.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.fakes import (
    FakeLLM,
    FakeSTT,
    FakeTTS,
    RecordingTrace,
    fake_engines,
    silence,
    speech,
)
from tests.session_harness import EVER_FAILED, EVER_TRIED, Harness
from voxgate.aio import cancel_and_wait
from voxgate.config import SessionConfig
from voxgate.protocol.frames import FLAG_FILLER, FrameType, encode_event


def no_pending_tasks() -> list[asyncio.Task[object]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


async def test_two_quick_typed_turns_both_end_with_metrics_and_done() -> None:
    """Found 1: a turn cancelled before its tasks ran hung for ever."""
    llm = FakeLLM("A long answer that takes a while.", token_delay_s=0.01)
    h = Harness(fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=1)))
    await h.start()
    await h.say("First question?")
    await h.say("Second question?")
    await h.wait_for("metrics", 2)
    await h.wait_for_done(2)
    assert h.sequence() == [
        "turn_start 1", "interrupted 1", "metrics 1", "DONE",
        "turn_start 2", "metrics 2", "DONE",
    ]  # fmt: skip
    users = [m.content for m in h.session.history if m.role == "user"]
    assert users == ["First question?", "Second question?"]
    await h.conn.close()
    assert no_pending_tasks() == []


async def test_turns_are_served_in_order_under_back_pressure() -> None:
    """Found 2: with a slow socket two replies interleaved and turn 2's prompt lacked turn 1."""
    llm = FakeLLM("Short answer.")
    h = Harness(
        fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=1)), send_delay_s=0.002
    )
    await h.start()
    for i in range(3):
        await h.say(f"Question {i}?")
        await h.wait_for("metrics", i + 1)
    await h.wait_for_done(3)
    assert h.sequence() == [
        f"{kind} {n}" if kind != "DONE" else "DONE"
        for n in (1, 2, 3)
        for kind in ("turn_start", "metrics", "DONE")
    ]
    # Each prompt holds every exchange before it.
    last_prompt = [m.content for m in llm.requests[2].messages]
    assert "Question 0?" in last_prompt and "Question 1?" in last_prompt
    assert last_prompt.count("Short answer.") == 2
    await h.conn.close()


async def test_cancel_and_wait_does_not_swallow_the_callers_cancellation() -> None:
    """Found 3: suppress(CancelledError) around `await task` ate the caller's own cancel."""
    child_done = asyncio.Event()
    after_wait = []

    async def stubborn_child() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # cleanup that takes a while
            child_done.set()
            raise

    async def parent() -> None:
        child = asyncio.create_task(stubborn_child())
        await asyncio.sleep(0)
        await cancel_and_wait(child)
        after_wait.append(True)  # must not run: the parent itself was cancelled

    task = asyncio.create_task(parent())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()
    assert child_done.is_set()  # the child finished its cleanup before the parent ended
    assert after_wait == []


async def test_nothing_from_a_dropped_speculation_reaches_the_client() -> None:
    """Found 4: a dropped run's text reached the socket ("Yes, youYes, you are correct")."""

    def script(seconds: float) -> str:  # the pause looks like the end of a thought
        return "Ever tried." if seconds < 1.6 else "Ever tried, ever failed."

    def reply_for(text: str) -> str:
        return "Dropped words here." if text == "Ever tried." else "Live answer here."

    llm = FakeLLM(reply_for=reply_for, token_delay_s=0.005)
    h = Harness(fake_engines(FakeSTT(script), llm, FakeTTS(ms_per_char=5)))
    await h.start({"endpoint_min_ms": 1000, "endpoint_max_ms": 1500})
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.4))
    await asyncio.sleep(0.1)  # the speculative run generates and synthesizes meanwhile
    await h.feed(speech(start_s=EVER_FAILED[0], end_s=EVER_FAILED[1]))
    await h.feed(silence(1.6))
    await h.wait_for("metrics")
    assert [r.messages[-1].content for r in llm.requests] == [
        "Ever tried.",
        "Ever tried, ever failed.",
    ]
    text = "".join(f.text for f in h.frames if f.type is FrameType.LLM_CHUNK)
    assert "Dropped" not in text and text == "Live answer here."
    (metrics,) = h.events("metrics")
    assert metrics["wasted_llm_calls"] == 1
    # The turn's metrics hold only the live run: one LLM span, stamped after the commit.
    assert [s["stage"] for s in _spans(h)].count("llm") == 1
    # ...the run started at the second pause (the dropped one started at the first, ~1.3 s).
    assert metrics["timestamps"]["llm_start"] > 1550
    await h.conn.close()


def _spans(h: Harness) -> list[dict[str, Any]]:
    trace = h.session.engines.trace
    assert isinstance(trace, RecordingTrace)
    return [span for record in trace.records for span in record["spans"]]


async def test_a_filler_never_lands_when_the_answer_is_being_synthesized() -> None:
    """Found 8: a filler was sent just before the answer audio and delayed it."""
    engines = fake_engines(
        FakeSTT(lambda s: ""),
        FakeLLM("Paris."),  # the first clause is ready at once...
        FakeTTS(ms_per_char=20, delay_s=0.2),  # ...but takes 200 ms to synthesize
        fillers=("Mm-hmm.",),
    )
    await engines.warm()
    h = Harness(engines, SessionConfig(fillers=True, filler_after_ms=50))
    await h.start()
    await h.say("Capital of France?")
    await h.wait_for("metrics")
    (metrics,) = h.events("metrics")
    assert metrics["filler"] is None
    assert not [f for f in h.frames if f.type is FrameType.TTS_AUDIO and f.flags & FLAG_FILLER]
    await h.conn.close()


async def test_audio_is_paced_and_stops_at_the_source_on_barge_in() -> None:
    """Found 7: a 6 s reply reached the client within ~1 s; a client that ignores
    `interrupted` kept talking over the user."""
    stt = FakeSTT(lambda seconds: "Ever tried." if seconds > 0.5 else "")
    llm = FakeLLM("One two three four five six seven eight nine ten eleven twelve.")
    h = Harness(fake_engines(stt, llm, FakeTTS(ms_per_char=80)))  # ~5 s of reply audio
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.3))
    await h.wait_for("turn_start")
    await h.wait_for_audio_ms(200)
    await asyncio.sleep(0.5)
    sent_ms = h.audio_ms()
    # Paced: about 0.5 s of playback plus the lead (300 ms) and a frame, not the 5 s reply.
    assert sent_ms < 1500, sent_ms
    await h.feed(speech(start_s=EVER_FAILED[0], end_s=EVER_FAILED[1]))  # talk over it
    (interrupted,) = h.events("interrupted")
    frames_at_interrupt = len(h.frames)
    await asyncio.sleep(0.4)
    after = [f for f in h.frames[frames_at_interrupt:] if f.type is FrameType.TTS_AUDIO]
    assert after == []  # the server stopped sending: nothing for the client to ignore
    assert interrupted["playback"] == "estimate"  # this client never reported playback
    await h.conn.close()


async def test_barge_in_truncates_at_the_clients_reported_playback_position() -> None:
    """Found 6: what the user heard was guessed from wall time; now the client says."""
    stt = FakeSTT(lambda seconds: "Ever tried." if seconds > 0.5 else "")
    llm = FakeLLM("One, two, three, four, five, six, seven, eight, nine, ten.")
    h = Harness(fake_engines(stt, llm, FakeTTS(ms_per_char=100)))
    await h.start()
    await h.feed(speech(start_s=EVER_TRIED[0], end_s=EVER_TRIED[1]))
    await h.feed(silence(0.3))
    await h.wait_for("turn_start")
    await h.wait_for_audio_ms(1900)
    # Clauses: "One," (400 ms of audio), then "two, three, four, five," (2300 ms):
    # the client says it played 1.7 s, i.e. 1.3 s into the second clause: 2 of its 4 words.
    await h.conn.on_message(encode_event({"type": "playback", "turn": 1, "played_ms": 1700}))
    await h.feed(speech(start_s=EVER_FAILED[0], end_s=EVER_FAILED[1]))
    (interrupted,) = h.events("interrupted")
    assert interrupted["playback"] == "client"
    assert interrupted["heard"] == "One, two, three,"
    await h.wait_for("metrics")
    assert h.events("metrics")[0]["playback"] == "client"
    await h.conn.close()


async def test_close_while_the_llm_is_mid_generation_leaves_no_task_and_no_thread() -> None:
    llm = FakeLLM("word " * 200, token_delay_s=0.01)
    h = Harness(fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=1)))
    await h.start()
    threads_before = threading.active_count()
    await h.say("Tell me a long story.")
    await asyncio.sleep(0.2)
    assert llm.requests and not h.events("metrics")  # mid-generation
    await h.conn.close()
    assert no_pending_tasks() == []
    assert llm.closed_early == 1
    assert threading.active_count() <= threads_before


async def test_a_turn_that_fails_before_its_reply_still_ends_and_the_next_is_served() -> None:
    h = Harness(fake_engines(FakeSTT(lambda s: ""), FakeLLM("Fine."), FakeTTS(ms_per_char=1)))
    await h.start()
    assemble = h.session.assembler.assemble
    calls = []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise ValueError("prompt does not fit")  # isolates the failure path (a fake)
        return assemble(*args, **kwargs)

    h.session.assembler.assemble = fails_once  # type: ignore[method-assign]
    await h.say("First?")
    await h.wait_for_done(1)
    await h.say("Second?")
    await h.wait_for_done(2)
    assert h.sequence() == [
        "turn_start 1",
        "metrics 1",
        "DONE",
        "turn_start 2",
        "metrics 2",
        "DONE",
    ]
    assert h.events("metrics")[1]["reply"] == "Fine."
    await h.conn.close()


async def test_close_twice_at_once_and_cancelled_close_leave_nothing_behind() -> None:
    llm = FakeLLM("word " * 200, token_delay_s=0.01)
    h = Harness(fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=1)))
    await h.start()
    await h.say("Tell me a long story.")
    await asyncio.sleep(0.1)
    first = asyncio.create_task(h.conn.close())
    await asyncio.sleep(0)
    first.cancel()  # a cancelled close still finishes the teardown (shielded)
    await asyncio.gather(first, h.conn.close(), return_exceptions=True)
    await asyncio.sleep(0.05)
    assert no_pending_tasks() == []


async def test_a_socket_slower_than_real_time_does_not_pile_up_reply_audio() -> None:
    """Pacing counts what the socket took, not only what was queued for it."""
    stt = FakeSTT(lambda s: "")
    llm = FakeLLM("One two three four five six seven eight nine ten eleven twelve.")
    # 150 ms per frame written, for 100 ms audio frames: slower than real time.
    h = Harness(fake_engines(stt, llm, FakeTTS(ms_per_char=80)), send_delay_s=0.15)
    await h.start()
    await h.say("Count for me.")
    backlog = []
    for _ in range(100):
        await asyncio.sleep(0.01)
        backlog.append(h.conn.outbox.backlog())
    assert max(backlog) <= 3  # the pacer's bound: 2 frames waiting, plus the one it adds
    await h.conn.close()


async def test_a_turn_cut_off_by_close_is_stored_as_interrupted_and_not_timed() -> None:
    """Issue 11, item 7: the cut-off turn was stored as a normal completed turn."""
    llm = FakeLLM("One, two, three, four, five, six, seven, eight, nine, ten.", token_delay_s=0.05)
    h = Harness(fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=20)))
    await h.start()
    await h.say("Count to ten.")
    for _ in range(500):  # until the reply has begun to sound
        if any(f.type is FrameType.TTS_AUDIO for f in h.frames):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    await h.conn.close()
    trace = h.session.engines.trace
    assert isinstance(trace, RecordingTrace)
    turns = [r for r in trace.records if r.get("type") == "turn"]
    assert len(turns) == 1 and turns[0]["interrupted"] is True
    history = h.session.history
    assert [m.role for m in history] == ["user", "assistant"]
    said = history[-1].content
    assert said and len(said) < len(llm.reply)  # only what was played, not the whole reply
    assert llm.reply.startswith(said.rstrip(".,"))
    rendered = h.session.engines.registry.render()
    assert "voxgate_turns_total" not in rendered  # left out of the latency figures
    assert "voxgate_voice_to_voice_ms" not in rendered
