"""LlamaEngine on the real default model: streaming, suffix-only prefill, persona slots,
cancel, and scheduling by priority across requests (preemption, promotion, drops)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from voxgate.llm.base import ChatMessage, LLMError, LLMRequest, LLMUsage
from voxgate.llm.llama_engine import LlamaEngine
from voxgate.scheduler import ComputeGate, Priority, PriorityRef

pytestmark = pytest.mark.models

SYSTEM = {
    "ada": "You are Ada, a friendly voice assistant. Answer in one short sentence.",
    "bob": "You are Bob, a grumpy old pirate. Answer in one short sentence of pirate speak.",
    "cy": "You are Cy, a calm librarian. Answer in one short sentence, quietly.",
}


def _model_path() -> Path:
    override = os.environ.get("VOXGATE_LLM_MODEL")
    if override:
        return Path(override)
    from voxgate.models.assets import llm_model_path

    return Path(llm_model_path())


@pytest.fixture
async def engine() -> AsyncIterator[LlamaEngine]:
    eng = LlamaEngine(ComputeGate(), _model_path())
    yield eng
    await eng.close()


class Chat:
    """One persona's conversation, as the session keeps it."""

    def __init__(self, persona_id: str, conversation_id: str = "") -> None:
        self.persona_id = persona_id
        self.conversation_id = conversation_id
        self.messages = [ChatMessage("system", SYSTEM[persona_id])]

    async def turn(self, engine: LlamaEngine, user: str, max_tokens: int = 8) -> LLMUsage:
        self.messages.append(ChatMessage("user", user))
        usage = LLMUsage()
        request = LLMRequest(
            self.persona_id,
            list(self.messages),
            max_tokens,
            temperature=0.0,
            conversation_id=self.conversation_id,
        )
        async with contextlib.aclosing(engine.stream(request, usage)) as deltas:
            reply = "".join([d async for d in deltas])
        self.messages.append(ChatMessage("assistant", reply))
        return usage


async def test_streams_a_reply_and_fills_usage(engine: LlamaEngine) -> None:
    usage = LLMUsage()
    request = LLMRequest("ada", [ChatMessage("user", "Say hello.")], max_tokens=8, temperature=0.0)
    async with contextlib.aclosing(engine.stream(request, usage)) as deltas:
        parts = [d async for d in deltas]
    assert "".join(parts).strip()
    assert 0 < usage.generated_tokens <= 8
    assert usage.prompt_tokens == usage.evaluated_tokens + usage.reused_tokens
    assert usage.prefill_ms > 0


async def test_second_turn_prefills_only_the_suffix(engine: LlamaEngine) -> None:
    chat = Chat("ada")
    first = await chat.turn(engine, "Hello, who are you?")
    second = await chat.turn(engine, "What is two plus two?")
    assert first.reused_tokens == 0
    # Everything up to the end of the first reply is reused from the KV cache.
    assert second.reused_tokens >= first.prompt_tokens
    assert second.evaluated_tokens < second.prompt_tokens // 3
    assert second.restore_ms == 0.0  # same persona: the live cache, no slot restore


async def test_switching_personas_restores_the_slot(engine: LlamaEngine) -> None:
    ada, bob = Chat("ada"), Chat("bob")
    a1 = await ada.turn(engine, "Hello, who are you?")
    b1 = await bob.turn(engine, "Ahoy, who are you?")
    assert b1.restore_ms == 0.0  # bob had no slot yet
    assert "ada" in engine.slots
    a2 = await ada.turn(engine, "Thanks, say goodbye.")
    assert a2.restore_ms > 0.0
    assert a2.reused_tokens >= a1.prompt_tokens
    assert a2.evaluated_tokens < a2.prompt_tokens // 3
    b2 = await bob.turn(engine, "Where is the treasure?")
    assert b2.restore_ms > 0.0
    assert b2.reused_tokens >= b1.prompt_tokens


async def test_closing_the_stream_stops_the_worker(engine: LlamaEngine) -> None:
    usage = LLMUsage()
    request = LLMRequest(
        "ada", [ChatMessage("user", "Count from one to one hundred.")], max_tokens=200
    )
    async with contextlib.aclosing(engine.stream(request, usage)) as deltas:
        async for _ in deltas:
            if usage.generated_tokens >= 2:
                break
    assert engine.active_requests == 0  # aclose returned only after the worker stopped
    stopped_at = usage.generated_tokens
    await asyncio.sleep(0.2)
    assert usage.generated_tokens == stopped_at < 200
    # The engine is usable right away, and reuses the cancelled request's prompt.
    chat = Chat("ada")
    after = await chat.turn(engine, "Say hi.")
    assert after.generated_tokens > 0


