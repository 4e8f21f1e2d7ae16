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
import logging
import os
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from voxgate.tools.mcp_spec import McpServerSpec
from voxgate.tools.registry import Tool, ToolError

log = logging.getLogger("voxgate.tools.mcp")

CONNECT_TIMEOUT_S = 30.0  # a server started as a subprocess imports its packages first


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
        finally:
            ready.cancel()
        if not self._ready.is_set():
            await self.close()
            why = repr(self._error) if self._error else f"no answer in {timeout_s:g} s"
            raise RuntimeError(f"{self.spec.label()} did not start: {why}")
        return self.tools

    async def _hold(self) -> None:
        from mcp import Client, StdioServerParameters

        if self.spec.url:
            target: Any = self.spec.url
        else:
            program, args = self.spec.program()
            target = StdioServerParameters(
                command=program,
                args=list(args),
                env={**os.environ, **dict(self.spec.env)} if self.spec.env else None,
            )
        try:
            async with Client(target, read_timeout_seconds=self.spec.timeout_s) as client:
                self._client = client
                listed = await client.list_tools()
                self.tools = self._wrap(listed.tools)
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # the start reports it; a later failure shows in calls
            self._error = exc
            if self._ready.is_set():
                log.warning("%s closed: %r", self.spec.label(), exc)
        finally:
            self._client = None

    def _wrap(self, listed: Sequence[Any]) -> list[Tool]:
        wanted = set(self.spec.tools)
        missing = wanted - {tool.name for tool in listed}
        if missing:
            raise RuntimeError(f"it lists no tool {', '.join(sorted(missing))}")
        tools = []
        for item in listed:
            if wanted and item.name not in wanted:
                continue
            tools.append(
                Tool(
                    name=item.name,
                    description=" ".join((item.description or item.name).split()),
                    parameters=item.input_schema,
                    arguments=_AnyArguments,
                    function=self._caller(item.name),
                    # The client's own read timeout stops a call first; this bounds the rest.
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
                result = await client.call_tool(name, arguments)
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
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task


def _result_text(result: Any) -> str:
    """The text parts of a result; its structured content when it has no text."""
    parts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    if not parts and result.structured_content is not None:
        import json

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
