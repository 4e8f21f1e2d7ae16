"""The outside probe's failed cases (issue 11), each against the real gateway app.

The app is served on a loopback port and driven by real HTTP and WebSocket clients
(aiohttp's, and raw TCP where a client must misbehave); the engines are fakes,
since no case here needs a model to answer.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines
from tests.served_app import serving
from voxgate.config import SessionConfig
from voxgate.protocol.frames import FrameType, decode, encode_event
from voxgate.transport.host_check import HostPolicy
from voxgate.transport.server import SESSIONS, GatewaySettings, create_app

TOKEN = "probe-token"
HELLO = {"type": "hello", "protocol": 2, "sample_rate": 16000}


@asynccontextmanager
async def gateway(**settings: Any) -> AsyncIterator[tuple[str, Any]]:
    options = settings.pop("runner", {})
    engines = fake_engines(FakeSTT(lambda s: ""), FakeLLM("Fine, thanks."), FakeTTS(ms_per_char=1))
    base = settings.pop("base_config", SessionConfig(fillers=False, reply_guard=False))
    app = create_app(engines, GatewaySettings(base_config=base, **settings))
    async with serving(app, **options) as url:
        yield url, app


async def frames_until_closed(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> list[Any]:
    async with asyncio.timeout(timeout):
        return [decode(m.data) async for m in ws if m.type is aiohttp.WSMsgType.BINARY]


async def no_sessions_left(app: Any) -> None:
    """The socket handler closes its session just after the socket itself closed."""
    async with asyncio.timeout(5):
        while len(app[SESSIONS]):
            await asyncio.sleep(0.01)


def errors(frames: list[Any]) -> list[str]:
    return [f.text for f in frames if f.type is FrameType.ERROR]


async def next_frame_of(ws: aiohttp.ClientWebSocketResponse, kind: FrameType) -> Any:
    async with asyncio.timeout(5):
        async for m in ws:
            frame = decode(m.data)
            if frame.type is kind:
                return frame
    raise AssertionError(f"closed before a {kind.name} frame")


# -- item 3: sockets that never say hello, sessions that say nothing ----------------------


async def test_a_socket_that_never_says_hello_is_closed_and_frees_its_slot() -> None:
    async with (
        gateway(token=None, max_sessions=2, handshake_timeout_s=0.5) as (url, app),
        aiohttp.ClientSession() as http,
    ):
        idle = [await http.ws_connect(f"{url}/ws") for _ in range(2)]
        async with http.get(f"{url}/ws") as full:  # every slot held
            assert full.status == 503
        for ws in idle:
            frames = await frames_until_closed(ws, 5)
            assert ws.close_code == 1008
            assert errors(frames)[0].startswith("handshake_timeout")
        await no_sessions_left(app)
        ws = await http.ws_connect(f"{url}/ws")  # the slots are free again
        await ws.send_bytes(encode_event(HELLO))
        assert (await next_frame_of(ws, FrameType.READY)) is not None
        await ws.close()


async def test_frames_other_than_hello_do_not_extend_the_handshake_deadline() -> None:
    async with (
        gateway(token=None, handshake_timeout_s=0.6) as (url, _),
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(f"{url}/ws")
        started = time.monotonic()
        closed = asyncio.create_task(frames_until_closed(ws, 5))
        for _ in range(30):  # a frame every 0.1 s, never a hello
            if closed.done():
                break
            await ws.send_bytes(encode_event({"type": "config"}))
            await asyncio.sleep(0.1)
        await closed
        assert ws.close_code == 1008
        assert time.monotonic() - started < 1.5


async def test_a_session_that_sends_nothing_is_closed_after_the_idle_timeout() -> None:
    async with (
        gateway(token=None, idle_timeout_s=0.5) as (url, app),
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(f"{url}/ws")
        await ws.send_bytes(encode_event(HELLO))
        frames = await frames_until_closed(ws, 5)
        assert ws.close_code == 1001
        assert errors(frames)[-1].startswith("idle_timeout")
        await no_sessions_left(app)


def raw_websocket(port: int) -> socket.socket:
    """A WebSocket client on a bare socket with a tiny receive buffer, which never reads
    after the upgrade (the peer of a client that stopped reading)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def masked_binary_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + mask + body