async def test_cancelling_the_consumer_task_stops_the_worker(engine: LlamaEngine) -> None:
    usage = LLMUsage()
    request = LLMRequest("bob", [ChatMessage("user", "Tell me a long story.")], max_tokens=200)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(engine.stream(request, usage)) as deltas:
            async for _ in deltas:
                first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.active_requests == 0
    assert usage.generated_tokens < 200


async def test_lru_eviction_under_a_small_budget() -> None:
    engine = LlamaEngine(ComputeGate(), _model_path())
    try:
        ada, bob, cy = Chat("ada"), Chat("bob"), Chat("cy")
        await ada.turn(engine, "Hello.", max_tokens=4)
        await bob.turn(engine, "Hello.", max_tokens=4)
        ada_slot = engine.slots.get("ada")
        assert ada_slot is not None
        # Room for about one slot: saving bob's must evict ada's, the least recently used.
        engine.slots.budget_bytes = ada_slot.nbytes * 3 // 2
        await cy.turn(engine, "Hello.", max_tokens=4)
        assert engine.slots.slot_keys() == ["bob"]
        assert engine.slots.evictions == 1
        assert engine.slots.used_bytes <= engine.slots.budget_bytes
        # Ada's prefix is gone: her next turn prefills from scratch.
        again = await ada.turn(engine, "Again.", max_tokens=4)
        assert again.restore_ms == 0.0
        assert again.reused_tokens < again.prompt_tokens // 3
    finally:
        await engine.close()


async def test_primed_personas_prefill_only_the_user_turn(engine: LlamaEngine) -> None:
    ada, bob = Chat("ada"), Chat("bob")
    primed_ada = await engine.prime("ada", ada.messages)
    primed_bob = await engine.prime("bob", bob.messages)
    assert primed_ada.evaluated_tokens == primed_ada.prompt_tokens > 0
    assert primed_bob.evaluated_tokens > 0
    first = await ada.turn(engine, "Hello there.")
    assert first.restore_ms > 0.0  # bob was live: ada came back from her slot
    assert first.reused_tokens >= primed_ada.prompt_tokens
    assert first.evaluated_tokens < first.prompt_tokens // 2


async def test_two_conversations_of_one_persona_keep_their_own_state(engine: LlamaEngine) -> None:
    one, two = Chat("ada", "session-1"), Chat("ada", "session-2")
    await one.turn(engine, "Hello, who are you?")
    first_of_two = await two.turn(engine, "Tell me about the sea.")
    # The second conversation starts from the first one's state: the system prompt is shared.
    assert first_of_two.reused_tokens > 0
    again_one = await one.turn(engine, "What is two plus two?")
    again_two = await two.turn(engine, "And the sky?")
    for usage in (again_one, again_two):
        assert usage.restore_ms > 0  # each came back to its own slot...
        assert usage.evaluated_tokens < usage.prompt_tokens // 3  # ...and only its suffix ran
    await engine.forget_conversation("session-2")  # the session ended
    await one.turn(engine, "Thanks.")  # saves session-1's live cache as a slot
    assert "ada/session-1" in engine.slots.slot_keys()
    assert "ada/session-2" not in engine.slots.slot_keys()


# -- scheduling across requests: one unit (prefill chunk / decode step) at a time --------

SPEC = Priority.SPECULATIVE
# A prompt the default model answers at length (greedy: 70+ tokens, no early stop).
STORY = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "Write a long story about a dragon."),
]


def _ask(persona_id: str, user: str) -> list[ChatMessage]:
    return [ChatMessage("system", SYSTEM[persona_id]), ChatMessage("user", user)]


def _request(
    persona_id: str, messages: list[ChatMessage], max_tokens: int, priority: Priority
) -> LLMRequest:
    return LLMRequest(
        persona_id, messages, max_tokens, temperature=0.0, priority=PriorityRef(priority)
    )


async def _collect(
    engine: LlamaEngine,
    request: LLMRequest,
    usage: LLMUsage,
    on_delta: Callable[[], None] = lambda: None,
) -> str:
    async with contextlib.aclosing(engine.stream(request, usage)) as deltas:
        parts = []
        async for delta in deltas:
            parts.append(delta)
            on_delta()
    return "".join(parts)


async def _tokens(usage: LLMUsage, n: int) -> None:
    """Wait until the request behind ``usage`` has generated ``n`` tokens."""
    for _ in range(6000):
        if usage.generated_tokens >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {n} tokens within 60 s")


