"""Drive headless Chromium over the Chrome DevTools Protocol (CDP), no extra deps.

Just enough CDP for the e2e tests: start Chromium with a fake microphone fed
from a WAV file, open one page, evaluate JavaScript, collect exceptions and
console errors, take screenshots. Talks to the page target's WebSocket with
aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    """$VOXGATE_CHROMIUM, else Debian's /usr/bin/chromium (or a close relative)."""
    explicit = os.environ.get("VOXGATE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def padded_wav(source: Path, target: Path, lead_s: float = 0.5, tail_s: float = 6.0) -> Path:
    """Copy a PCM16 WAV with silence around it.

    Chromium plays the fake capture file once (``%noloop``); the trailing
    silence is what lets the server's VAD see the end of speech.
    """
    with wave.open(str(source), "rb") as src:
        params = src.getparams()
        frames = src.readframes(params.nframes)
    bytes_per_second = params.framerate * params.nchannels * params.sampwidth
    block = params.nchannels * params.sampwidth

    def silence(seconds: float) -> bytes:
        return b"\x00" * (int(seconds * bytes_per_second) // block * block)

    with wave.open(str(target), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(silence(lead_s) + frames + silence(tail_s))
    return target


class CDPError(RuntimeError):
    pass


class Page:
    """One page target: commands by id, events collected as they arrive."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.exceptions: list[str] = []
        self.console: list[tuple[str, str]] = []  # (level, text)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future and not future.done():
                    future.set_result(data)
            else:
                self._on_event(data["method"], data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CDPError("DevTools connection closed"))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            self.exceptions.append(str(description))
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append((params["type"], text))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append((entry["level"], f"{entry.get('url', '')}: {entry['text']}"))

    @property
    def console_errors(self) -> list[str]:
        return [text for level, text in self.console if level == "error"]

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(
        self, expression: str, *, await_promise: bool = False, user_gesture: bool = False
    ) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
            userGesture=user_gesture,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(details.get("exception", {}).get("description") or details["text"])
        return result["result"].get("value")

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", timeout=timeout)

    async def wait_for(self, expression: str, timeout: float, interval: float = 0.25) -> Any:
        """Poll until the expression is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for: {expression}")
            await asyncio.sleep(interval)

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Chromium:
    """``async with Chromium(...) as page:`` a headless browser with one open page."""

    def __init__(
        self,
        executable: str,
        profile_dir: Path,
        *,
        fake_audio: Path | None = None,
        window: tuple[int, int] = (1000, 900),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.executable = executable
        self.profile_dir = profile_dir
        self.fake_audio = fake_audio
        self.window = window
        self.extra_args = list(extra_args)
        self.log_path = profile_dir.parent / f"{profile_dir.name}-chromium.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._page: Page | None = None

    def args(self) -> list[str]:
        args = [
            "--headless=new",
            "--no-sandbox",  # root in a container: the sandbox cannot start
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={self.profile_dir}",
            "--remote-debugging-port=0",  # Chromium picks; read from DevToolsActivePort
            f"--window-size={self.window[0]},{self.window[1]}",
            "--use-fake-ui-for-media-stream",  # grant the mic without a prompt
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
        ]
        if self.fake_audio is not None:
            args.append(f"--use-file-for-fake-audio-capture={self.fake_audio}%noloop")
        return [*args, *self.extra_args, "about:blank"]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def __aenter__(self) -> Page:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self.executable, *self.args(), stdout=log, stderr=log
            )
        try:
            port = await self._devtools_port(timeout=30.0)
            self._http = aiohttp.ClientSession()
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            ws = await self._http.ws_connect(page_url, max_msg_size=0)
            self._page = Page(ws)
            for domain in ("Runtime", "Page", "Log"):
                await self._page.send(f"{domain}.enable")
            return self._page
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def _devtools_port(self, timeout: float) -> int:
        marker = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise RuntimeError(f"Chromium exited early:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            await asyncio.sleep(0.1)
        raise TimeoutError(f"Chromium did not open DevTools in {timeout} s:\n{self.log_tail()}")

    async def __aexit__(self, *exc: object) -> None:
        if self._page is not None:
            with contextlib.suppress(Exception):
                await self._page.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
