"""Serve an aiohttp app on a free loopback port for a test, the way the gateway runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from voxgate.transport.runner_options import runner_options


@asynccontextmanager
async def serving(app: web.Application, **options: Any) -> AsyncIterator[str]:
    """Yields ``http://127.0.0.1:PORT``; ``options`` override the gateway's runner options."""
    runner = web.AppRunner(app, **{**runner_options(), **options})
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
