"""Assemble a persona's prompt in tier order: INVARIANT, SEMI_STABLE, then VOLATILE.

The system message holds INVARIANT then SEMI_STABLE text; the history follows
and only ever grows, so turn N's prompt is a byte prefix of turn N+1's and the
engine prefills only the new suffix. When the history outgrows its budget,
the oldest whole exchanges are dropped in one go, down to a low-water mark,
so that the (expensive) re-prefill after a compaction happens rarely and is
counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voxgate.llm.base import ChatMessage
from voxgate.personas.persona import Persona
from voxgate.prompt.cache import CacheKey, CompositionCache
from voxgate.prompt.tiers import PromptSource, Tier, join_tier

# ~4 chars per token: 4000 chars leave room for the system text and a reply in 2048 tokens.
DEFAULT_HISTORY_BUDGET = 4000
# After a compaction the history fills back up from half the budget, so the next
# compaction is many turns away.
DEFAULT_LOW_WATER = 0.5


@dataclass(frozen=True, slots=True)
class AssembledPrompt:
    messages: list[ChatMessage]
    invariant_text: str
    invariant_sha256: str
    system_text: str  # INVARIANT + SEMI_STABLE: the content of the system message
    system_sha256: str
    tier_chars: dict[Tier, int]
    history_dropped: int  # history messages left out by compaction so far
    compactions: int  # compactions so far for this persona in this conversation
    compacted: bool  # this call compacted the history
    stable_messages: int  # leading messages that never change: the system message and examples


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def persona_sources(
    persona: Persona,
    memory_summary: str = "",
    speaker_names: Sequence[str] = (),
    session_instructions: str = "",
    tools_text: str = "",
) -> list[PromptSource]:
    """The INVARIANT and SEMI_STABLE sources of a persona's system message."""
    identity = persona.instructions.strip()
    if persona.name not in identity:
        identity = f"You are {persona.name}.\n{identity}"
    sources = [PromptSource(Tier.INVARIANT, 0, "persona", identity)]
    if tools_text:  # fixed for the persona: part of its cached prefix
        sources.append(PromptSource(Tier.INVARIANT, 1, "tools", tools_text))
    if persona.facts:
        facts = "\n".join(f"- {f.strip()}" for f in persona.facts)
        background = f"What you know about yourself, for when you are asked:\n{facts}"
        sources.append(PromptSource(Tier.SEMI_STABLE, 0, "facts", background))
    others = sorted({n.strip() for n in speaker_names if n.strip() and n.strip() != persona.name})
    if others:
        names = ", ".join(others)
        sources.append(
            PromptSource(Tier.SEMI_STABLE, 1, "speakers", f"Also in this conversation: {names}.")
        )
    if memory_summary.strip():
        memory = (
            "What you know about the user from earlier conversations, for when it is relevant:"
            f"\n{memory_summary.strip()}"
        )
        sources.append(PromptSource(Tier.SEMI_STABLE, 2, "memory", memory))
    if session_instructions.strip():
        # A client's own instructions (a Realtime session.update): after the persona's
        # identity, so changing them never invalidates the persona's stable prefix.
        sources.append(PromptSource(Tier.SEMI_STABLE, 3, "session", session_instructions.strip()))
    return sources


def example_messages(persona: Persona) -> list[ChatMessage]:
    """The persona's example exchanges as chat turns, right after the system message."""
    return [
        message
        for user, reply in persona.examples
        for message in (ChatMessage("user", user), ChatMessage("assistant", reply))
    ]


def _exchange_starts(history: Sequence[ChatMessage]) -> list[int]:
    """Indices where a whole exchange begins: each user message (and index 0)."""
    starts = [i for i, m in enumerate(history) if m.role == "user"]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return starts


