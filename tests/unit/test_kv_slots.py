"""KVSlotStore: byte budget, least-recently-used eviction."""

from __future__ import annotations

from voxgate.llm.kv_slots import KVSlot, KVSlotStore


def _slot(nbytes: int) -> KVSlot:
    return KVSlot(tokens=(1, 2, 3), state=b"\0" * nbytes)


def test_evicts_least_recently_used_past_budget() -> None:
    store = KVSlotStore(budget_bytes=250)
    store.put("a", _slot(100))
    store.put("b", _slot(100))
    assert store.get("a") is not None  # a is now more recent than b
    store.put("c", _slot(100))
    assert store.slot_keys() == ["a", "c"]
    assert store.evictions == 1
    assert store.used_bytes == 200


def test_replacing_a_slot_updates_the_byte_count() -> None:
    store = KVSlotStore(budget_bytes=1000)
    store.put("a", _slot(100))
    store.put("a", _slot(300))
    assert store.used_bytes == 300
    assert len(store) == 1


def test_a_slot_larger_than_the_budget_is_not_kept() -> None:
    store = KVSlotStore(budget_bytes=50)
    store.put("a", _slot(40))
    assert store.put("a", _slot(60)) is False
    assert "a" not in store
    assert store.used_bytes == 0
