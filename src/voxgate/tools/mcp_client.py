"""MCP servers as tools, through the official ``mcp`` package: each server is connected once
at start-up (stdio or streamable HTTP), its tools listed then, and every persona that
declares it calls it over that one connection.

The ``mcp`` client lives in an anyio task group, which must be entered and left by the same
task; so each connection is held open by a task of its own, and calls from any session's
task go through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from voxgate.tools.mcp_spec import McpServerSpec
from voxgate.tools.registry import TOOL_NAME, Tool, ToolError, strip_titles

log = logging.getLogger("voxgate.tools.mcp")

CONNECT_TIMEOUT_S = 30.0  # a server started as a subprocess imports its packages first
MAX_PAGES = 20  # of a tool list: a paginator that never ends cannot hang the start
# A description goes into every prompt of the persona: a page of it costs prefill.
MAX_DESCRIPTION_CHARS = 600


class _AnyArguments(BaseModel):
    """MCP tools bring a JSON schema, not Python types: the server validates the arguments."""

    model_config = ConfigDict(extra="allow")


class McpConnection:
    """One server: started (or dialled) by ``start``, its tools listed, closed by ``close``."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.tools: list[Tool] = []
        self._client: Any = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> list[Tool]:
        """Connect and list the tools; RuntimeError names the server and what went wrong."""
        self._task = asyncio.create_task(self._hold(), name=f"mcp:{self.spec.name}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({ready, self._task}, timeout=timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        except BaseException:  # cancelled while starting: leave no server behind
            await self.close()
            raise
        finally:
            ready.cancel()
        if not self._ready.is_set():
            await self.close()
            why = str(self._error) if self._error else f"no answer in {timeout_s:g} s"
            raise RuntimeError(f"{self.spec.label()} cannot be used: {why}")
        return self.tools

    async def _hold(self) -> None:
        from mcp import Client, StdioServerParameters

        if self.spec.url:
            target: Any = self.spec.url
        else:
            program, args = self.spec.program()
            # Only what the spec adds, over the mcp package's safe default environment:
            # the gateway's own secrets stay with the gateway.
            env = dict(self.spec.env) or None
            target = StdioServerParameters(command=program, args=list(args), env=env)
        try:
            # No read timeout for the handshake (a server may import for a while: start()
            # bounds it); each call has the spec's.
            async with Client(target) as client:
                self._client = client
                self.tools = self._wrap(await _list_all(client))
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # the start reports it; a later failure shows in calls
            self._error = _innermost(exc)
            if self._ready.is_set():
                log.warning("%s closed: %r", self.spec.label(), exc)
        finally:
            self._client = None

    def _wrap(self, listed: Sequence[Any]) -> list[Tool]:
        offered = [tool.name for tool in listed]
        missing = set(self.spec.tools) - set(offered)
        if missing:
            raise RuntimeError(
                f"it offers no tool {', '.join(sorted(missing))} (it offers: "
                f"{', '.join(offered) or 'none'}); fix the persona's tools list"
            )
        tools = []
        for item in listed:
            if self.spec.tools and item.name not in self.spec.tools:
                continue
            if not TOOL_NAME.match(item.name):  # OpenAI-style APIs refuse other names
                raise RuntimeError(
                    f"its tool {item.name!r} has a name models cannot call (letters, digits, "
                    "_ and -, at most 64): leave it out with the persona's tools list"
                )
            description = " ".join((item.description or item.name).split())
            tools.append(
                Tool(
                    name=item.name,
                    description=description[:MAX_DESCRIPTION_CHARS],
                    parameters=strip_titles(item.input_schema),
                    arguments=_AnyArguments,
                    function=self._caller(item.name),
                    # The call's own read timeout stops it first; this bounds the rest.
                    timeout_s=self.spec.timeout_s + 1.0,
                    source=f"mcp:{self.spec.name}",
                )
            )
        return tools

    def _caller(self, name: str) -> Any:
        async def call(**arguments: Any) -> str:
            client = self._client
            if client is None:
                raise ToolError("failed", f"{self.spec.label()} is not connected")
            from mcp import MCPError
            from mcp_types import REQUEST_TIMEOUT

            try:
                result = await client.call_tool(
                    name, arguments, read_timeout_seconds=self.spec.timeout_s
                )
            except MCPError as exc:  # the server's protocol error, or the client's timeout
                if exc.code == REQUEST_TIMEOUT:
                    raise ToolError(
                        "timeout", f"{name} took over {self.spec.timeout_s:g} s"
                    ) from None
                raise ToolError("failed", f"{name}: {exc.error.message}") from None
            text = _result_text(result)
            if result.is_error:
                raise ToolError("failed", f"{name}: {text}")
            return text

        return call

    async def close(self) -> None:
        self._stop.set()
        if self._task is None or self._task.done():
            return
        if self._ready.is_set():  # connected: let it leave the session cleanly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
        self._task.cancel()  # still starting (or stuck): stop it now
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


def _innermost(exc: BaseException) -> BaseException:
    """The error itself, out of the task groups' wrapping (anyio raises groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _list_all(client: Any) -> list[Any]:
    """Every page of the server's tool list."""
    tools: list[Any] = []
    cursor = None
    for _ in range(MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _result_text(result: Any) -> str:
    """The text parts of a result; its structured content when it has no text."""
    parts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    skipped = len(result.content) - len(parts)
    if skipped:
        parts.append(f"[{skipped} non-text part(s) left out]")
    return "\n".join(parts)


class McpServers:
    """Every MCP server the personas declare, one connection per distinct server."""

    def __init__(self) -> None:
        self._connections: dict[McpServerSpec, McpConnection] = {}

    def connected(self, spec: McpServerSpec) -> bool:
        return spec in self._connections

    async def connect(self, specs: Sequence[McpServerSpec]) -> None:
        for spec in specs:
            if spec in self._connections:
                continue
            connection = McpConnection(spec)
            tools = await connection.start()
            self._connections[spec] = connection
            log.info("%s: %d tool(s): %s", spec.label(), len(tools),
                     ", ".join(t.name for t in tools))  # fmt: skip

    def tools(self, spec: McpServerSpec) -> list[Tool]:
        return self._connections[spec].tools

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections))
