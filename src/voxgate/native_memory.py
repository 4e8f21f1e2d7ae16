"""Hand memory that native code freed back to the system, so RSS follows what is in use.

Every session that runs a turn allocates and frees multi-megabyte native blocks: the
KV state saved for its persona, its audio ring, decode and synthesis buffers. glibc
keeps freed pages mapped in its heaps (and, once a large block has been freed, serves
blocks of that size from the heap instead of fresh mappings), so RSS kept creeping up
after the warm-up although nothing was still referenced: ``malloc_trim`` brought it
back (the memory was free, not leaked). Trimming after sessions end returns it. The
other cause of growth, ONNX Runtime's arena, is off (voxgate/onnx_options.py). A
no-op where the C library is not glibc.

A trim walks and locks each malloc arena in turn, briefly stalling allocation in
the inference threads of the sessions still running: ``MemoryRelease`` runs one at
a time, once the closes of the last half second are in.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
from functools import cache
from typing import Any

from voxgate.aio import cancel_and_wait

log = logging.getLogger("voxgate.memory")


@cache
def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    return libc


def release_free_memory() -> bool:
    """Return free heap pages to the system (blocking: milliseconds). True if any were."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


class MemoryRelease:
    """Trims the C heap shortly after sessions end: many closes, one trim."""

    def __init__(self, delay_s: float = 0.5) -> None:
        self.delay_s = delay_s
        self.trims = 0
        self._task: asyncio.Task[None] | None = None
        self._requested = False  # a request not yet covered by a trim that has started
        self._closed = False

    def soon(self) -> None:
        """Ask for a trim; one still waiting to start covers this request too."""
        if self._closed:
            return
        self._requested = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._trim_later(), name="memory-release")

    async def _trim_later(self) -> None:
        while self._requested:
            await asyncio.sleep(self.delay_s)
            self._requested = False  # what is freed from here on, this trim returns
            try:
                await asyncio.to_thread(release_free_memory)
            except Exception:  # best effort: a failed trim costs memory, not the server
                log.exception("trimming the C heap failed")
            self.trims += 1

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            await cancel_and_wait(self._task)
