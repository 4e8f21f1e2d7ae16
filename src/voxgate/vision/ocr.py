"""Text in a camera frame, offline: RapidOCR (PP-OCRv4 ONNX models inside the
``rapidocr-onnxruntime`` wheel, the ``vision`` extra). Without it, no text is read and the
description says nothing of text."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import numpy as np

MIN_SCORE = 0.6  # recognitions below this are guesses, not text
MAX_LINES = 4
MAX_LINE_CHARS = 40  # a sign, not a page: and less text to pose as instructions

_engine: Any = None
_lock = threading.Lock()


def available() -> bool:
    """Installed? Asked without importing it (cv2 and friends take a while to import)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def _load() -> Any:
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            # One thread: about as fast here (0.19 s a frame) and it leaves the other core
            # to the live turn.
            one = {f"{stage}intra_op_num_threads": 1 for stage in ("", "det_", "cls_", "rec_")}
            _engine = RapidOCR(
                inter_op_num_threads=1,
                # Never enlarge a frame for the detector (its default scales the short side
                # up to 736): the frame is at most 384 px, and so is what it looks at.
                det_limit_type="max",
                det_limit_side_len=384,
                **one,
            )
        return _engine


def read_text(image: object) -> list[str]:
    """The lines of text found in ``image`` (an RGB PIL image), best first. Call from a
    worker thread: it takes 0.2 to 1 s on a 2-core CPU."""
    if not available():
        return []
    bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])  # RapidOCR takes OpenCV's order
    result, _ = _load()(bgr)
    lines = [(str(text), float(score)) for _, text, score in (result or [])]
    kept = [_clean(text) for text, score in lines if score >= MIN_SCORE]
    return [line for line in kept if line][:MAX_LINES]


def _clean(text: str) -> str:
    """A line fit to quote in a prompt: no quotes of its own, and short."""
    return " ".join(text.replace('"', "").replace("\n", " ").split())[:MAX_LINE_CHARS]


def warm() -> None:
    """Load the models (about 0.3 s), so the first frame is not the slow one."""
    if available():
        _load()
