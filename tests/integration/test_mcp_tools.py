"""MCP servers as a persona's tools, for real: the repository's example server
(voxgate.tools.example_mcp_server, written with the official ``mcp`` package) started over
stdio as a persona file declares it, and over streamable HTTP as a separate process. The
LLM and TTS in the reply test are fakes (tests/fakes.py), scripted to make the call."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines
from tests.session_harness import Harness
from voxgate.config import SessionConfig
from voxgate.personas.persona import PersonaError, load_personas
from voxgate.tools.mcp_client import McpServers
from voxgate.tools.mcp_spec import McpServerSpec, parse_mcp_servers
from voxgate.tools.registry import ToolError, call_tool

STDIO = McpServerSpec(
    "examples", command=("python", "-m", "voxgate.tools.example_mcp_server"), timeout_s=2.0
)
PERSONA = """
name = "Ada"
instructions = "You are Ada, brief."
holding_line = "Just a second."

[[mcp_servers]]
name = "examples"
command = ["python", "-m", "voxgate.tools.example_mcp_server"]
timeout_s = 2
tools = ["convert_units", "slow_echo"]
"""


def test_stdio_server_tools_are_listed_and_called() -> None:
    async def scenario() -> None:
        servers = McpServers()
        try:
            await servers.connect([STDIO])
            tools = {tool.name: tool for tool in servers.tools(STDIO)}
            assert set(tools) == {"convert_units", "days_until", "slow_echo"}
            schema = tools["convert_units"].parameters
            assert set(schema["properties"]) == {"value", "from_unit", "to_unit"}
            assert "length, mass" in tools["convert_units"].description
            text = await call_tool(
                tools["convert_units"], {"value": 10, "from_unit": "km", "to_unit": "miles"}
            )
            assert text == "10 km is 6.214 miles"
            with pytest.raises(ToolError) as failed:  # the server's error result
                await call_tool(
                    tools["convert_units"], {"value": 1, "from_unit": "km", "to_unit": "kg"}
                )
            assert failed.value.code == "failed" and "cannot convert length" in failed.value.message
            with pytest.raises(ToolError) as slow:  # the per-server timeout
                await call_tool(tools["slow_echo"], {"text": "hi", "seconds": 10})
            assert slow.value.code == "timeout"
            # The connection survives a timed-out call.
            assert await call_tool(tools["slow_echo"], {"text": "hi", "seconds": 0}) == "hi"
        finally:
            await servers.close()

    asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "voxgate.tools.example_mcp_server", "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


def test_streamable_http_server_tools_are_listed_and_called(http_server: str) -> None:
    spec = McpServerSpec("remote", url=http_server, tools=("days_until",))

    async def scenario() -> None:
        servers = McpServers()
        try:
            await servers.connect([spec])
            (tool,) = servers.tools(spec)  # only the tools the spec names
            assert tool.name == "days_until" and tool.source == "mcp:remote"
            assert "in 10 days" not in await call_tool(tool, {"day": "2000-01-01"})
            assert "days ago" in await call_tool(tool, {"day": "2000-01-01"})
        finally:
            await servers.close()

    asyncio.run(scenario())


def test_a_server_that_does_not_start_fails_with_its_name() -> None:
    spec = McpServerSpec("broken", command=("python", "-c", "import sys; sys.exit(3)"))
    wrong_tool = dataclasses.replace(STDIO, tools=("convert_unit",))

    async def scenario() -> None:
        servers = McpServers()
        with pytest.raises(RuntimeError, match="MCP server 'broken'"):
            await servers.connect([spec])
        # A tool the server does not offer: the error lists what it does offer.
        with pytest.raises(RuntimeError, match=r"no tool convert_unit \(it offers: convert_"):
            await servers.connect([wrong_tool])
        await servers.close()

    asyncio.run(scenario())


def test_persona_files_declare_servers_and_bad_ones_name_the_fix(tmp_path: Path) -> None:
    (tmp_path / "ada.toml").write_text(PERSONA)
    (spec,) = load_personas(tmp_path)["ada"].mcp_servers
    assert spec.command[-1] == "voxgate.tools.example_mcp_server" and spec.timeout_s == 2.0
    with pytest.raises(ValueError, match="either command"):
        parse_mcp_servers([{"name": "x", "command": "a", "url": "http://h/mcp"}])
    with pytest.raises(ValueError, match="must start with http"):
        parse_mcp_servers([{"url": "ftp://h"}])
    with pytest.raises(ValueError, match="unknown key"):
        parse_mcp_servers([{"command": "a", "timeout": 3}])
    (tmp_path / "ada.toml").write_text(PERSONA.replace("timeout_s = 2", "timeout_s = -1"))
    with pytest.raises(PersonaError, match="timeout_s"):
        load_personas(tmp_path)


def test_a_persona_calls_an_mcp_tool_in_a_reply(tmp_path: Path) -> None:
    (tmp_path / "ada.toml").write_text(PERSONA)
    ada = load_personas(tmp_path)["ada"]
    convert = {
        "name": "convert_units",
        "arguments": {"value": 5, "from_unit": "miles", "to_unit": "km"},
    }
    slow = {"name": "slow_echo", "arguments": {"text": "done", "seconds": 0.6}}
    llm = FakeLLM(
        script=[
            f"<tool_call>\n{json.dumps(convert)}\n</tool_call>",
            "That is about 8 kilometres.",
            f"<tool_call>\n{json.dumps(slow)}\n</tool_call>",
            "Done.",
        ]
    )
    engines = fake_engines(FakeSTT(lambda s: ""), llm, FakeTTS(ms_per_char=5))
    engines.personas["ada"] = dataclasses.replace(ada, id="ada")

    async def scenario() -> Harness:
        with pytest.raises(ValueError, match="connect_tools"):
            engines.tools_for(engines.personas["ada"])  # not connected yet: says what to do
        await engines.connect_tools()
        try:
            h = Harness(engines, SessionConfig(fillers=False, reply_guard=False))
            await h.start()
            await h.say("How far is five miles in kilometres?")
            await h.wait_for_done(1, 10.0)
            await h.say("Echo done, slowly.")
            await h.wait_for_done(2, 10.0)
            await h.conn.close()
            return h
        finally:
            await engines.mcp.close()

    h = asyncio.run(scenario())
    outcomes = [(e["name"], e["outcome"]) for e in h.events("tool")]
    assert outcomes == [
        ("convert_units", "started"),
        ("convert_units", "ok"),
        ("slow_echo", "started"),
        ("slow_echo", "ok"),
    ]
    assert h.events("tool")[1]["result"] == "5 miles is 8.047 km"
    # The result went back to the model, and the slow one got the holding line.
    assert "5 miles is 8.047 km" in llm.requests[1].messages[-2].content
    from voxgate.protocol.frames import FrameType

    said = "".join(f.text for f in h.frames if f.type is FrameType.LLM_CHUNK)
    # The two turns' words, back to back: no markup spoken, the holding line in the slow one.
    assert said == "That is about 8 kilometres." + "Just a second. Done."
    # The tool list is in the system message: part of the persona's cached prefix.
    assert '"name": "convert_units"' in llm.requests[0].messages[0].content
    assert '"name": "days_until"' not in llm.requests[0].messages[0].content
