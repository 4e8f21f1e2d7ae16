"""A session's camera: the newest frame wins, and what it shows is described when it
arrives (not when the user asks), in background time, so a turn only reads a sentence.

Frames that arrive while one is being described replace each other: only the newest is
described next. Text recognition, the slow part, runs only on a new view (the fingerprint
moved) and only while the session has no live turn (the user is not speaking, no reply
is being made) and no other work wants the CPU; otherwise the last text stays if the
view did not change, and none is claimed if it did.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from voxgate.aio import cancel_and_wait
from voxgate.scheduler import ComputeGate, Priority
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

FRESH_S = 120.0  # an older description is not what the camera shows now


@dataclass(frozen=True)
class Sighting:
    frame: int  # the frame's number in the session (1, 2, ...)
    description: str  # the sentence the prompt gets
    scene: Scene
    text: tuple[str, ...]  # lines read, if any
    at: float  # monotonic time it was ready
    jpeg: bytes  # the frame as shrunk, for a model that sees
    ms: dict[str, float] = field(default_factory=dict)  # per part: decode, scene, ocr


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
        self._may_read = True

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
        while self._pending is not None:
            number, data = self._pending
            self._pending = None
            self._may_read = self.idle()  # asked on the loop: the session's state lives there
            try:
                sighting = await asyncio.to_thread(self._describe, number, data)
            except BadImage as exc:
                self.on_error("bad_image", f"frame {number}: {exc}")
                continue
            self.latest = sighting
            self.on_seen(sighting)

    def _describe(self, number: int, data: bytes) -> Sighting:
        """On a worker thread: decode, measure, and read text when it is worth it."""
        ms: dict[str, float] = {}
        started = time.perf_counter()
        image = load_frame(data)
        shrunk = io.BytesIO()
        image.save(shrunk, "JPEG", quality=85)  # type: ignore[attr-defined]
        ms["decode"] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        scene = describe_scene(image)
        ms["scene"] = round((time.perf_counter() - started) * 1000, 1)
        previous = self.latest
        same_view = previous is not None and not changed(
            previous.scene.fingerprint, scene.fingerprint
        )
        text: tuple[str, ...] = ()
        if same_view and previous is not None:
            text = previous.text  # the same view: what it read still holds
        elif self.read_text and self._may_read and not self.gate.busy():
            started = time.perf_counter()
            with self.gate.hold(Priority.BACKGROUND):  # any live work goes first
                text = tuple(ocr.read_text(image))
            ms["ocr"] = round((time.perf_counter() - started) * 1000, 1)
        elif self.read_text:
            self.text_skipped += 1  # the live turn first; the next frame tries again
        description = describe(scene, text)
        return Sighting(number, description, scene, text, time.monotonic(), shrunk.getvalue(), ms)

    async def close(self) -> None:
        await cancel_and_wait(self._worker)
