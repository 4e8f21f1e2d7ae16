"""The in-process server every end-to-end benchmark drives over a real loopback WebSocket."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from voxgate.engines import Engines, load_default_engines
from voxgate.transport.runner_options import runner_options
from voxgate.transport.server import GatewaySettings, create_app


@dataclass
class BenchServer:
    engines: Engines
    runner: web.AppRunner
    url: str  # ws://127.0.0.1:PORT/ws

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.engines.close()


async def start_bench_server(
    kind: str,
    trace: str | None,
    max_sessions: int = 16,
    model: str | None = None,
    release_memory: bool = True,
    prepare: Callable[[Engines], None] | None = None,
) -> BenchServer:
    """Load and warm the default stack, serve it on a free loopback port, no token.
    ``prepare`` changes the engines before the warm-up (personas, tools)."""
    trace_path = Path(trace or f"runs/bench-{kind}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    print(f"[{kind}] loading and warming models...", flush=True)
    # A fresh memory store: what earlier runs taught the personas must not change the prompts.
    memory = Path(tempfile.mkdtemp(prefix=f"voxgate-{kind}-")) / "memory.sqlite3"
    engines = load_default_engines(trace_path=trace_path, memory_path=memory, model=model)
    if prepare is not None:
        prepare(engines)
    await engines.warm()
    return await serve_engines(engines, max_sessions, release_memory)


async def serve_engines(
    engines: Engines, max_sessions: int = 16, release_memory: bool = True
) -> BenchServer:
    """Serve warmed ``engines`` on a free loopback port, no token; close() closes both."""
    settings = GatewaySettings(token=None, max_sessions=max_sessions, release_memory=release_memory)
    runner = web.AppRunner(create_app(engines, settings), **runner_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # loopback only
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return BenchServer(engines, runner, f"ws://127.0.0.1:{port}/ws")
