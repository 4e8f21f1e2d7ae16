"""Prompt tiers: every piece of prompt text says how often it changes.

The assembler emits tiers in this order, most stable first, so that a change
in a volatile piece never invalidates the KV cache of a stable one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Tier(IntEnum):
    INVARIANT = 0  # persona identity and instructions: fixed for the persona's lifetime
    SEMI_STABLE = 1  # facts, long-term memory summary, who is present: changes rarely
    VOLATILE = 2  # recent history and the current user turn: changes every turn


@dataclass(frozen=True, slots=True)
class PromptSource:
    tier: Tier
    rank: int  # fixed position within the tier, so the order never depends on call order
    name: str
    text: str


def ordered(sources: Iterable[PromptSource]) -> list[PromptSource]:
    """Tier order, then rank, then name; empty sources dropped."""
    return sorted((s for s in sources if s.text), key=lambda s: (s.tier, s.rank, s.name))


def join_tier(sources: Iterable[PromptSource], tier: Tier) -> str:
    return "\n\n".join(s.text for s in ordered(sources) if s.tier == tier)