async def test_a_live_request_preempts_speculation_which_resumes_exactly() -> None:
    # The greedy reply alone, on a fresh engine: the reference for the preempted run.
    alone_usage = LLMUsage()
    alone_engine = LlamaEngine(ComputeGate(), _model_path())
    try:
        alone = await _collect(alone_engine, _request("ada", STORY, 60, SPEC), alone_usage)
    finally:
        await alone_engine.close()
    assert alone_usage.generated_tokens == 60  # long enough to be preempted midway

    engine = LlamaEngine(ComputeGate(), _model_path())
    try:
        spec_usage, live_usage = LLMUsage(), LLMUsage()
        spec = asyncio.create_task(_collect(engine, _request("ada", STORY, 60, SPEC), spec_usage))
        await _tokens(spec_usage, 5)
        at_first_live: list[int] = []

        def first_live() -> None:
            if not at_first_live:
                at_first_live.append(spec_usage.generated_tokens)

        live_request = _request("bob", _ask("bob", "Ahoy, who are you?"), 6, Priority.LLM_LIVE)
        live = await _collect(engine, live_request, live_usage, first_live)
        assert live.strip()
        assert at_first_live[0] < 60 and not spec.done()  # it did not wait for speculation
        assert await spec == alone  # saved, restored and resumed exactly where it stopped
        assert spec_usage.generated_tokens == 60
        assert engine.preemptions == 1
        assert spec_usage.restore_ms > 0  # came back from its parked slot
        assert spec_usage.prompt_tokens == spec_usage.evaluated_tokens + spec_usage.reused_tokens
        # The live conversation's cache was saved when speculation resumed; nothing is
        # left under a job's key.
        assert engine.slots.slot_keys() == ["bob"]
    finally:
        await engine.close()


async def test_a_preempted_request_whose_parked_state_was_evicted_recomputes_it() -> None:
    # No slot budget: the yielded job's saved state is dropped at once, so on resuming it
    # must recompute its prompt and reply so far before the next decode step.
    engine = LlamaEngine(ComputeGate(), _model_path(), slot_budget_bytes=0)
    try:
        usage = LLMUsage()
        spec = asyncio.create_task(_collect(engine, _request("ada", STORY, 30, SPEC), usage))
        await _tokens(usage, 5)
        live = _request("bob", _ask("bob", "Ahoy!"), 4, Priority.LLM_LIVE)
        assert (await _collect(engine, live, LLMUsage())).strip()
        assert (await spec).strip()
        assert usage.generated_tokens == 30
        assert engine.preemptions == 1
        assert usage.restore_ms == 0.0  # nothing was kept to restore
        assert engine.slots.slot_keys() == []
    finally:
        await engine.close()


async def test_a_promoted_speculation_keeps_the_worker(engine: LlamaEngine) -> None:
    spec_usage = LLMUsage()
    spec_request = _request("ada", STORY, 24, SPEC)
    spec = asyncio.create_task(_collect(engine, spec_request, spec_usage))
    await _tokens(spec_usage, 3)
    spec_request.priority.value = Priority.LLM_LIVE  # its turn was committed
    spec_done_at_first_live: list[bool] = []
    live_request = _request("bob", _ask("bob", "Ahoy!"), 4, Priority.LLM_LIVE)

    def first_live() -> None:
        if not spec_done_at_first_live:
            spec_done_at_first_live.append(spec.done())

    live = asyncio.create_task(_collect(engine, live_request, LLMUsage(), first_live))
    assert (await spec).strip()
    await live
    assert spec_usage.generated_tokens == 24  # it kept going to the end...
    assert engine.preemptions == 0  # ...ahead of the live request that came later
    assert spec_done_at_first_live == [True]


async def test_a_cancelled_queued_request_never_touches_the_cache(engine: LlamaEngine) -> None:
    first_usage = LLMUsage()
    first = asyncio.create_task(_collect(engine, _request("ada", STORY, 40, SPEC), first_usage))
    await _tokens(first_usage, 2)
    keys, saved = engine.slots.slot_keys(), engine.last_save_ms
    queued_usage = LLMUsage()
    queued = asyncio.create_task(
        _collect(engine, _request("cy", _ask("cy", "Hello."), 8, SPEC), queued_usage)
    )
    await asyncio.sleep(0.1)  # submitted, waiting behind ``first`` (equal priority, later)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert not first.done()
    assert engine.dropped_before_start == 1
    assert queued_usage.prompt_tokens == 0  # never tokenized
    assert engine.slots.slot_keys() == keys and engine.last_save_ms == saved
    await first
    assert first_usage.generated_tokens == 40
    assert "cy" not in engine.slots.slot_keys()


async def test_close_mid_generation_ends_the_worker_thread() -> None:
    before = set(threading.enumerate())
    engine = LlamaEngine(ComputeGate(), _model_path())
    usage = LLMUsage()
    task = asyncio.create_task(_collect(engine, _request("ada", STORY, 200, SPEC), usage))
    await _tokens(usage, 2)
    await engine.close()
    with pytest.raises(LLMError):
        await task  # the reply was cut off: it must not look finished
    assert usage.generated_tokens < 200
    assert [t for t in threading.enumerate() if t not in before] == []