async def test_a_client_that_never_reads_cannot_outlive_the_handshake_timeout() -> None:
    """Review finding: each non-hello frame queues an error; once the client's buffers
    are full, answering blocked for ever and the deadline was never looked at again."""
    async with gateway(token=None, handshake_timeout_s=0.5) as (url, app):
        port = int(url.rsplit(":", 1)[1])
        sock = await asyncio.to_thread(raw_websocket, port)
        frame = masked_binary_frame(encode_event({"type": "config"}))
        sock.setblocking(False)
        try:
            for _ in range(20000):  # each one answered by an ERROR frame nobody reads
                try:
                    sock.send(frame)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                except OSError:
                    break  # dropped by the server
            await no_sessions_left(app)
        finally:
            sock.close()


# -- item 4: half-sent HTTP requests ------------------------------------------------------


async def test_a_request_trickling_its_headers_is_cut_off() -> None:
    async with gateway(token=None, runner={"keepalive_timeout": 0.5}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        request = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: "
        closed_after = None
        try:
            for byte in request + b"a" * 100:  # one byte every 50 ms, headers never end
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(1024), 0.05)
                except TimeoutError:
                    continue
                if data == b"":
                    closed_after = time.monotonic() - started
                    break
        except ConnectionError:
            closed_after = time.monotonic() - started
        finally:
            writer.close()
        assert closed_after is not None, "the server kept the half-sent request open"
        assert closed_after < 3.0


# -- item 5: DNS rebinding -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/", "/metrics", "/app.js"])
async def test_a_rebound_host_name_is_refused_even_without_a_token(path: str) -> None:
    async with gateway(token=None) as (url, app), aiohttp.ClientSession() as http:
        port = url.rsplit(":", 1)[1]
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        async with http.get(f"{url}{path}", headers=evil) as response:
            assert response.status == 421
            assert "--allow-host" in await response.text()
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{url}/ws", headers=evil)
        assert len(app[SESSIONS]) == 0


async def test_hosts_that_name_this_server_are_served() -> None:
    policy = HostPolicy.build(hosts=["voice.lan"])
    async with gateway(token=None, hosts=policy) as (url, _), aiohttp.ClientSession() as http:
        port = url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"voice.lan:{port}", "[::1]"):
            headers = {"Host": host, "Origin": f"http://{host}"}
            async with http.get(f"{url}/healthz", headers=headers) as response:
                assert response.status == 200, host
            ws = await http.ws_connect(f"{url}/ws", headers=headers)
            await ws.close()


async def test_an_origin_must_match_the_host_or_be_allowed() -> None:
    allowed = HostPolicy.build(origins=["https://app.example"])
    async with gateway(token=None, hosts=allowed) as (url, _), aiohttp.ClientSession() as http:
        for origin, ok in (
            ("http://localhost:1", False),  # another port: another origin
            ("http://attacker.example", False),
            ("http://[x", False),  # not a URL: refused, not a server error
            ("https://app.example", True),
            (url, True),
        ):
            if ok:
                ws = await http.ws_connect(f"{url}/ws", headers={"Origin": origin})
                await ws.close()
            else:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{url}/ws", headers={"Origin": origin})
                assert refused.value.status == 403


def test_host_policy_on_its_own() -> None:
    policy = HostPolicy.build(hosts=["Voice.LAN.", ".corp.example"])
    assert policy.host_ok("voice.lan:8765") and policy.host_ok("a.b.corp.example")
    assert policy.host_ok("10.1.2.3:80") and policy.host_ok("[fe80::1]:8765")
    assert policy.host_ok("dev.localhost")
    assert not policy.host_ok("corp.example.evil.com")
    assert not policy.host_ok("evil.example")
    assert not policy.host_ok(None) and not policy.host_ok("") and not policy.host_ok("a b")
    assert policy.host_ok("corp.example")  # the domain itself, as well as its subdomains
    assert not policy.origin_ok("null", "127.0.0.1:8765")
    assert not policy.origin_ok("file://", "127.0.0.1:8765")
    assert not policy.origin_ok("http://[x", "127.0.0.1:8765")
    assert HostPolicy.build(hosts=["voice.lan:8765"]).host_ok("voice.lan:8765")  # port ignored
    with pytest.raises(ValueError, match="sandboxed"):
        HostPolicy.build(origins=["null"])


