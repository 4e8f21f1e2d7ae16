"""Awaited cancellation that never swallows the caller's own cancellation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("voxgate.aio")


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` and wait until every one has finished.

    ``suppress(CancelledError)`` around ``await task`` would also eat a
    cancellation aimed at the *caller*, which then carries on as if nothing
    happened. Here the children's cancellation is absorbed, the caller's is
    remembered and re-raised once the children are done.
    """
    children = [t for t in tasks if t is not None]
    for child in children:
        child.cancel()
    pending = set(children)
    caller_cancelled = False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            caller_cancelled = True
    for child in children:
        if not child.cancelled() and child.exception() is not None:
            log.error("task failed while being cancelled", exc_info=child.exception())
    if caller_cancelled:
        raise asyncio.CancelledError
