"""Composition cache: an assembled prompt is reused while none of its inputs changed.

A speculative run and the final run of the same turn, or a retry, assemble the
same prompt; the cache makes that free. Entries are keyed by where in the
conversation they sit (persona, conversation, history tail) and carry a
fingerprint of every other input, so a changed input replaces the entry
instead of being served stale.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

DEFAULT_TTL_S = 300.0  # a conversation idle this long has moved on
DEFAULT_MAX_ENTRIES = 256


@dataclass(frozen=True, slots=True)
class CacheKey:
    persona_id: str
    conversation_id: str
    history_len: int
    history_tail: str  # digest of the last history message ("" when empty)


@dataclass(slots=True)
class _Entry(Generic[V]):
    fingerprint: Hashable
    value: V
    stored_at: float


class CompositionCache(Generic[V]):
    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry[V]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.invalidations = 0  # an entry existed but an input had changed
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, fingerprint: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is not None:
            if self._clock() - entry.stored_at > self.ttl_s:
                del self._entries[key]
                self.expirations += 1
            elif entry.fingerprint != fingerprint:
                del self._entries[key]
                self.invalidations += 1
            else:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.value
        self.misses += 1
        return None

    def put(self, key: CacheKey, fingerprint: Hashable, value: V) -> None:
        self._entries[key] = _Entry(fingerprint, value, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate_persona(self, persona_id: str) -> int:
        """Drop every entry of a persona (its file was edited); returns how many."""
        stale = [k for k in self._entries if k.persona_id == persona_id]
        for k in stale:
            del self._entries[k]
        self.invalidations += len(stale)
        return len(stale)