# -- item 8: static file names ------------------------------------------------------------


@pytest.mark.parametrize("name", ["a" * 5000, "x.js" * 100, "%00.js", "..%2fpyproject.toml"])
async def test_odd_static_names_get_a_quiet_404(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        gateway(token=TOKEN) as (url, _),
        aiohttp.ClientSession() as http,
        http.get(f"{url}/{name}") as response,
    ):
        assert response.status in (404, 414)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# -- item 9: loose input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "update", [{"endpoint_min_ms": True}, {"overlap": 1}, {"endpoint_max_ms": "900"}]
)
async def test_config_values_must_have_their_exact_type(update: dict[str, Any]) -> None:
    async with gateway(token=None) as (url, _), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/ws")
        await ws.send_bytes(encode_event(HELLO))
        welcome = (await next_frame_of(ws, FrameType.EVENT)).json()
        await ws.send_bytes(encode_event({"type": "config", **update}))
        error = (await next_frame_of(ws, FrameType.ERROR)).text
        assert error.startswith("bad_event: config rejected"), error
        await ws.send_bytes(encode_event({"type": "config", "endpoint_mid_ms": 900}))
        applied = (await next_frame_of(ws, FrameType.EVENT)).json()
        key = next(iter(update))
        assert applied[key] == welcome["config"][key]  # the bad value never landed
        assert applied["endpoint_mid_ms"] == 900
        await ws.close()


async def test_a_later_update_keeps_what_the_client_chose_at_hello() -> None:
    """Review finding: every update re-applied the persona's endpointing values."""
    async with gateway(token=None) as (url, _), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/ws")
        await ws.send_bytes(encode_event({**HELLO, "config": {"endpoint_min_ms": 250}}))
        assert (await next_frame_of(ws, FrameType.EVENT)).json()["config"]["endpoint_min_ms"] == 250
        await ws.send_bytes(encode_event({"type": "config", "fillers": True}))
        applied = (await next_frame_of(ws, FrameType.EVENT)).json()
        assert applied["endpoint_min_ms"] == 250 and applied["fillers"] is True
        await ws.close()


async def test_a_hello_with_a_loosely_typed_config_is_refused() -> None:
    async with gateway(token=None) as (url, _), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/ws")
        await ws.send_bytes(encode_event({**HELLO, "config": {"endpoint_min_ms": True}}))
        frames = await frames_until_closed(ws, 5)
        assert ws.close_code == 1008 and errors(frames)[0].startswith("bad_event")


async def test_typed_turns_are_rate_limited() -> None:
    async with gateway(token=None) as (url, _), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/ws")
        await ws.send_bytes(encode_event(HELLO))
        await next_frame_of(ws, FrameType.READY)
        for i in range(12):
            await ws.send_bytes(encode_event({"type": "user_text", "text": f"Question {i}?"}))
        error = (await next_frame_of(ws, FrameType.ERROR)).text
        assert error.startswith("rate_limited: too many user_text events"), error
        await ws.close()


async def test_metrics_need_a_token_off_loopback() -> None:
    async with (
        gateway(token=TOKEN, metrics_open=False, metrics_token="scrape") as (url, _),
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{url}/metrics") as anonymous:
            assert anonymous.status == 401
            assert "--metrics-token" in await anonymous.text()
        for token in (TOKEN, "scrape"):
            bearer = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{url}/metrics", headers=bearer) as scraped:
                assert scraped.status == 200
                assert "voxgate_sessions_active" in await scraped.text()
        async with http.get(f"{url}/metrics", headers={"Authorization": "Bearer no"}) as wrong:
            assert wrong.status == 401
    async with (
        gateway(token=TOKEN) as (url, _),
        aiohttp.ClientSession() as http,
        http.get(f"{url}/metrics") as on_loopback,  # metrics_open: the default
    ):
        assert on_loopback.status == 200
