"""An MCP server a persona uses, as its file declares it (``[[mcp_servers]]``): a stdio
command or a streamable-HTTP URL. Parsing only; ``mcp_client`` connects."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from voxgate.tools.registry import DEFAULT_TIMEOUT_S

_KEYS = frozenset({"name", "command", "url", "env", "timeout_s", "tools"})
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


@dataclass(frozen=True)
class McpServerSpec:
    name: str  # in errors and tool events
    command: tuple[str, ...] = ()  # stdio: the program and its arguments
    url: str = ""  # streamable HTTP, e.g. http://127.0.0.1:8765/mcp
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the command
    timeout_s: float = DEFAULT_TIMEOUT_S  # per call
    tools: tuple[str, ...] = ()  # only these of its tools (empty: all it lists)

    def label(self) -> str:
        return f"MCP server {self.name!r} ({self.url or shlex.join(self.command)})"

    def program(self) -> tuple[str, tuple[str, ...]]:
        """The command to start. ``python`` means this interpreter, so a server installed
        beside voxgate runs in the same environment."""
        first, *rest = self.command
        if first in ("python", "python3"):
            first = sys.executable
        return first, tuple(rest)


def parse_mcp_servers(value: Any) -> tuple[McpServerSpec, ...]:
    """``[[mcp_servers]]`` tables; ValueError names the field and the fix."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError("mcp_servers must be a list of tables ([[mcp_servers]])")
    specs = [_spec(index, item) for index, item in enumerate(value, start=1)]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"mcp_servers: two servers share a name ({', '.join(names)})")
    return tuple(specs)


def _spec(index: int, table: dict[str, Any]) -> McpServerSpec:
    where = f"mcp_servers[{index}]"
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(_KEYS))})")  # fmt: skip
    command = table.get("command", ())
    if isinstance(command, str):
        command = shlex.split(command)
    url = table.get("url", "")
    if not isinstance(url, str) or not isinstance(command, list | tuple):
        raise ValueError(f"{where}: command is a list of strings (or one string), url a string")
    if bool(command) == bool(url):
        raise ValueError(f"{where}: give either command (stdio) or url (streamable HTTP)")
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"{where}: url {url!r} must start with http:// or https://")
    if not all(isinstance(part, str) and part for part in command):
        raise ValueError(f"{where}: command must be non-empty strings")
    name = table.get("name", f"server{index}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: name {name!r}: letters, digits, '.', '_' and '-'")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError(f"{where}: env must be a table of strings")
    timeout_s = table.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ValueError(f"{where}: timeout_s must be a number of seconds > 0")
    tools = table.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise ValueError(f"{where}: tools must be a list of tool names")
    return McpServerSpec(
        name=name,
        command=tuple(command),
        url=url,
        env=tuple(sorted(env.items())),
        timeout_s=float(timeout_s),
        tools=tuple(tools),
    )
