"""Faults and bad input: nothing takes the server down, nothing outlives a session.

The in-process tests run the real gateway app with the real Whisper and Piper. The LLM
is ``FaultInjectingLLM``: an OpenAI-compatible server started here (a real HTTP peer the
``--llm-url`` engine talks to over TCP) that fails the requests a test picks: cut the
stream mid-way, answer HTTP 500, stream slowly, or stop listening. STT and TTS faults
come from wrappers around the real engines that raise while a test says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from tests.served_app import serving
from tests.server_process import free_port, running_server
from voxgate.audio.pcm import FloatArray, Int16Array, float_to_pcm16
from voxgate.bench.conversation import build_conversation
from voxgate.client.converse import RATE, TurnResult, VoiceClient, with_token
from voxgate.engines import Engines, load_default_engines
from voxgate.personas.persona import VoiceSpec
from voxgate.protocol.frames import FrameType, encode, encode_event
from voxgate.scheduler import Priority
from voxgate.stt.base import STTEngine, STTError
from voxgate.transport.server import SESSIONS, GatewaySettings, create_app
from voxgate.tts.base import TTSEngine, TTSError

pytestmark = [pytest.mark.models, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "fault-token"
REPLY = "Sure. I can help with that, and we will sort it out together."
LONG_REPLY = " ".join(["Let me tell you a long story, one clause at a time."] * 6)
# Fillers would add acknowledgment audio to the replies these tests inspect.
NO_FILLERS = {"fillers": False}


# -- fault injection ----------------------------------------------------------------


class FaultInjectingLLM:
    """An OpenAI-compatible ``/v1/chat/completions`` on its own thread and loop.

    ``faults`` maps a word of the user's last message to a fault: ``drop`` (the
    connection is cut after two tokens), ``http_500``, ``slow`` (a long reply, 60 ms
    per word). ``down()``/``up()`` stop and restart listening on the same port.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []  # (user's last message, fault applied)
        self.client_gone = 0  # streams the client closed before the end
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-llm", daemon=True
        )
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._call(self._start())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()

    async def _stop_listening(self) -> None:
        assert self._site is not None
        await self._site.stop()

    def down(self) -> None:
        self._call(self._stop_listening())

    def up(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        assert self._runner is not None
        self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def fault_for(self, text: str) -> str:
        for word, fault in self.faults.items():
            if word in text.lower():
                return fault
        return "none"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        last = users[-1] if users else ""
        fault = self.fault_for(last)
        self.requests.append((last, fault))
        if fault == "http_500":
            return web.json_response({"error": "injected fault"}, status=500)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.force_close()  # no pooled connections survive a down()
        await response.prepare(request)
        words = (LONG_REPLY if fault == "slow" else REPLY).split(" ")
        words = words[: int(body.get("max_tokens") or len(words))]
        try:
            for i, word in enumerate(words):
                if fault == "drop" and i == 2:
                    assert request.transport is not None
                    request.transport.close()  # the backend dies mid-stream
                    return response
                delta = {"content": word if i == 0 else " " + word}
                await self._event(response, {"choices": [{"delta": delta, "finish_reason": None}]})
                if fault == "slow":
                    await asyncio.sleep(0.06)
            await self._event(
                response,
                {
                    "choices": [{"delta": {}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(words)},
                },
            )
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            self.client_gone += 1
        return response

    @staticmethod
    async def _event(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())


class FaultInjectingSTT:
    """The real STT; while ``fail_with`` is set, every call raises that instead."""

    def __init__(self, real: STTEngine) -> None:
        self.real = real
        self.name = real.name
        self.sample_rate = real.sample_rate
        self.fail_with: type[Exception] | None = None

    async def warm(self) -> None:
        await self.real.warm()

    async def transcribe(self, audio: FloatArray, priority: Priority) -> str:
        if self.fail_with is not None:
            raise self.fail_with("injected STT fault")
        return await self.real.transcribe(audio, priority)

    async def close(self) -> None:
        await self.real.close()


class FaultInjectingTTS:
    """The real TTS; while ``fail_with`` is set, every call raises that instead."""

    def __init__(self, real: TTSEngine) -> None:
        self.real = real
        self.name = real.name
        self.sample_rate = real.sample_rate
        self.fail_with: type[Exception] | None = None

    async def warm(self) -> None:
        await self.real.warm()

    async def synthesize(self, text: str, voice: VoiceSpec, priority: Priority) -> Int16Array:
        if self.fail_with is not None:
            raise self.fail_with("injected TTS fault")
        return await self.real.synthesize(text, voice, priority)

    async def close(self) -> None:
        await self.real.close()


# -- fixtures -----------------------------------------------------------------------


@dataclass
class Gateway:
    app: web.Application
    engines: Engines
    port: int
    stt: FaultInjectingSTT
    tts: FaultInjectingTTS

    @property
    def ws_url(self) -> str:
        return with_token(f"ws://127.0.0.1:{self.port}/ws", TOKEN)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def fault_llm() -> Iterator[FaultInjectingLLM]:
    server = FaultInjectingLLM()
    yield server
    server.close()


@pytest.fixture(scope="module")
def speech() -> dict[str, FloatArray]:
    return {u.label: u.audio for u in build_conversation(turns=8)}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    fault_llm: FaultInjectingLLM, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    workdir = tmp_path_factory.mktemp("faults")
    engines = load_default_engines(
        llm_url=fault_llm.url,
        trace_path=workdir / "trace.jsonl",
        memory_path=workdir / "memory.sqlite3",
    )
    await engines.warm()
    stt, tts = FaultInjectingSTT(engines.stt), FaultInjectingTTS(engines.tts)
    engines.stt, engines.tts = stt, tts
    app = create_app(engines, GatewaySettings(token=TOKEN))
    async with serving(app) as url:
        yield Gateway(app, engines, int(url.rsplit(":", 1)[1]), stt, tts)
    await engines.close()


@pytest.fixture(autouse=True)
def no_faults_left(fault_llm: FaultInjectingLLM) -> Iterator[None]:
    yield
    fault_llm.faults = {}


async def connect(http: aiohttp.ClientSession, gateway: Gateway) -> VoiceClient:
    ws = await http.ws_connect(gateway.ws_url, max_msg_size=0)
    client = VoiceClient(ws)
    await client.handshake(config=NO_FILLERS)
    await ws.send_bytes(encode(FrameType.AUDIO_START))
    return client


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def speak_until_error(client: VoiceClient, audio: FloatArray, timeout: float = 30) -> str:
    """Stream an utterance, then silence until an ERROR frame arrives (no DONE comes)."""
    before = len(client.errors)
    await client.stream(audio)
    arrived = asyncio.Event()

    async def watch() -> None:
        await wait_for(lambda: len(client.errors) > before, timeout, "an ERROR frame")
        arrived.set()

    watcher = asyncio.create_task(watch())
    await client.silence_until(arrived, timeout)
    await watcher
    return client.errors[before]


def served(result: TurnResult) -> bool:
    return not result.errors and bool(result.reply.strip()) and len(result.reply_audio) > 0


async def sessions_open(http: aiohttp.ClientSession, base_url: str) -> int:
    async with http.get(f"{base_url}/healthz") as response:
        return int((await response.json())["sessions"])


# -- LLM backend faults ---------------------------------------------------------------


async def test_llm_cut_mid_stream_fails_that_turn_only(
    gateway: Gateway, fault_llm: FaultInjectingLLM, speech: dict[str, FloatArray]
) -> None:
    fault_llm.faults = {"ever": "drop"}  # "Ever tried." (Whisper may hear "try it")
    async with aiohttp.ClientSession() as http:
        victim, bystander = await connect(http, gateway), await connect(http, gateway)
        failed, other = await asyncio.gather(
            victim.turn(speech["beckett-1"], timeout=60),
            bystander.turn(speech["beckett-3"], timeout=60),
        )
        assert any(f == "drop" for _, f in fault_llm.requests), (fault_llm.requests, failed)
        llm_errors = [e for e in failed.errors if e.startswith("llm_failed")]
        assert llm_errors, failed.errors
        assert "mid-stream" in llm_errors[0] or "before finishing" in llm_errors[0]
        assert failed.metrics.get("type") == "metrics"  # the turn was closed properly
        # The words generated before the cut were still spoken, nothing after them.
        assert failed.reply.strip() == " ".join(REPLY.split(" ")[:2])
        # A second session at the same time never noticed.
        assert served(other), other.errors
        assert other.reply.strip() == REPLY
        # The next turn on the same socket is served normally.
        fault_llm.faults = {}
        again = await victim.turn(speech["beckett-4"], timeout=60)
        assert served(again), again.errors
        assert again.reply.strip() == REPLY
        await victim.close()
        await bystander.close()


async def test_llm_backend_down_then_back(
    gateway: Gateway, fault_llm: FaultInjectingLLM, speech: dict[str, FloatArray]
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        fault_llm.down()
        try:
            failed = await client.turn(speech["beckett-3"], timeout=60)
        finally:
            fault_llm.up()
        assert any(e.startswith("llm_failed") and "cannot connect" in e for e in failed.errors), (
            failed.errors
        )
        fault_llm.faults = {"again": "http_500"}
        refused = await client.turn(speech["beckett-4"], timeout=60)
        assert any(e.startswith("llm_failed") and "HTTP 500" in e for e in refused.errors), (
            refused.errors
        )
        fault_llm.faults = {}
        again = await client.turn(speech["beckett-6"], timeout=60)
        assert served(again), again.errors
        await client.close()


# -- STT / TTS faults ------------------------------------------------------------------


async def test_tts_failure_fails_the_turn_and_the_next_is_served(
    gateway: Gateway, speech: dict[str, FloatArray]
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        gateway.tts.fail_with = TTSError
        try:
            failed = await client.turn(speech["beckett-3"], timeout=60)
        finally:
            gateway.tts.fail_with = None
        assert any(e.startswith("tts_failed") and "injected" in e for e in failed.errors), (
            failed.errors
        )
        assert not failed.reply_audio
        assert failed.metrics.get("type") == "metrics"
        again = await client.turn(speech["beckett-4"], timeout=60)
        assert served(again), again.errors
        await client.close()


@pytest.mark.parametrize("error", [STTError, RuntimeError])
async def test_stt_failure_is_reported_and_the_next_turn_is_served(
    gateway: Gateway, speech: dict[str, FloatArray], error: type[Exception]
) -> None:
    """STTError is the engine contract; a RuntimeError stands for an engine that breaks it."""
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        gateway.stt.fail_with = error
        try:
            message = await speak_until_error(client, speech["beckett-3"])
        finally:
            gateway.stt.fail_with = None
        assert message.startswith("stt_failed") and "injected" in message, message
        assert not any(e.get("type") == "turn_start" for e in client.events)
        again = await client.turn(speech["beckett-4"], timeout=60)
        assert served(again), again.errors
        await client.close()


# -- clients that vanish ---------------------------------------------------------------


def vanish(client: VoiceClient) -> None:
    """The client's process dies: its socket goes away without a WebSocket close."""
    sock = client.ws.get_extra_info("socket")
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)


def worker_threads() -> set[int]:
    # asyncio's default executor (asyncio_N) keeps idle threads for getaddrinfo and
    # the like; they are pooled, not per session, so they are left out.
    return {t.ident or 0 for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def test_client_vanishing_mid_reply_leaves_nothing_behind(
    gateway: Gateway, fault_llm: FaultInjectingLLM, speech: dict[str, FloatArray]
) -> None:
    async with aiohttp.ClientSession() as http:
        # A complete turn first, so every lazily started engine thread exists already.
        warm = await connect(http, gateway)
        assert served(await warm.turn(speech["beckett-3"], timeout=60))
        await warm.close()
        await wait_for(lambda: len(gateway.app[SESSIONS]) == 0, 10, "the warm-up session")
    tasks_before = asyncio.all_tasks()
    threads_before = worker_threads()
    gone_before = fault_llm.client_gone

    fault_llm.faults = {"again": "slow"}  # a long reply, still streaming when the client dies
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        turn = asyncio.create_task(client.turn(speech["beckett-4"], timeout=60))
        await wait_for(
            lambda: bool(client.turns) and client.turns[-1].first_audio_wall is not None,
            60,
            "the reply to start streaming",
        )
        vanish(client)
        turn.cancel()
        await asyncio.gather(turn, return_exceptions=True)
        await wait_for(lambda: len(gateway.app[SESSIONS]) == 0, 10, "the session to close")
        assert await sessions_open(http, gateway.http_url) == 0
        await client.close()
    await asyncio.sleep(0.5)  # connection handlers finish after the session closed

    leftover = asyncio.all_tasks() - tasks_before - {asyncio.current_task()}
    assert not leftover, sorted(t.get_name() for t in leftover)
    assert worker_threads() <= threads_before
    # The LLM stream was closed, not left generating for nobody.
    await wait_for(lambda: fault_llm.client_gone > gone_before, 5, "the LLM stream to close")
    # And the server still serves: nothing (the compute gate, a thread) was left stuck.
    async with aiohttp.ClientSession() as http:
        fault_llm.faults = {}
        after = await connect(http, gateway)
        assert served(await after.turn(speech["beckett-6"], timeout=60))
        await after.close()


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 44100, 16000.5, "16000", True, None])
async def test_wrong_sample_rate_is_refused_and_closed(gateway: Gateway, rate: Any) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway.ws_url) as ws:
        await ws.send_bytes(encode_event({"type": "hello", "protocol": 1, "sample_rate": rate}))
        frames = [m.data async for m in ws if m.type is aiohttp.WSMsgType.BINARY]
        assert ws.close_code == 1002
    assert frames and frames[0][0] == FrameType.ERROR
    assert frames[0][2:].decode().startswith("bad_sample_rate")


async def next_error(client: VoiceClient, before: int) -> str:
    await wait_for(lambda: len(client.errors) > before, 10, "an ERROR frame")
    return client.errors[before]


async def test_malformed_input_gets_clear_errors_and_the_session_goes_on(
    gateway: Gateway, speech: dict[str, FloatArray]
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        bad = {
            encode(FrameType.AUDIO_CHUNK, b"\x00\x01\x02"): "odd_pcm",
            # Over the frame limit: the decoder's error, not the rate limiter's.
            encode(FrameType.AUDIO_CHUNK, bytes(2 * (1 << 20))): "oversized",
            # Within it, but 32 s of audio in one chunk: far faster than real time.
            encode(FrameType.AUDIO_CHUNK, bytes((1 << 20) - 2)): "rate_limited",
            bytes([FrameType.EVENT, 0]) + b'{"type": "user_text", "text": "\xff\xfe"}': "bad_utf8",
            bytes([FrameType.LLM_CHUNK, 0]) + b"\xc3\x28": "bad_utf8",
            encode_event({"type": "config", "pad": "x" * 70_000}): "oversized",
            bytes([FrameType.EVENT, 0])
            + b'{"type": "config", "a": '
            + b"[" * 40
            + b"]" * 40
            + b"}": "too_deep",
            encode_event({"type": "user_text", "text": ""}): "bad_event",
        }
        for data, code in bad.items():
            before = len(client.errors)
            await client.ws.send_bytes(data)
            assert (await next_error(client, before)).startswith(code)
        # The same socket still holds a conversation.
        assert served(await client.turn(speech["beckett-3"], timeout=60))
        await client.close()


async def test_message_over_the_hard_limit_closes_the_connection(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(gateway.ws_url)
        try:
            await ws.send_bytes(encode(FrameType.AUDIO_CHUNK, bytes(5 * (1 << 20))))
            async for _ in ws:
                pass
            assert ws.close_code == 1009  # message too big, if the close frame got through
        except ConnectionError:
            pass  # or the server reset the connection while the client was still sending
        finally:
            await ws.close()
        await wait_for_sessions(http, gateway.http_url, 0)
        async with http.get(f"{gateway.http_url}/healthz") as response:
            assert response.status == 200


async def test_silence_and_flat_noise_are_not_turns(gateway: Gateway) -> None:
    rng = np.random.default_rng(0)
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        await client.stream(np.zeros(RATE * 2, dtype=np.float32))
        # Full-scale DC: the most extreme samples PCM16 carries, and no speech.
        await client.stream(np.ones(RATE, dtype=np.float32))
        await client.stream(np.full(RATE, -1.0, dtype=np.float32))
        await client.stream((rng.standard_normal(RATE) * 1e-4).astype(np.float32))
        await client.silence_until(asyncio.Event(), 1.5)
        await client.close()
    assert not client.errors
    assert not any(e.get("type") == "turn_start" for e in client.events)


async def test_clipped_speech_is_still_understood(
    gateway: Gateway, speech: dict[str, FloatArray]
) -> None:
    original = speech["beckett-4"]
    clipped = np.clip(original * 30.0, -1.0, 1.0).astype(np.float32)
    voiced = np.abs(original) > 0.02
    assert float(np.mean(np.abs(clipped[voiced]) >= 0.999)) > 0.5  # mostly flat-topped
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        result = await client.turn(clipped, timeout=60)
        await client.close()
    assert served(result), result.errors
    assert "again" in result.transcript.lower()


async def test_audio_flood_is_rate_limited_and_the_session_goes_on(
    gateway: Gateway, speech: dict[str, FloatArray]
) -> None:
    chunk = encode(FrameType.AUDIO_CHUNK, float_to_pcm16(np.zeros(320, dtype=np.float32)))
    async with aiohttp.ClientSession() as http:
        client = await connect(http, gateway)
        for _ in range(1500):  # 30 s of audio, as fast as the socket takes it
            await client.ws.send_bytes(chunk)
        await wait_for(
            lambda: any(e.startswith("rate_limited") for e in client.errors),
            10,
            "a rate_limited error",
        )
        # Paced audio after the window has passed is accepted and answered.
        await asyncio.sleep(2.5)
        before = len(client.errors)
        result = await client.turn(speech["beckett-3"], timeout=60)
        # Its first chunk reports the drops not reported yet: the only error allowed.
        others = [e for e in client.errors[before:] if not e.startswith("rate_limited")]
        assert not others and result.reply.strip() and len(result.reply_audio) > 0, others
        await client.close()
    # The reports add up to everything dropped (the probe saw "dropped 20 ms" for 2.2 s).
    limited = [e for e in client.errors if e.startswith("rate_limited")]
    since = [float(m) for e in limited for m in re.findall(r"dropped (\d+) ms", e)]
    total = float(re.findall(r"\((\d+) ms in this session\)", limited[-1])[0])
    assert total >= 20_000  # at most 6 s of the 30 s flood could be accepted
    assert sum(since) == pytest.approx(total, abs=len(since))


# -- shutdown -----------------------------------------------------------------------------


async def test_sigterm_with_sessions_open_exits_cleanly(
    fault_llm: FaultInjectingLLM,
    speech: dict[str, FloatArray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOXGATE_DATA", str(tmp_path))  # the server's memory store
    fault_llm.faults = {"": "slow"}  # every reply streams for a while
    with running_server("--llm-url", fault_llm.url, token=TOKEN) as server:
        async with aiohttp.ClientSession() as http:
            url = with_token(server.ws_url, TOKEN)
            # A client that vanishes mid-reply: the real server drops its session too.
            ghost = VoiceClient(await http.ws_connect(url))
            await ghost.handshake(config=NO_FILLERS)
            ghost_turn = asyncio.create_task(ghost.turn(speech["beckett-3"], timeout=60))
            await wait_for(
                lambda: bool(ghost.turns) and ghost.turns[-1].first_audio_wall is not None,
                90,
                "the ghost's reply",
            )
            vanish(ghost)
            ghost_turn.cancel()
            await asyncio.gather(ghost_turn, return_exceptions=True)
            await wait_for_sessions(http, server.http_url, 0)
            await ghost.close()
            # A client mid-turn when the server is told to stop.
            live = VoiceClient(await http.ws_connect(url))
            await live.handshake(config=NO_FILLERS)
            live_turn = asyncio.create_task(live.turn(speech["beckett-4"], timeout=60))
            await wait_for(
                lambda: bool(live.turns) and live.turns[-1].first_audio_wall is not None,
                60,
                "the live reply",
            )
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.process.wait, 15)
            took = time.monotonic() - started
            live_turn.cancel()
            await asyncio.gather(live_turn, return_exceptions=True)
            going_away = live.ws.close_code
            await live.close()
        log = server.log()
    assert code == 0, log[-3000:]
    assert took < 10, f"shutdown took {took:.1f} s"
    assert going_away == 1001  # the client was told the server is going away
    assert "Traceback" not in log, log[-3000:]
    assert "voxgate: shutting down" in log


async def wait_for_sessions(http: aiohttp.ClientSession, base_url: str, expected: int) -> None:
    deadline = time.monotonic() + 10
    while (count := await sessions_open(http, base_url)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz still reports {count} sessions")
        await asyncio.sleep(0.1)
