"""The browser client in real headless Chromium, mic faked from a WAV file.

Two tests:

* ``test_client_against_scripted_server``: the page against a tiny in-test
  server that speaks the protocol from a script (no models). Checks the
  handshake, the mic stream (frame size, 16 kHz real-time pace, not silent),
  the transcript/reply/waterfall rendering, playback at the right rate, the
  ``playback`` reports (protocol 2) and the flush on ``interrupted``.
* ``test_real_conversation``: the page against ``voxgate serve`` with the
  real models: Beckett's voice in, a final transcript on the page, reply
  audio received and played, and the server's ``metrics`` saying it used the
  page's playback reports.

Both write a screenshot to the test's tmp dir (path printed).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from tests.e2e.browser import Chromium, Page, find_chromium, padded_wav
from tests.server_process import ServerProcess, free_port, running_server
from voxgate.protocol.frames import (
    FLAG_FILLER,
    FLAG_FINAL,
    Frame,
    FrameType,
    decode,
    encode,
    encode_event,
    encode_text,
)

REPO = Path(__file__).resolve().parents[2]
WEB_DIR = REPO / "src" / "voxgate" / "web"
SPEECH = REPO / "tests" / "data" / "beckett.wav"
TOKEN = "e2e-test-token"
# Whisper tiny.en on beckett.wav: "Ever tried, ever failed. No matter. Try
# again. Fail again. Fail better." The server may end a turn at one of the
# pauses, so any two of these words count.
EXPECTED_WORDS = {"ever", "tried", "failed", "matter", "try", "again", "fail", "better"}

TURN_TIMEOUT_S = 120.0  # 2 shared CPU cores: STT + LLM + TTS cold start

pytestmark = pytest.mark.browser

STATE_JS = """JSON.stringify({
  state: voxgate.state,
  transcripts: voxgate.transcripts,
  replies: voxgate.replies,
  framesReceived: voxgate.framesReceived,
  samplesPlayed: voxgate.samplesPlayed,
  contextRate: voxgate.contextRate,
  metrics: voxgate.metrics.length,
  metricsPlayback: voxgate.metrics.map((m) => m.playback ?? null),
  protocol: voxgate.protocol,
  playedMs: voxgate.playedMs,
  errors: voxgate.errors,
  finalText: [...document.querySelectorAll('.transcript.final')]
    .map((e) => e.textContent).join(' '),
  replyText: [...document.querySelectorAll('.reply')].map((e) => e.textContent).join(' '),
  waterfallRows: document.querySelectorAll('.waterfall:not([hidden]) tbody tr').length,
})"""


async def page_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(await page.evaluate(STATE_JS))
    return state


async def wait_state(page: Page, ok: str, timeout: float) -> dict[str, Any]:
    """Poll window.voxgate until the JS predicate `ok` (over `s`) holds."""
    deadline = time.monotonic() + timeout
    while True:
        state = await page_state(page)
        if await page.evaluate(f"(s => Boolean({ok}))({json.dumps(state)})"):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {ok}; page state: {state}")
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    return path


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    source = SPEECH if SPEECH.exists() else Path("/work/shared/audio/beckett.wav")
    if not source.exists():
        pytest.skip("tests/data/beckett.wav missing")
    return padded_wav(source, tmp_path / "speech-padded.wav")


# ------------------------------------------------------------ scripted server


@dataclass
class ScriptedServer:
    """Serves the web client and answers one session from the test's script."""

    output_rate: int = 22050
    received: list[Frame] = field(default_factory=list)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (arrival, EVENT)
    hello: dict[str, Any] = field(default_factory=dict)
    token_seen: str | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ws: web.WebSocketResponse | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/ws", self.session)
        app.router.add_static("/", WEB_DIR)
        return app

    async def index(self, request: web.Request) -> web.Response:
        html = (WEB_DIR / "index.html").read_text().replace("{{VOXGATE_TOKEN}}", TOKEN)
        return web.Response(text=html, content_type="text/html")

    async def session(self, request: web.Request) -> web.WebSocketResponse:
        self.token_seen = request.query.get("token")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive_bytes()
        self.hello = decode(first).json()
        await ws.send_bytes(
            encode_event(
                {
                    "type": "welcome",
                    "protocol": self.hello.get("protocol"),
                    "session_id": "scripted",
                    "input_sample_rate": 16000,
                    "output_sample_rate": self.output_rate,
                    "max_frame_bytes": 1 << 20,
                }
            )
        )
        await ws.send_bytes(encode(FrameType.READY))
        self.ws = ws
        self.connected.set()
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                frame = decode(msg.data)
                self.received.append(frame)
                if frame.type is FrameType.EVENT:
                    self.events.append((time.monotonic(), frame.json()))
        self.ended.set()
        return ws

    async def send(self, *frames: bytes) -> None:
        assert self.ws is not None
        for frame in frames:
            await self.ws.send_bytes(frame)

    def chunks(self) -> list[Frame]:
        return [f for f in self.received if f.type is FrameType.AUDIO_CHUNK]

    def playback(self, turn: int) -> list[tuple[float, int]]:
        """(arrival time, played_ms) of the page's `playback` reports for `turn`."""
        return [
            (at, event["played_ms"])
            for at, event in self.events
            if event.get("type") == "playback" and event.get("turn") == turn
        ]


