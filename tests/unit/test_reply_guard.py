"""The reply guard inside a reply run: what is spoken, what is regenerated, what is cut.

The LLM is a fake (tests/fakes.py) that streams scripted replies, one per
request, so each test decides exactly what the first and the second attempt say.
"""

from __future__ import annotations

import asyncio

from tests.fakes import FakeLLM, FakeTTS
from voxgate.llm.base import ChatMessage, LLMRequest
from voxgate.metrics.turn import SessionClock
from voxgate.personas.persona import VoiceSpec
from voxgate.quality.checks import ReplyContext
from voxgate.quality.guard import NEUTRAL_ACKS, ReplyGuard
from voxgate.reply import Piece, ReplyEnd, ReplyRun


def scripted(*replies: str) -> FakeLLM:
    """A fake LLM whose i-th request streams ``replies[i]``, word by word."""
    return FakeLLM(script=replies)


USER = "It was the best of times, it was the worst of times."
CONTEXT = ReplyContext(
    persona_name="Ada",
    instructions="You are Ada. Reply in one or two short sentences of plain speech.",
    knowledge=("You run offline: everything lives on this machine.",),
    user_text=USER,
    earlier_replies=("What a striking opening full of contrasts.",),
)


async def run_reply(
    llm: FakeLLM, guard: ReplyGuard | None, model_voice: str = ""
) -> tuple[ReplyRun, list[str]]:
    run, pieces = await reply_pieces(llm, guard, model_voice)
    return run, [piece.text for piece in pieces]


async def reply_pieces(
    llm: FakeLLM, guard: ReplyGuard | None, model_voice: str = ""
) -> tuple[ReplyRun, list[Piece]]:
    """``model_voice``: the model speaks (the fake says each word in 100 ms)."""
    request = LLMRequest("ada", [ChatMessage("user", USER)], seed=7, temperature=0.6)
    run = ReplyRun(llm=llm, tts=FakeTTS(ms_per_char=1), request=request, voice=VoiceSpec(),
                   clock=SessionClock(), clauses=True, answering=USER, history_len=0,
                   mode="test", guard=guard, model_voice=model_voice)
    pieces = []
    while not isinstance(item := await asyncio.wait_for(run.next_item(), 5), ReplyEnd):
        assert isinstance(item, Piece)
        pieces.append(item)
    await run.close()
    return run, pieces


async def test_a_parroting_reply_is_regenerated_with_a_new_seed_and_never_spoken() -> None:
    llm = scripted("Yes, you run offline on this machine.",
                          "Dickens! A famous opening about a time of extremes.")
    run, spoken = await run_reply(llm, ReplyGuard(CONTEXT))

    assert " ".join(spoken) == "Dickens! A famous opening about a time of extremes."
    assert run.generated == "Dickens! A famous opening about a time of extremes."
    first, second = llm.requests
    assert second.seed != first.seed
    assert second.temperature > first.temperature
    assert [o.split()[0] for o in second.avoid_openings] == ["Yes,"]  # its first token is banned
    assert [(h.rule, h.action) for h in run.guard.hits] == [("parrot", "regenerated")]  # type: ignore[union-attr]


async def test_two_failed_attempts_speak_a_neutral_acknowledgement() -> None:
    llm = scripted("It was the best of times, it was the worst of times.")
    run, spoken = await run_reply(llm, ReplyGuard(CONTEXT))

    assert spoken == [run.generated]
    assert run.generated in NEUTRAL_ACKS
    assert [h.action for h in run.guard.hits] == ["regenerated", "fallback"]  # type: ignore[union-attr]
    assert len(llm.requests) == 2


async def test_a_clause_that_fails_after_the_opening_was_spoken_cuts_the_reply_there() -> None:
    llm = scripted("Dickens wrote that, a famous line. What a striking opening "
                          "full of contrasts. Anyway, do go on.")
    run, spoken = await run_reply(llm, ReplyGuard(CONTEXT))

    assert run.generated == "Dickens wrote that, a famous line."
    assert "contrasts" not in " ".join(spoken) and "Anyway" not in " ".join(spoken)
    assert [(h.rule, h.action) for h in run.guard.hits] == [("repeat", "truncated")]  # type: ignore[union-attr]
    assert llm.closed_early == 1  # generation stopped at the cut


