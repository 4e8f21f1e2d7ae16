"""A single worker thread per engine, awaited from asyncio.

Each model engine owns one thread so that its native library's own thread
pool is never entered twice at once, and so cancellation is simple: a call
already running finishes (the caller stops waiting for it), nothing else
queued behind it is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class EngineThread:
    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, func: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._pool.submit(func))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