class PromptAssembler:
    """One per conversation: it remembers, per persona, how much history was compacted away."""

    def __init__(
        self,
        conversation_id: str = "default",
        *,
        history_budget: int = DEFAULT_HISTORY_BUDGET,
        low_water: float = DEFAULT_LOW_WATER,
        measure: Callable[[str], int] = len,
        cache: CompositionCache[AssembledPrompt] | None = None,
    ) -> None:
        if not 0.0 <= low_water <= 1.0:
            raise ValueError("low_water must be within [0, 1]")
        self.conversation_id = conversation_id
        self.history_budget = history_budget
        self.low_water = low_water
        self._measure = measure
        self.cache: CompositionCache[AssembledPrompt] = (
            cache if cache is not None else CompositionCache()
        )
        self._dropped: dict[str, int] = {}
        self._compactions: dict[str, int] = {}
        self._epoch = 0  # bumped when a history is edited other than by appending

    def history_edited(self) -> None:
        """A history changed other than at its end (a cut reply, a deleted message): the
        cached compositions and compaction offsets no longer describe it."""
        self._epoch += 1
        self._dropped.clear()

    @property
    def compactions(self) -> int:
        return sum(self._compactions.values())

    def assemble(
        self,
        persona: Persona,
        history: Sequence[ChatMessage],
        user_text: str,
        memory_summary: str = "",
        speaker_names: Sequence[str] = (),
        session_instructions: str = "",
        tools_text: str = "",
    ) -> AssembledPrompt:
        """``history`` is the whole conversation so far (append-only), without ``user_text``."""
        if len(history) < self._dropped.get(persona.id, 0):
            self._dropped[persona.id] = 0  # the history was replaced: a new conversation

        tail = sha256_text(f"{history[-1].role}\n{history[-1].content}") if history else ""
        key = CacheKey(persona.id, f"{self.conversation_id}#{self._epoch}", len(history), tail)
        names = tuple(sorted(speaker_names))

        def fingerprint() -> tuple[object, ...]:
            return (
                persona,
                user_text,
                memory_summary,
                names,
                session_instructions,
                tools_text,
                self._dropped.get(persona.id, 0),
            )

        cached = self.cache.get(key, fingerprint())
        if cached is not None:
            return cached

        compacted = self._compact(persona.id, history, user_text)
        dropped = self._dropped.get(persona.id, 0)
        window = list(history[dropped:])

        sources = persona_sources(
            persona, memory_summary, speaker_names, session_instructions, tools_text
        )
        invariant = join_tier(sources, Tier.INVARIANT)
        semi = join_tier(sources, Tier.SEMI_STABLE)
        system = f"{invariant}\n\n{semi}" if semi else invariant
        examples = example_messages(persona)
        messages = [ChatMessage("system", system), *examples, *window]
        if user_text:
            messages.append(ChatMessage("user", user_text))

        prompt = AssembledPrompt(
            messages=messages,
            invariant_text=invariant,
            invariant_sha256=sha256_text(invariant),
            system_text=system,
            system_sha256=sha256_text(system),
            tier_chars={
                Tier.INVARIANT: len(invariant),
                Tier.SEMI_STABLE: len(semi),
                Tier.VOLATILE: sum(len(m.content) for m in window) + len(user_text),
            },
            history_dropped=dropped,
            compactions=self._compactions.get(persona.id, 0),
            compacted=compacted,
            stable_messages=1 + len(examples),
        )
        self.cache.put(key, fingerprint(), prompt)
        return prompt

    def _volatile_size(self, window: Sequence[ChatMessage], user_text: str) -> int:
        return sum(self._measure(m.content) for m in window) + self._measure(user_text)

    def _compact(self, persona_id: str, history: Sequence[ChatMessage], user_text: str) -> bool:
        dropped = self._dropped.get(persona_id, 0)
        if self._volatile_size(history[dropped:], user_text) <= self.history_budget:
            return False
        target = self.history_budget * self.low_water
        starts = [dropped + i for i in _exchange_starts(history[dropped:])] + [len(history)]
        for start in starts[1:]:
            dropped = start
            if self._volatile_size(history[dropped:], user_text) <= target:
                break
        self._dropped[persona_id] = dropped
        self._compactions[persona_id] = self._compactions.get(persona_id, 0) + 1
        return True
