"""A session's camera: the newest frame wins, and what it shows is described when it
arrives (not when the user asks), in background time, so a turn only reads a sentence.

Frames that arrive while one is being described replace each other: only the newest is
described next. Naming what it likely shows (an ImageNet classifier, about 50 ms) and text
recognition, the slow parts, run only on a new view (the fingerprint moved, or it was
never named or read) and only while the session has no live turn (the user is not
speaking, no reply is being made) and no other work wants the CPU; then they run on the
camera's one thread, outside the compute gate, and leave the other core to the voice.
Otherwise the last names and text stay if the view did not change, and none are claimed
if it did.
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
from voxgate.vision import classifier, ocr
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
# A guess the classifier gives less than this is not said; its top 2 at most.
MIN_LIKELY = 0.3
MAX_NAMES = 2
log = logging.getLogger("voxgate.vision")


@dataclass(frozen=True)
class Sighting:
    frame: int  # the frame's number in the session (1, 2, ...)
    description: str  # the sentence the prompt gets
    scene: Scene
    text: tuple[str, ...]  # lines read, if any
    at: float  # monotonic time it was ready
    jpeg: bytes  # the frame as shrunk, for a model that sees
    ms: dict[str, float] = field(default_factory=dict)  # per part: decode, scene, classify, ocr
    text_read: bool = False  # OCR ran on this view (else its text is unknown, not absent)
    labels: tuple[tuple[str, float], ...] = ()  # the classifier's best guesses, probability
    named: bool = False  # the classifier ran on this view


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


def describe(
    scene: Scene, text: tuple[str, ...], labels: tuple[tuple[str, float], ...] = ()
) -> str:
    """The hedged sentence a persona reads: what was measured, and nothing more. Short:
    every turn prefills it. ``labels``: the classifier's guesses; only likely ones are
    said."""
    colours = " and ".join(scene.colours)
    sentence = (
        "The user's camera shows (an automatic guess from colours and text, may be wrong): "
        f"a {scene.brightness} view, mostly {colours}"
    )
    if text:
        sentence += "; text: " + ", ".join(f'"{line}"' for line in text)
    likely = [name for name, p in labels if p >= MIN_LIKELY][:MAX_NAMES]
    if likely:
        sentence += ". It might show " + " or ".join(map(_with_article, likely))
    return sentence + "."


def _with_article(name: str) -> str:
    """ "a mug", "an iPod", "a European ...", "jeans": enough for the ImageNet names."""
    lower = name.lower()
    plural = lower.endswith("s") and not lower.endswith(("ss", "us", "is", "ps"))
    if plural or lower.startswith(("a ", "an ")):  # "a cat having a striped coat"
        return name
    vowel = lower[0] in "aeiou" and not lower.startswith(("eu", "one", "uni", "use"))
    return ("an " if vowel else "a ") + name


class CameraView:
    def __init__(
        self,
        gate: ComputeGate,
        on_seen: Callable[[Sighting], None],
        on_error: Callable[[str, str], None],
        *,
        read_text: bool = True,
        name_objects: bool | None = None,
        idle: Callable[[], bool] = lambda: True,
    ) -> None:
        """``read_text`` False: no OCR (a model that sees reads the frame itself).
        ``name_objects``: run the classifier; None: as ``read_text`` (a model that sees
        needs neither). ``idle``: whether the session has no live turn now (the user is
        not speaking, no reply is being made): a view is named and read only then."""
        self.idle = idle
        self.gate = gate
        self.on_seen, self.on_error = on_seen, on_error
        self.read_text = read_text and ocr.available()
        wanted = read_text if name_objects is None else name_objects
        self.name_objects = wanted and classifier.available()
        self.latest: Sighting | None = None
        self.stills = False  # pictures sent one by one: the last stays fresh until the next
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

    async def settled(self) -> None:
        """Returns once every frame submitted so far is described (or has failed)."""
        while self._worker is not None and not self._worker.done():
            # Waited on, not awaited: a caller that stops waiting must not stop the
            # description, and a worker that is stopped (closing) must not fail the caller.
            await asyncio.wait({self._worker})

    def fresh(self, now: float | None = None) -> Sighting | None:
        """The newest frame and its description, if recent."""
        now = time.monotonic() if now is None else now
        if self.latest is None or (not self.stills and now - self.latest.at > FRESH_S):
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
        """The names and text of a new view (or of a view not yet named or read), when
        nothing live wants the CPU now; otherwise what is known of the view already."""
        image, scene, jpeg, ms = frame
        previous = self.latest
        same = None
        if previous is not None and not changed(previous.scene.fingerprint, scene.fingerprint):
            same = previous
        want_names = self.name_objects and not (same is not None and same.named)
        want_text = self.read_text and not (same is not None and same.text_read)
        if same is not None and not want_names and not want_text:
            # The same view: the same words (no flicker in the prompt from sensor noise).
            return replace(same, frame=number, at=time.monotonic(), jpeg=jpeg, ms=ms)
        labels, named = (same.labels, same.named) if same is not None else ((), False)
        text, text_read = (same.text, same.text_read) if same is not None else ((), False)
        if want_names and self._free():
            started = time.perf_counter()
            labels = tuple(await loop.run_in_executor(_CAMERA_THREAD, classifier.classify, image))
            ms["classify"] = round((time.perf_counter() - started) * 1000, 1)
            named = True
        if want_text and self._free():  # asked again: a turn may have begun meanwhile
            started = time.perf_counter()
            text = tuple(await loop.run_in_executor(_CAMERA_THREAD, ocr.read_text, image))
            ms["ocr"] = round((time.perf_counter() - started) * 1000, 1)
            text_read = True
        elif want_text:
            self.text_skipped += 1  # a live turn first: a later frame of it tries again
        return Sighting(
            number, describe(scene, text, labels), scene, text, time.monotonic(), jpeg, ms,
            text_read, labels, named,
        )  # fmt: skip

    def _free(self) -> bool:
        """Nothing live wants the CPU. Asked on the loop right before each slow part: the
        session's state lives here."""
        return self.idle() and not self.gate.busy()

    async def close(self) -> None:
        await cancel_and_wait(self._worker)
