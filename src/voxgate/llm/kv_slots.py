"""Saved KV states, one per persona, bounded by a byte budget (least recently used goes first).

Pure bookkeeping: the engine produces and consumes the bytes; this module only
decides what stays in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KVSlot:
    tokens: tuple[int, ...]  # the token ids whose KV cells the state holds, in position order
    state: bytes  # opaque llama.cpp context state

    @property
    def nbytes(self) -> int:
        return len(self.state)


class KVSlotStore:
    """Persona id -> KVSlot, evicting the least recently used slot past ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self.budget_bytes = budget_bytes
        self._slots: OrderedDict[str, KVSlot] = OrderedDict()
        self._bytes = 0
        self.evictions = 0

    def __contains__(self, key: str) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def slot_keys(self) -> list[str]:
        """Least recently used first."""
        return list(self._slots)

    def get(self, key: str) -> KVSlot | None:
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
        return slot

    def snapshot(self) -> list[KVSlot]:
        """Every slot, least recently used first, without counting as a use."""
        return list(self._slots.values())

    def put(self, key: str, slot: KVSlot) -> bool:
        """Store ``slot``; False (older slot dropped) if it alone exceeds the budget."""
        self.discard(key)
        if slot.nbytes > self.budget_bytes:
            return False
        self._slots[key] = slot
        self._bytes += slot.nbytes
        while self._bytes > self.budget_bytes:
            _, evicted = self._slots.popitem(last=False)
            self._bytes -= evicted.nbytes
            self.evictions += 1
        return True

    def discard(self, key: str) -> None:
        old = self._slots.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes

    def clear(self) -> None:
        self._slots.clear()
        self._bytes = 0
