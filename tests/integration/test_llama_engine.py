"""LlamaEngine on the real default model: streaming, suffix-only prefill, persona slots, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voxgate.llm.base import ChatMessage, LLMRequest, LLMUsage
from voxgate.llm.llama_engine import LlamaEngine
from voxgate.scheduler import ComputeGate

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
