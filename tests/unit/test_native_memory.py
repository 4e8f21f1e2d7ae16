"""MemoryRelease: many session closes, one trim of the C heap."""

from __future__ import annotations

import asyncio

from voxgate.native_memory import MemoryRelease


async def test_closes_close_together_share_one_trim() -> None:
    release = MemoryRelease(delay_s=0.05)
    for _ in range(10):
        release.soon()
    await asyncio.sleep(0.3)
    assert release.trims == 1
    release.soon()  # a later close gets a trim of its own
    await asyncio.sleep(0.3)
    assert release.trims == 2
    await release.close()


async def test_close_cancels_a_waiting_trim() -> None:
    release = MemoryRelease(delay_s=10)
    release.soon()
    await release.close()
    assert release.trims == 0
