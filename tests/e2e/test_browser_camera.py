"""The browser client's camera in real headless Chromium: its fake camera (a moving test
pattern, from ``--use-fake-device-for-media-stream``) and a fake microphone playing
Beckett. The page is served by the real gateway app in this process; its STT, LLM and TTS
are fakes (tests/fakes.py), so the test can read the prompts the session built. Checks
that frames are captured and shrunk in the page's worker, reach the server as IMAGE
frames at most about once a second, are described, and that a turn after that carries
the description in its prompt.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.browser import Chromium, find_chromium, padded_wav
from tests.fakes import FakeLLM, FakeSTT, FakeTTS, fake_engines
from tests.served_app import serving
from voxgate.config import SessionConfig
from voxgate.llm.base import ChatMessage
from voxgate.transport.server import GatewaySettings, create_app

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "tests" / "data" / "beckett.wav"

pytestmark = pytest.mark.browser


def said_camera(messages: list[ChatMessage]) -> bool:
    """The prompt has the camera's description just before the user's words."""
    return (
        len(messages) >= 2
        and messages[-1].role == "user"
        and messages[-2].content.startswith("The user's camera")
    )


async def wait_js(page: object, predicate: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await page.evaluate(f"Boolean({predicate})"):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            state = await page.evaluate(  # type: ignore[attr-defined]
                "JSON.stringify({state: voxgate.state, sent: voxgate.framesSent, "
                "skipped: voxgate.framesSkipped, camera: voxgate.camera.length, "
                "errors: voxgate.errors})"
            )
            raise AssertionError(f"timed out waiting for {predicate}: {state}")
        await asyncio.sleep(0.2)


async def test_camera_frames_reach_the_prompt(tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    llm = FakeLLM("I see a test pattern.")
    engines = fake_engines(FakeSTT(lambda seconds: "What do you see?"), llm, FakeTTS(5))
    settings = GatewaySettings(token=None, base_config=SessionConfig(fillers=False))
    wav = padded_wav(SPEECH, tmp_path / "speech.wav", lead_s=4.0)  # speech after the frames
    browser = Chromium(chromium, tmp_path / "profile", fake_audio=wav)
    async with serving(create_app(engines, settings)) as url, browser as page:
        await page.navigate(f"{url}/")
        await page.wait_for("window.voxgate && voxgate.state === 'idle'", timeout=10)
        await page.evaluate("document.querySelector('#toggle').click()", user_gesture=True)
        await wait_js(page, "voxgate.state === 'live'", 15)
        started = time.monotonic()
        await page.evaluate("document.querySelector('#camera').click()", user_gesture=True)
        await wait_js(page, "voxgate.camera.length >= 2", 20)
        elapsed = time.monotonic() - started
        sent = await page.evaluate("voxgate.framesSent")
        assert sent <= elapsed / 0.9 + 1, f"{sent} frames in {elapsed:.1f} s: over 1/s"
        seen = await page.evaluate("voxgate.camera[voxgate.camera.length - 1]")
        assert seen["description"].startswith("The user's camera shows")
        shown = await page.evaluate("document.querySelector('#camera-seen').textContent")
        assert shown == seen["description"]
        # The fake microphone's speech starts after the frames: its turn's prompt
        # has what the camera showed.
        for _ in range(150):
            if any(said_camera(r.messages) for r in llm.requests):
                break
            await asyncio.sleep(0.2)
        await page.evaluate("document.querySelector('#camera').click()", user_gesture=True)
        await wait_js(page, "document.querySelector('#camera-preview').hidden", 5)
        assert page.exceptions == [] and page.console_errors == []
    prompts = [r.messages for r in llm.requests]
    assert any(said_camera(m) for m in prompts), prompts[-1:]