def tone(seconds: float, rate: int, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2").tobytes()


def tts_frames(pcm: bytes, chunk_bytes: int = 4410) -> list[bytes]:
    return [
        encode(FrameType.TTS_AUDIO, pcm[i : i + chunk_bytes])
        for i in range(0, len(pcm), chunk_bytes)
    ]


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedServer, str]]:
    server = ScriptedServer()
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_client_against_scripted_server(
    chromium: str, speech_wav: Path, tmp_path: Path, scripted: tuple[ScriptedServer, str]
) -> None:
    server, url = scripted
    browser = Chromium(chromium, tmp_path / "profile", fake_audio=speech_wav)
    async with browser as page:
        await page.navigate(url)
        await page.wait_for("window.voxgate && voxgate.state === 'idle'", timeout=10)
        await page.evaluate("document.querySelector('#toggle').click()", user_gesture=True)
        await asyncio.wait_for(server.connected.wait(), 15)
        assert server.token_seen == TOKEN
        assert server.hello == {"type": "hello", "protocol": 2, "sample_rate": 16000}
        assert (await wait_state(page, "s.state === 'live'", 10))["protocol"] == 2

        # Mic: 20 ms PCM16 frames at a 16 kHz real-time pace, carrying speech.
        await asyncio.sleep(1.0)  # past the preroll burst sent at READY
        before, t0 = len(server.chunks()), time.monotonic()
        await asyncio.sleep(3.0)
        pace = (len(server.chunks()) - before) / (time.monotonic() - t0)
        assert 40 <= pace <= 60, f"{pace:.1f} frames/s, expected 50 (20 ms frames)"
        chunks = server.chunks()
        assert server.received[0].type is FrameType.AUDIO_START
        assert {len(c.payload) for c in chunks} == {640}
        pcm = np.frombuffer(b"".join(c.payload for c in chunks), dtype="<i2").astype(float)
        assert np.sqrt(np.mean(pcm**2)) > 300, "the mic stream is (nearly) silent"

        # One scripted turn, metrics with a missing stage.
        reply_pcm = tone(0.5, server.output_rate)
        await server.send(
            encode_event({"type": "vad", "speaking": True, "audio_ms": 1000}),
            encode_text(FrameType.TRANSCRIPT, "ever tried"),
            encode_text(FrameType.TRANSCRIPT, "Ever tried, ever failed.", FLAG_FINAL),
            encode_event({"type": "turn_start", "turn": 1, "text": "Ever tried, ever failed."}),
            encode_event(
                {
                    "type": "tool",
                    "turn": 1,
                    "name": "current_time",
                    "arguments": {"timezone": "UTC"},
                    "outcome": "started",
                }
            ),
            encode_event(
                {
                    "type": "tool",
                    "turn": 1,
                    "name": "current_time",
                    "outcome": "ok",
                    "duration_ms": 3,
                    "result": "Wednesday 02 December 2026",
                }
            ),
            encode_event({"type": "tool", "turn": 1, "name": "slow", "outcome": "started"}),
            encode_event(
                {
                    "type": "tool",
                    "turn": 1,
                    "name": "slow",
                    "outcome": "timeout",
                    "duration_ms": 5000,
                }
            ),
            encode_text(FrameType.LLM_CHUNK, "Hmm.", FLAG_FILLER),
            encode_text(FrameType.LLM_CHUNK, "No matter. "),
            encode_text(FrameType.LLM_CHUNK, "Try again."),
            *tts_frames(reply_pcm),
            encode_event(
                {
                    "type": "metrics",
                    "turn": 1,
                    "timestamps": {
                        "speech_end": 5000,
                        "final_transcript": 5150,
                        "llm_first_token": 5300,
                        "first_audio_sent": 5480,
                    },
                    "durations": {
                        "endpointing": 400,
                        "stt": 150,
                        "llm_ttft": 400,  # speculative: began 100 ms before speech end
                        "tts_first_byte": None,
                        "voice_to_voice": 480,
                    },
                    "llm": {"prompt_tokens": 200, "reused_tokens": 180, "generated_tokens": 9},
                }
            ),
            encode(FrameType.DONE),
        )
        state = await wait_state(
            page, "s.waterfallRows === 5 && s.samplesPlayed >= 0.45 * s.contextRate", 10
        )
        assert state["finalText"] == "Ever tried, ever failed."
        assert state["transcripts"] == ["Ever tried, ever failed."]
        assert state["replies"] == ["No matter. Try again."]
        assert state["replyText"] == "Hmm. No matter. Try again."
        assert state["framesReceived"] == len(tts_frames(reply_pcm))
        await asyncio.sleep(0.5)  # everything queued has played by now
        played_s = (await page_state(page))["samplesPlayed"] / state["contextRate"]
        assert abs(played_s - 0.5) < 0.02, f"played {played_s:.3f} s of a 0.5 s reply"
        # Playback reports: as it plays (protocol: at least every 100 ms), rising, and
        # a final one at the end of the reply's audio.
        reports = server.playback(1)
        positions = [ms for _, ms in reports]
        assert len(reports) >= 5, reports
        assert positions == sorted(positions), reports
        assert abs(positions[-1] - 500) <= 20, reports
        gaps = sorted(b - a for (a, _), (b, _) in itertools.pairwise(reports))
        assert gaps[len(gaps) // 2] <= 0.11, f"median gap {gaps[len(gaps) // 2]:.3f} s"
        assert (await page_state(page))["playedMs"] == {"1": positions[-1]}
        # Speculative LLM work began before the end of speech: the axis shows where speech ended.
        assert await page.evaluate("document.querySelectorAll('.waterfall .zero').length") == 5
        # Tool calls in the turn's card: one line each, updated with what came of it.
        assert await page.evaluate(
            "[...document.querySelectorAll('.turn[data-turn=\"1\"] .tools li')]"
            ".map(e => e.textContent)"
        ) == [
            'current_time("timezone":"UTC") ok, 3 ms → Wednesday 02 December 2026',
            "slow() timeout, 5000 ms",
        ]
        assert await page.evaluate("voxgate.tools.length") == 4
        filler = await page.evaluate("document.querySelector('.reply .filler').textContent")
        assert filler == "Hmm."
        assert await page.evaluate("document.querySelector('#status').dataset.speaking") == "false"
        assert await page.evaluate(
            "[...document.querySelectorAll('.waterfall td.ms')].map(e => e.textContent)"
        ) == ["400 ms", "150 ms", "400 ms", "—", "480 ms"]
        await page.screenshot(tmp_path / "scripted.png")
        print(f"screenshot: {tmp_path / 'scripted.png'}")

        # Barge-in: a long reply, then `interrupted` must silence it at once.
        await server.send(
            encode_text(FrameType.TRANSCRIPT, "Try again.", FLAG_FINAL),
            encode_event({"type": "turn_start", "turn": 2, "text": "Try again."}),
            *tts_frames(tone(5.0, server.output_rate)),
        )
        start = (await page_state(page))["samplesPlayed"]
        await wait_state(page, f"s.samplesPlayed > {start} + 0.2 * s.contextRate", 5)
        interrupted_at = time.monotonic()
        await server.send(
            encode_event(
                {"type": "interrupted", "turn": 2, "played_ms": 100, "playback": "client"}
            ),
            # In flight when the server stopped: the interrupted turn's audio is not played.
            *tts_frames(tone(0.5, server.output_rate)),
        )
        await asyncio.sleep(0.3)
        stopped_at = (await page_state(page))["samplesPlayed"]
        await asyncio.sleep(0.5)
        assert (await page_state(page))["samplesPlayed"] == stopped_at
        assert stopped_at - start < 2.0 * state["contextRate"]
        assert await page.evaluate("document.querySelectorAll('.agent.interrupted').length") == 1
        # A final report after the flush, where playback stopped, and none after it.
        reports = server.playback(2)
        played_ms = (stopped_at - start) / state["contextRate"] * 1000
        assert reports and reports[-1][0] > interrupted_at, reports
        assert abs(reports[-1][1] - played_ms) <= 20, (reports, played_ms)
        await asyncio.sleep(0.3)
        assert server.playback(2) == reports

        # Errors from the server are shown.
        await server.send(encode_text(FrameType.ERROR, "llm_failed: scripted failure"))
        await wait_state(page, "s.errors.length === 1", 5)
        assert await page.evaluate("document.querySelector('#errors-panel').hidden") is False

        # Stop: AUDIO_END, then the socket closes.
        await page.evaluate("document.querySelector('#toggle').click()", user_gesture=True)
        await asyncio.wait_for(server.ended.wait(), 10)
        assert server.received[-1].type is FrameType.AUDIO_END
        assert (await page_state(page))["state"] == "idle"
        assert page.exceptions == []
        assert page.console_errors == []


# ------------------------------------------------------------ real server


@pytest.fixture
def voxgate_server() -> Iterator[ServerProcess]:
    with running_server(token=TOKEN) as server:
        try:
            yield server
        finally:
            # Shown by pytest only when the test fails.
            print(f"--- voxgate serve log ({server.log_path}) ---\n{server.log()[-6000:]}")


@pytest.mark.models
async def test_real_conversation(
    chromium: str, speech_wav: Path, tmp_path: Path, voxgate_server: ServerProcess
) -> None:
    browser = Chromium(chromium, tmp_path / "profile", fake_audio=speech_wav)
    async with browser as page:
        try:
            # The server serves the page only to holders of the token (as printed by serve).
            await page.navigate(f"{voxgate_server.http_url}/?token={TOKEN}")
            await page.wait_for("window.voxgate && voxgate.state === 'idle'", timeout=10)
            await page.evaluate("document.querySelector('#toggle').click()", user_gesture=True)
            state = await wait_state(
                page,
                "s.finalText.trim() && s.framesReceived > 0 && s.samplesPlayed > 0"
                " && s.waterfallRows > 0"
                # A reply that played out (the ones cut by the next sentence may not have
                # played a sample) ends with metrics saying the client's reports were used.
                " && s.metricsPlayback.includes('client')",
                TURN_TIMEOUT_S,
            )
        finally:
            await page.screenshot(tmp_path / "real.png")
            print(f"screenshot: {tmp_path / 'real.png'}")
            print(f"page exceptions: {page.exceptions}\nconsole: {page.console}")
            print(f"--- chromium log ---\n{browser.log_tail()}")
        print(f"page state: {state}")
        words = {w.strip(".,!?").lower() for w in state["finalText"].split()}
        assert len(words & EXPECTED_WORDS) >= 2, f"transcript {state['finalText']!r}"
        assert state["errors"] == []
        assert any(reply.strip() for reply in state["replies"]), "no reply text streamed"
        # Protocol 2: the page reported its playback and the server used it.
        assert state["protocol"] == 2
        assert state["playedMs"], "no playback reports sent"
        assert "client" in state["metricsPlayback"], state["metricsPlayback"]
        await page.evaluate("document.querySelector('#toggle').click()", user_gesture=True)
        await page.wait_for("voxgate.state === 'idle'", timeout=5)
        assert page.exceptions == []
        assert page.console_errors == []
