"""A session's camera: the newest frame wins, and what it shows is described when it
arrives (not when the user asks), in background time, so a turn only reads a sentence.

Frames that arrive while one is being described replace each other: only the newest is
described next. Text recognition, the slow part, runs only on a new view (the fingerprint
moved, or its text was never read) and only while the session has no live turn (the user
is not speaking, no reply is being made) and no other work wants the CPU; then it runs on
the camera's one thread, outside the compute gate, and leaves the other core to the
voice. Otherwise the last text stays if the view did not change, and none is claimed if
it did.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from voxgate.aio import cancel_and_wait
from voxgate.scheduler import ComputeGate
from voxgate.vision import ocr
from voxgate.vision.scene import (
    NOT_AN_IMAGE,
    BadImage,
    Scene,
    changed,
    describe_scene,
    load_frame,
    looks_like_image,
)

# A camera sends a frame a second; one silent this long has been switched off.
FRESH_S = 5.0
log = logging.getLogger("voxgate.vision")


@dataclass(frozen=True)
class Sighting:
    frame: int  # the frame's number in the session (1, 2, ...)
    description: str  # the sentence the prompt gets
    scene: Scene
    text: tuple[str, ...]  # lines read, if any
    at: float  # monotonic time it was ready
    jpeg: bytes  # the frame as shrunk, for a model that sees
    ms: dict[str, float] = field(default_factory=dict)  # per part: decode, scene, ocr
    text_read: bool = False  # OCR ran on this view (else its text is unknown, not absent)


# (image, scene, the JPEG as shrunk, ms per part) of one frame.
_Measured = tuple[Any, Scene, bytes, dict[str, float]]
# One thread for every session's frames: the CPU has 2 cores, and the voice comes first.
_CAMERA_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera")


def _measure(data: bytes) -> _Measured:
    """On the camera thread: decode and shrink, and the cheap measures of the view."""
    ms: dict[str, float] = {}
    started = time.perf_counter()
    image = load_frame(data)
    shrunk = io.BytesIO()
    image.save(shrunk, "JPEG", quality=85)  # type: ignore[attr-defined]
    ms["decode"] = round((time.perf_counter() - started) * 1000, 1)
    started = time.perf_counter()
    scene = describe_scene(image)
    ms["scene"] = round((time.perf_counter() - started) * 1000, 1)
    return image, scene, shrunk.getvalue(), ms


def describe(scene: Scene, text: tuple[str, ...]) -> str:
    """The hedged sentence a persona reads: what was measured, and nothing more. Short:
    every turn prefills it."""
    colours = " and ".join(scene.colours)
    sentence = (
        "The user's camera shows (an automatic guess from colours and text, may be wrong): "
        f"a {scene.brightness} view, mostly {colours}"
    )
    if text:
        sentence += "; text: " + ", ".join(f'"{line}"' for line in text)
    return sentence + "."


class CameraView:
    def __init__(
        self,
        gate: ComputeGate,
        on_seen: Callable[[Sighting], None],
        on_error: Callable[[str, str], None],
        *,
        read_text: bool = True,
        idle: Callable[[], bool] = lambda: True,
    ) -> None:
        """``read_text`` False: no OCR (a model that sees reads the frame itself).
        ``idle``: whether the session has no live turn now (the user is not speaking, no
        reply is being made): text is read only then."""
        self.idle = idle
        self.gate = gate
        self.on_seen, self.on_error = on_seen, on_error
        self.read_text = read_text and ocr.available()
        self.latest: Sighting | None = None
        self.frames = 0  # received
        self.superseded = 0  # replaced by a newer one before it was described
        self.text_skipped = 0  # new views whose text was not read: a live turn was busy
        self._pending: tuple[int, bytes] | None = None
        self._worker: asyncio.Task[None] | None = None

    def submit(self, data: bytes) -> None:
        """A frame from the client (JPEG or PNG bytes). Never waits."""
        self.frames += 1
        if not looks_like_image(data):  # told now: a newer frame must not hide it
            self.on_error("bad_image", f"frame {self.frames}: {NOT_AN_IMAGE}")
            return
        if self._pending is not None:
            self.superseded += 1
        self._pending = (self.frames, data)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="camera")

    def fresh(self, now: float | None = None) -> Sighting | None:
        """The newest frame and its description, if recent."""
        now = time.monotonic() if now is None else now
        if self.latest is None or now - self.latest.at > FRESH_S:
            return None
        return self.latest

    def description(self, now: float | None = None) -> str | None:
        """What the camera shows, if it was described recently."""
        sighting = self.fresh(now)
        return sighting.description if sighting is not None else None

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending is not None:
            number, data = self._pending
            self._pending = None
            try:
                frame = await loop.run_in_executor(_CAMERA_THREAD, _measure, data)
                sighting = await self._read(loop, number, frame)
            except BadImage as exc:
                self.on_error("bad_image", f"frame {number}: {exc}")
                continue
            except Exception as exc:  # a bug, or the OCR failing: this frame only
                log.exception("camera frame %d", number)
                self.on_error("camera_failed", f"frame {number}: {type(exc).__name__}: {exc}")
                continue
            self.latest = sighting
            self.on_seen(sighting)

    async def _read(
        self, loop: asyncio.AbstractEventLoop, number: int, frame: _Measured
    ) -> Sighting:
        """The text of a new view (or of a view whose text was never read), when nothing
        live wants the CPU now; otherwise what is known of the view already."""
        image, scene, jpeg, ms = frame
        previous = self.latest
        same = previous is not None and not changed(previous.scene.fingerprint, scene.fingerprint)
        if same and previous is not None and (previous.text_read or not self.read_text):
            # The same view: the same words (no flicker in the prompt from sensor noise).
            return replace(previous, frame=number, at=time.monotonic(), jpeg=jpeg, ms=ms)
        text: tuple[str, ...] = previous.text if same and previous is not None else ()
        text_read = False
        # Checked here, on the loop, right before: the session's state lives here.
        if self.read_text and self.idle() and not self.gate.busy():
            started = time.perf_counter()
            text = tuple(await loop.run_in_executor(_CAMERA_THREAD, ocr.read_text, image))
            ms["ocr"] = round((time.perf_counter() - started) * 1000, 1)
            text_read = True
        elif self.read_text:
            self.text_skipped += 1  # a live turn first: a later frame of it tries again
        return Sighting(
            number, describe(scene, text), scene, text, time.monotonic(), jpeg, ms, text_read
        )

    async def close(self) -> None:
        await cancel_and_wait(self._worker)
