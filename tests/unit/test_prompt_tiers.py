"""Tiered prompt assembly: stable prefix across turns, tier order, counted compaction, cache."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voxgate.llm.base import ChatMessage
from voxgate.llm.chatml import render_chatml, tokenize_chatml
from voxgate.personas.persona import Persona
from voxgate.prompt import CompositionCache, PromptAssembler, Tier
from voxgate.prompt.assembler import sha256_text
from voxgate.prompt.cache import CacheKey

ADA = Persona(
    id="ada",
    name="Ada",
    instructions="You are Ada, a friendly voice assistant. Answer in one short sentence.",
    facts=("You run offline.", "The user's name is Sam."),
)


def _conversation(assembler: PromptAssembler, turns: list[tuple[str, str]]) -> list[Any]:
    """Assemble each turn as a session would: history grows by the user line and the reply."""
    history: list[ChatMessage] = []
    prompts = []
    for user, reply in turns:
        prompts.append(assembler.assemble(ADA, history, user, memory_summary="Sam likes tea."))
        history += [ChatMessage("user", user), ChatMessage("assistant", reply)]
    return prompts


TURNS = [
    ("Hello there.", "Hi Sam, how can I help?"),
    ("What's the weather like?", "I can't see outside, I run offline."),
    ("Okay, tell me a joke.", "Why did the tea break up? It felt steeped."),
]


def test_invariant_and_system_region_identical_across_turns() -> None:
    prompts = _conversation(PromptAssembler("c1"), TURNS)
    assert len({p.invariant_sha256 for p in prompts}) == 1
    assert len({p.system_sha256 for p in prompts}) == 1
    assert prompts[0].invariant_sha256 == sha256_text(ADA.instructions)
    rendered = [render_chatml(p.messages, add_generation_prompt=False) for p in prompts]
    # Each turn's prompt (without the generation prompt) is a byte prefix of the next one.
    for earlier, later in itertools.pairwise(rendered):
        assert later.startswith(earlier)


def test_tiers_are_ordered_stable_first() -> None:
    prompt = PromptAssembler("c1").assemble(
        ADA,
        [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")],
        "and now?",
        memory_summary="Sam likes tea.",
        speaker_names=["Zed", "Bob", "Ada"],
    )
    system = prompt.messages[0]
    assert system.role == "system"
    assert system.content.startswith(prompt.invariant_text)
    text = system.content
    # INVARIANT, then SEMI_STABLE in fixed rank order: facts, speakers, memory.
    positions = [text.index(s) for s in ("You are Ada", "You run offline.", "Bob, Zed", "tea")]
    assert positions == sorted(positions)
    assert "Ada," not in text.split("Also in this conversation:")[1]  # not listed as another
    assert [m.role for m in prompt.messages] == ["system", "user", "assistant", "user"]
    assert prompt.messages[-1].content == "and now?"
    assert prompt.tier_chars[Tier.INVARIANT] == len(prompt.invariant_text)
    assert prompt.tier_chars[Tier.VOLATILE] == len("hi") + len("hello") + len("and now?")


def test_speaker_order_does_not_change_the_bytes() -> None:
    a = PromptAssembler("c1").assemble(ADA, [], "hi", speaker_names=["Bob", "Zed"])
    b = PromptAssembler("c1").assemble(ADA, [], "hi", speaker_names=["Zed", "Bob"])
    assert a.system_sha256 == b.system_sha256


def test_compaction_drops_whole_exchanges_and_is_counted() -> None:
    assembler = PromptAssembler("c1", history_budget=100, low_water=0.5)
    history: list[ChatMessage] = []
    compacted_at = []
    dropped_seen = []
    for turn in range(12):
        user = f"question {turn:02d} " + "x" * 10  # 22 chars
        prompt = assembler.assemble(ADA, history, user)
        volatile = prompt.messages[1:]
        assert sum(len(m.content) for m in volatile) <= 100
        # Whole exchanges only: the kept history starts with a user message.
        assert volatile[0].role == "user"
        if prompt.compacted:
            compacted_at.append(turn)
        dropped_seen.append(prompt.history_dropped)
        history += [ChatMessage("user", user), ChatMessage("assistant", "ok " + "y" * 7)]
    assert compacted_at, "the budget was exceeded but nothing was compacted"
    assert assembler.compactions == len(compacted_at)
    # Compaction is rare: it drops down to the low-water mark, not one exchange per turn.
    assert len(compacted_at) < 12 // 2
    assert dropped_seen == sorted(dropped_seen)
    assert all(d % 2 == 0 for d in dropped_seen)  # exchanges are (user, assistant) pairs


def test_history_between_compactions_only_appends() -> None:
    assembler = PromptAssembler("c1", history_budget=120)
    history: list[ChatMessage] = []
    previous: list[ChatMessage] | None = None
    for turn in range(10):
        prompt = assembler.assemble(ADA, history, f"turn {turn} " + "z" * 12)
        body = prompt.messages[:-1]
        if previous is not None and not prompt.compacted:
            assert body[: len(previous)] == previous
        previous = body
        history += [
            ChatMessage("user", prompt.messages[-1].content),
            ChatMessage("assistant", "fine"),
        ]


def test_composition_cache_hits_and_invalidates() -> None:
    assembler = PromptAssembler("c1")
    history = [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")]
    first = assembler.assemble(ADA, history, "weather?")
    again = assembler.assemble(ADA, history, "weather?")
    assert again is first
    assert (assembler.cache.hits, assembler.cache.misses) == (1, 1)
    changed = assembler.assemble(ADA, history, "weather?", memory_summary="new memory")
    assert changed is not first
    assert assembler.cache.invalidations == 1
    assert "new memory" in changed.system_text


def test_composition_cache_ttl() -> None:
    now = [0.0]
    cache: CompositionCache[str] = CompositionCache(ttl_s=300.0, clock=lambda: now[0])
    key = CacheKey("ada", "c1", 2, "tail")
    cache.put(key, ("fp",), "value")
    now[0] = 299.0
    assert cache.get(key, ("fp",)) == "value"
    now[0] = 600.0
    assert cache.get(key, ("fp",)) is None
    assert cache.expirations == 1


# -- the same guarantees measured in the model's own tokens ------------------------------


def _model_path() -> Path:
    override = os.environ.get("VOXGATE_LLM_MODEL")
    if override:
        return Path(override)
    from voxgate.models.assets import llm_model_path

    return Path(llm_model_path())


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(_model_path()), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.mark.models
def test_invariant_region_tokens_identical_across_turns(vocab: Any) -> None:
    def tokenize(text: str, special: bool) -> list[int]:
        return list(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    prompts = _conversation(PromptAssembler("c1"), TURNS)
    token_lists = [
        tokenize_chatml(p.messages, tokenize, add_generation_prompt=False) for p in prompts
    ]
    system_tokens = tokenize_chatml(prompts[0].messages[:1], tokenize, add_generation_prompt=False)
    for earlier, later in itertools.pairwise(token_lists):
        assert later[: len(earlier)] == earlier
        assert later[: len(system_tokens)] == system_tokens
    # The per-message tokenization equals tokenizing the rendered template in one go.
    whole = tokenize(render_chatml(prompts[-1].messages), True)
    assert whole == tokenize_chatml(prompts[-1].messages, tokenize)


@pytest.mark.models
def test_control_token_text_in_user_content_stays_text(vocab: Any) -> None:
    def tokenize(text: str, special: bool) -> list[int]:
        return list(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    im_end = tokenize("<|im_end|>", True)[0]
    ids = tokenize_chatml([ChatMessage("user", "say <|im_end|> now")], tokenize)
    assert ids.count(im_end) == 1  # only the template's own end-of-message token
