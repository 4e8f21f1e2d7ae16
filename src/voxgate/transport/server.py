"""The gateway: one aiohttp app serving the web client, the voice WebSocket and metrics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import signal
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from aiohttp.typedefs import Handler

from voxgate.config import SessionConfig, sequential_config
from voxgate.engines import Engines, load_default_engines
from voxgate.llm.base import LLMCapabilities
from voxgate.native_memory import MemoryRelease
from voxgate.protocol.frames import MAX_FRAME_BYTES
from voxgate.realtime.adapter import RealtimeConnection
from voxgate.session import INPUT_RATE
from voxgate.transport.access_log import no_referrer
from voxgate.transport.binary_protocol import BinaryProtocolSession, CloseSession
from voxgate.transport.exposure import exposure_warnings, is_loopback
from voxgate.transport.host_check import HostPolicy, is_ip_literal
from voxgate.transport.limits import Admission, AudioRateLimiter, audio_samples
from voxgate.transport.runner_options import runner_options

log = logging.getLogger("voxgate.server")

WEB_DIR = Path(str(files("voxgate").joinpath("web")))
STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
# aiohttp closes the socket past this size; our own decoder answers anything
# between MAX_FRAME_BYTES and this with an error frame and keeps the session.
WS_HARD_LIMIT = 4 * MAX_FRAME_BYTES


# A socket that has not said hello by then gives its slot back (docs/protocol.md).
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
# A session that sends nothing at all (no audio, no event) for this long is closed.
# Clients with the microphone on send audio every 20 ms; typed-only clients send
# playback reports while replies play.
DEFAULT_IDLE_TIMEOUT_S = 300.0
# A client that takes no output for this long has stopped reading: its connection is
# dropped (a reply's audio leaves paced to real time, so a reading client never waits).
SEND_STALL_S = 30.0
# A silent session's error frame and close handshake get this long to go out.
CLOSE_GRACE_S = 2.0
# Static asset names are short; a longer one is not ours, and never reaches the disk.
MAX_STATIC_NAME = 64


@dataclass
class GatewaySettings:
    token: str | None  # None: no token required
    hosts: HostPolicy = field(default_factory=HostPolicy)
    max_sessions: int = 16
    base_config: SessionConfig = field(default_factory=SessionConfig)
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S  # 0: never
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S  # 0: never
    # /metrics: open when the server listens on loopback only; else it needs the session
    # token or this one (for a Prometheus scraper that should not hold session rights).
    metrics_token: str | None = None
    metrics_open: bool = True
    # Trim the C heap after each session (voxgate/native_memory.py); off only to measure.
    release_memory: bool = True


ENGINES: web.AppKey[Engines] = web.AppKey("engines", Engines)
SETTINGS: web.AppKey[GatewaySettings] = web.AppKey("settings", GatewaySettings)


class Connection(Protocol):
    """A socket's protocol adapter: the native binary one or the Realtime API's."""

    id: str

    @property
    def ready(self) -> bool: ...

    @property
    def outbox(self) -> Any: ...

    def error(self, code: str, message: str) -> None: ...

    async def close(self) -> None: ...


@dataclass
class LiveSessions:
    sessions: set[Connection] = field(default_factory=set)
    # Their sockets, so that shutdown can close them: an open WebSocket otherwise holds
    # runner.cleanup() for aiohttp's whole shutdown timeout.
    sockets: set[web.WebSocketResponse] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.sessions)


SESSIONS: web.AppKey[LiveSessions] = web.AppKey("sessions", LiveSessions)
MEMORY_RELEASE: web.AppKey[MemoryRelease] = web.AppKey("memory_release", MemoryRelease)


# A browser cannot set headers on a WebSocket: OpenAI's Realtime clients pass the key as a
# subprotocol, "openai-insecure-api-key.<key>", beside "realtime".
KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"


def _subprotocols(request: web.Request) -> list[str]:
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in offered.split(",") if p.strip()]


def _offered_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:]
    for protocol in _subprotocols(request):
        if protocol.startswith(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return request.query.get("token", "")


def _token_ok(settings: GatewaySettings, request: web.Request) -> bool:
    if settings.token is None:
        return True
    return hmac.compare_digest(_offered_token(request).encode(), settings.token.encode())


def _metrics_allowed(settings: GatewaySettings, request: web.Request) -> bool:
    if settings.metrics_open:
        return True
    accepted = [t for t in (settings.token, settings.metrics_token) if t is not None]
    if not accepted:  # an open server (--no-token on a trusted network) has open metrics
        return True
    offered = _offered_token(request).encode()
    # Both compared, always: the time taken says nothing about which one matched.
    matches = [hmac.compare_digest(offered, t.encode()) for t in accepted]
    return any(matches)


@web.middleware
async def host_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request must name this server in its Host header (DNS rebinding, see
    transport/host_check.py); a browser's Origin must match it."""
    if request.path == "/healthz":  # load balancers probe by address, some without Host
        return await handler(request)
    hosts = request.app[SETTINGS].hosts
    host = request.headers.get("Host")
    if not hosts.host_ok(host):
        raise web.HTTPMisdirectedRequest(
            text=f"host {host!r} does not name this server; if it does, start the server "
            "with --allow-host NAME\n"
        )
    origin = request.headers.get("Origin")
    if not hosts.origin_ok(origin, host):
        raise web.HTTPForbidden(
            text=f"origin {origin} is not allowed; start the server with --allow-origin "
            "to permit it\n"
        )
    return await handler(request)