async def test_a_cut_reply_of_a_model_that_speaks_says_only_the_words_released() -> None:
    """The speaking model's speech of the failed clause was already streamed in: it is
    dropped with the clause; the speech of the released words all goes out, with them."""
    released = "Dickens wrote that, a famous line."
    llm = scripted(f"{released} What a striking opening full of contrasts. Anyway, do go on.")
    run, pieces = await reply_pieces(llm, ReplyGuard(CONTEXT), model_voice="verse")

    assert run.generated == released
    assert run.request.speech is not None and run.metrics.tts_calls == 0
    voiced = [p for p in pieces if p.audio is not None and len(p.audio)]
    assert " ".join(p.text for p in voiced) == released  # every piece says what it plays
    # The fake speaks each streamed word in 100 ms (FakeTTS's rate: 16 kHz): six words.
    played_ms = sum(len(p.audio) for p in voiced if p.audio is not None) / 16
    assert abs(played_ms - 100 * len(released.split())) <= 100


async def test_the_opening_is_held_until_it_can_be_judged() -> None:
    """'Yes,' alone says nothing; it is not released before the clause after it."""
    llm = scripted("Yes, you run offline on this machine.", "A famous opening indeed.")
    _, spoken = await run_reply(llm, ReplyGuard(CONTEXT))
    assert spoken == ["A famous opening indeed."]


async def test_without_a_guard_the_reply_goes_through_unchecked() -> None:
    llm = scripted("Yes, you run offline on this machine.")
    run, spoken = await run_reply(llm, None)
    assert run.guard is None
    assert " ".join(spoken) == "Yes, you run offline on this machine."
    assert len(llm.requests) == 1


async def test_an_empty_reply_is_regenerated() -> None:
    llm = scripted("", "Dickens, of course.")
    run, spoken = await run_reply(llm, ReplyGuard(CONTEXT))
    assert " ".join(spoken) == "Dickens, of course."
    assert [h.rule for h in run.guard.hits] == ["empty"]  # type: ignore[union-attr]


async def test_a_session_never_stores_a_failed_reply_and_counts_guard_hits() -> None:
    """A model stuck on one reply: the second turn's copy is caught, the neutral
    acknowledgement is spoken and stored instead, and the hits reach metrics."""
    from tests.fakes import FakeSTT, fake_engines
    from tests.session_harness import Harness
    from voxgate.config import SessionConfig

    stuck = "Yes, you are correct. The war and the peace were significant events."
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM(stuck), FakeTTS(ms_per_char=1))
    harness = Harness(engines, SessionConfig(fillers=False, output_lead_ms=60000))
    await harness.start()
    await harness.say("Tell me about the war.")
    await harness.wait_for("metrics", 1)
    await harness.say("And what about the peace?")
    await harness.wait_for("metrics", 2)

    first, second = harness.events("metrics")
    assert first["reply"] == stuck and first["guard"] == []
    assert second["reply"] in NEUTRAL_ACKS
    assert [h["action"] for h in second["guard"]] == ["regenerated", "fallback"]
    replies = [m.content for m in harness.session.history if m.role == "assistant"]
    assert replies == [stuck, second["reply"]]
    assert 'voxgate_reply_guard_total{action="fallback",rule="repeat"} 1' in (
        engines.registry.render()
    )
    await harness.session.close()


async def test_the_text_shown_with_a_clause_never_runs_into_a_clause_that_failed() -> None:
    llm = scripted("Dickens wrote that, a famous line. What a striking opening "
                          "full of contrasts. Anyway, do go on.")
    request = LLMRequest("ada", [ChatMessage("user", USER)], seed=7)
    run = ReplyRun(llm=llm, tts=FakeTTS(ms_per_char=1), request=request, voice=VoiceSpec(),
                   clock=SessionClock(), clauses=True, answering=USER, history_len=0,
                   mode="test", guard=ReplyGuard(CONTEXT))
    shown = ""
    while not isinstance(item := await asyncio.wait_for(run.next_item(), 5), ReplyEnd):
        assert isinstance(item, Piece)
        shown += item.delta
    await run.close()
    assert shown == "Dickens wrote that, a famous line."