async def index(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not _token_ok(settings, request):
        return web.Response(
            status=401,
            content_type="text/plain",
            text="voxgate: open the URL printed by `voxgate serve` (it carries ?token=...).\n",
        )
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    html = html.replace("{{VOXGATE_TOKEN}}", settings.token or "")
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if len(name) > MAX_STATIC_NAME or "/" in name or "\\" in name or name.startswith("."):
        raise web.HTTPNotFound()
    path = WEB_DIR / name
    try:
        found = path.suffix in STATIC_TYPES and path.is_file()
    except (OSError, ValueError):  # a name the file system refuses (NUL, too long)
        found = False
    if not found:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "sessions": len(request.app[SESSIONS])})


async def metrics(request: web.Request) -> web.Response:
    if not _metrics_allowed(request.app[SETTINGS], request):
        raise web.HTTPUnauthorized(
            text="/metrics needs the session token or --metrics-token: send "
            "'Authorization: Bearer <token>' (the server is not bound to loopback)\n"
        )
    engines = request.app[ENGINES]
    registry = engines.registry
    cache = engines.prompt_cache
    registry.set("voxgate_prompt_cache_hits", cache.hits, help_text="Composition cache hits")
    registry.set("voxgate_prompt_cache_misses", cache.misses, help_text="Composition cache misses")
    lookups = cache.hits + cache.misses
    registry.set(
        "voxgate_prompt_cache_hit_ratio",
        cache.hits / lookups if lookups else 0.0,
        help_text="Composition cache hit ratio",
    )
    registry.set(
        "voxgate_sessions_active", len(request.app[SESSIONS]), help_text="Open voice sessions"
    )
    return web.Response(text=registry.render(), content_type="text/plain")


async def voice_socket(request: web.Request) -> web.StreamResponse:
    settings, sessions = request.app[SETTINGS], request.app[SESSIONS].sessions
    if not _token_ok(settings, request):
        raise web.HTTPUnauthorized(
            text="missing or wrong token: connect to /ws?token=<token printed by voxgate serve>"
        )
    if len(sessions) >= settings.max_sessions:
        raise web.HTTPServiceUnavailable(text=f"server full ({settings.max_sessions} sessions)")
    ws = web.WebSocketResponse(max_msg_size=WS_HARD_LIMIT, heartbeat=30)
    await ws.prepare(request)
    session = BinaryProtocolSession(request.app[ENGINES], ws.send_bytes, settings.base_config)
    limiter = AudioRateLimiter(INPUT_RATE)

    async def handle(msg: WSMessage, now: float) -> bool:
        return await _on_socket_message(ws, session, limiter, msg, now)

    await _run_socket(request, ws, session, handle)
    return ws


async def realtime_socket(request: web.Request) -> web.StreamResponse:
    """The OpenAI Realtime API (docs/realtime.md): ``/v1/realtime?model=<persona>``."""
    settings, sessions = request.app[SETTINGS], request.app[SESSIONS].sessions
    if not _token_ok(settings, request):
        raise web.HTTPUnauthorized(
            text="missing or wrong token: send 'Authorization: Bearer <token printed by "
            "voxgate serve>' (the openai SDK's api_key) or ?token=<token>"
        )
    if len(sessions) >= settings.max_sessions:
        raise web.HTTPServiceUnavailable(text=f"server full ({settings.max_sessions} sessions)")
    beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "").replace(" ", "")
    beta = beta or BETA_SUBPROTOCOL in _subprotocols(request)
    ws = web.WebSocketResponse(max_msg_size=WS_HARD_LIMIT, heartbeat=30, protocols=("realtime",))
    await ws.prepare(request)
    conn = RealtimeConnection(
        request.app[ENGINES],
        ws.send_str,
        settings.base_config,
        beta=beta,
        send_stall_s=SEND_STALL_S,
    )
    # Counted from now: opening loads a VAD, and concurrent opens must not pass the cap.
    sessions.add(conn)
    request.app[SESSIONS].sockets.add(ws)
    try:
        await conn.start(request.query.get("model"))
    except (KeyError, ValueError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        conn.error("invalid_model", str(message))
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                await conn.outbox.flush()
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unknown model")
        except TimeoutError:
            _abort(request)
        finally:
            await conn.close()
            sessions.discard(conn)
            request.app[SESSIONS].sockets.discard(ws)
        return ws

    async def handle(msg: WSMessage, now: float) -> bool:
        return await _on_realtime_message(conn, msg)

    # The connection bounds its own sends (a transcription may outlast SEND_STALL_S).
    await _run_socket(request, ws, conn, handle, bound_handling=False)
    return ws


async def _on_realtime_message(conn: RealtimeConnection, msg: WSMessage) -> bool:
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return False
    if msg.type is WSMsgType.BINARY:
        conn.error("invalid_event", "send JSON text events (docs/realtime.md), not binary")
        await conn.outbox.flush()
        return True
    if msg.type is not WSMsgType.TEXT:
        return True
    try:
        await conn.on_text(msg.data)
    except ConnectionResetError:
        raise
    except Exception:  # a bug hit by one event costs that event, not the session
        log.exception("session %s failed on an event", conn.id)
        conn.error("internal", "the server failed on this event (see its log); go on")
        await conn.outbox.flush()
    return True


async def _run_socket(
    request: web.Request,
    ws: web.WebSocketResponse,
    session: Connection,
    handle: Callable[[WSMessage, float], Awaitable[bool]],
    bound_handling: bool = True,
) -> None:
    """Read ``ws`` until it closes or a deadline passes; ``session`` closes after."""
    settings, sessions = request.app[SETTINGS], request.app[SESSIONS].sessions
    sessions.add(session)
    request.app[SESSIONS].sockets.add(ws)
    log.info("session %s opened from %s", session.id, request.remote)
    opened = last_heard = time.monotonic()
    try:
        while True:
            deadline = _read_deadline(settings, session, opened, last_heard)
            msg = await _receive_until(ws, deadline)
            if msg is None:
                await _close_silent(request, ws, session, settings)
                break
            last_heard = time.monotonic()
            # Answering waits for the client to take what is sent; one that stops reading
            # must not park this loop (and its slot) beyond the deadlines.
            limit: float | None = SEND_STALL_S if session.ready else max(deadline - last_heard, 1.0)
            if not bound_handling:
                limit = None
            try:
                async with asyncio.timeout(limit):
                    go_on = await handle(msg, last_heard)
            except TimeoutError:
                log.warning("session %s: the client stopped reading; dropped", session.id)
                _abort(request)
                break
            if not go_on:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        request.app[SESSIONS].sockets.discard(ws)
        try:
            await session.close()
        finally:  # the slot is free (and /healthz counts it gone) once the close is done
            sessions.discard(session)
        log.info("session %s closed", session.id)
        if settings.release_memory:
            request.app[MEMORY_RELEASE].soon()


async def _on_socket_message(
    ws: web.WebSocketResponse,
    session: BinaryProtocolSession,
    limiter: AudioRateLimiter,
    msg: WSMessage,
    now: float,
) -> bool:
    """One WebSocket message; False when the socket is done."""
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        return False
    if msg.type is WSMsgType.ERROR:
        log.warning("session %s socket error: %s", session.id, ws.exception())
        return False
    if msg.type is WSMsgType.TEXT:
        session.error("text_message", "send binary frames (docs/protocol.md), not text")
        await session.outbox.flush()
        return True
    if msg.type is not WSMsgType.BINARY:
        return True
    # Audio far faster than real time is dropped here, before it costs VAD and
    # decodes that would starve the other sessions (docs/protocol.md, rate_limited).
    admission = limiter.admit(audio_samples(msg.data), now)
    if admission in (Admission.DROP_REPORT, Admission.ACCEPT_REPORT):
        session.error("rate_limited", limiter.report())
    if admission in (Admission.DROP, Admission.DROP_REPORT):
        await session.outbox.flush()
        return True
    try:
        await session.on_message(msg.data)
    except CloseSession as exc:
        await ws.close(code=exc.code, message=str(exc).encode())
        return False
    except ConnectionResetError:
        raise
    except Exception:
        # A bug hit by one message costs that message, not the session.
        log.exception("session %s failed on a message", session.id)
        session.error(
            "internal", "the server failed on this message (see its log); the session goes on"
        )
    return True


def _abort(request: web.Request) -> None:
    """Drop the connection now: a close handshake would wait on a peer that does not read."""
    if request.transport is not None:
        request.transport.abort()


def _read_deadline(
    settings: GatewaySettings, session: Connection, opened: float, last_heard: float
) -> float:
    """Until hello, the handshake deadline counts from the upgrade (sending other frames
    does not extend it); after it, the idle deadline from the last message."""
    timeout, since = (
        (settings.handshake_timeout_s, opened)
        if not session.ready
        else (settings.idle_timeout_s, last_heard)
    )
    return since + timeout if timeout > 0 else float("inf")


async def _receive_until(ws: web.WebSocketResponse, deadline: float) -> WSMessage | None:
    """The next message, or None once ``deadline`` passed. The bound is outside
    ``receive``: its own timeout restarts at every heartbeat pong."""
    if deadline == float("inf"):
        return await ws.receive()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    try:
        async with asyncio.timeout(remaining):
            return await ws.receive()
    except TimeoutError:
        return None


async def _close_silent(
    request: web.Request,
    ws: web.WebSocketResponse,
    session: Connection,
    settings: GatewaySettings,
) -> None:
    if session.ready:
        code, reason = WSCloseCode.GOING_AWAY, "idle"
        session.error(
            "idle_timeout",
            f"nothing received for {settings.idle_timeout_s:g} s; the session is closed "
            "(reconnect to go on)",
        )
    else:
        code, reason = WSCloseCode.POLICY_VIOLATION, "no hello"
        session.error(
            "handshake_timeout",
            f"no hello within {settings.handshake_timeout_s:g} s of connecting; send the "
            "EVENT hello first (docs/protocol.md)",
        )
    log.info("session %s closed: %s", session.id, reason)
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await session.outbox.flush()
            await ws.close(code=code, message=reason.encode())
    except TimeoutError:  # the peer reads nothing: the error and the close cannot go out
        _abort(request)


async def _close_sessions(app: web.Application) -> None:
    # Going away (1001) ends each socket's read loop, whose handler then closes its session.
    going_away = WSCloseCode.GOING_AWAY
    closing = [ws.close(code=going_away, message=b"shutting down") for ws in app[SESSIONS].sockets]
    await asyncio.gather(*closing, return_exceptions=True)
    for session in list(app[SESSIONS].sessions):
        await session.close()


def create_app(engines: Engines, settings: GatewaySettings) -> web.Application:
    app = web.Application(middlewares=[host_guard])
    app[ENGINES] = engines
    app[SETTINGS] = settings
    app[SESSIONS] = LiveSessions()
    app[MEMORY_RELEASE] = MemoryRelease()
    app.router.add_get("/", index)
    app.router.add_get("/ws", voice_socket)
    app.router.add_get("/v1/realtime", realtime_socket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/{name}", static_file)
    app.on_shutdown.append(_close_sessions)
    app.on_cleanup.append(lambda app: app[MEMORY_RELEASE].close())
    app.on_response_prepare.append(no_referrer)
    return app


def _resolve_token(args: argparse.Namespace) -> str | None:
    if args.no_token:
        return None
    return args.token or os.environ.get("VOXGATE_TOKEN") or secrets.token_urlsafe(16)


async def serve(args: argparse.Namespace) -> None:
    try:
        warnings = exposure_warnings(args.host, args.no_token, args.no_token_on_network)
    except ValueError as exc:
        raise SystemExit(f"voxgate: {exc}") from None
    for warning in warnings:
        print(f"voxgate: WARNING: {warning}", file=sys.stderr, flush=True)
    trace = (
        Path(args.trace)
        if args.trace
        else Path("runs") / f"trace-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    )
    from voxgate.models.assets import llm_choice

    llm_title = "remote LLM" if args.llm_url else llm_choice(args.model).title
    print(f"voxgate: loading models (Whisper tiny.en, {llm_title}, Piper joe)...", flush=True)
    started = time.perf_counter()
    engines = load_default_engines(
        personas_dir=Path(args.personas_dir) if args.personas_dir else None,
        default_persona=args.persona,
        llm_url=args.llm_url,
        llm_model=args.llm_model,
        llm_api_key=args.llm_api_key or os.environ.get("VOXGATE_LLM_API_KEY") or None,
        llm_slots=args.llm_slots,
        llm_capabilities=LLMCapabilities(
            vision=args.llm_vision,
            audio_in=args.llm_audio_in,
            audio_out=args.llm_audio_out,
            voice=args.llm_voice,
        ),
        trace_path=trace,
        model=args.model,
    )
    engines.record_turn_events = args.trace_turn_events
    print("voxgate: warming up (the first call of each model is slow)...", flush=True)
    try:
        await engines.warm()
    except (RuntimeError, ValueError) as exc:  # a tool or MCP server that cannot start
        await engines.close()
        raise SystemExit(f"voxgate: {exc}") from None
    print(f"voxgate: models ready in {time.perf_counter() - started:.1f} s", flush=True)
    token = _resolve_token(args)
    try:
        # IP literals are always accepted; a host name to listen on names this server.
        named = [] if is_ip_literal(args.host) else [args.host]
        hosts = HostPolicy.build(hosts=[*named, *args.allow_host], origins=args.allow_origin)
    except ValueError as exc:
        raise SystemExit(f"voxgate: {exc}") from None
    settings = GatewaySettings(
        token=token,
        hosts=hosts,
        base_config=sequential_config() if args.sequential else SessionConfig(),
        handshake_timeout_s=args.handshake_timeout,
        idle_timeout_s=args.idle_timeout,
        metrics_token=args.metrics_token or os.environ.get("VOXGATE_METRICS_TOKEN") or None,
        metrics_open=is_loopback(args.host),
    )
    runner = web.AppRunner(create_app(engines, settings), handle_signals=False, **runner_options())
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    url = f"http://{args.host}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"voxgate: serving on {url}", flush=True)
    print(f"voxgate: trace -> {trace}", flush=True)
    if args.open:
        with contextlib.suppress(Exception):
            webbrowser.open(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("voxgate: shutting down", flush=True)
    await runner.cleanup()
    await engines.close()


def cli_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=os.environ.get("VOXGATE_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        print(f"voxgate: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
