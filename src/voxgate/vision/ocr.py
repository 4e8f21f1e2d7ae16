"""Text in a camera frame, offline: RapidOCR (PP-OCRv4 ONNX models inside the
``rapidocr-onnxruntime`` wheel, the ``vision`` extra). Without it, no text is read and the
description says nothing of text."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

MIN_SCORE = 0.6  # recognitions below this are guesses, not text
MAX_LINES = 4

_engine: Any = None
_lock = threading.Lock()


def available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _load() -> Any:
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            # One thread: about as fast here (0.19 s a frame) and it leaves the other core
            # to the live turn.
            one = {f"{stage}intra_op_num_threads": 1 for stage in ("", "det_", "cls_", "rec_")}
            _engine = RapidOCR(inter_op_num_threads=1, **one)
        return _engine


def read_text(image: object) -> list[str]:
    """The lines of text found in ``image`` (an RGB PIL image), best first. Call from a
    worker thread: it takes 0.2 to 1 s on a 2-core CPU."""
    if not available():
        return []
    result, _ = _load()(np.asarray(image))
    lines = [(str(text), float(score)) for _, text, score in (result or [])]
    kept = [text.strip() for text, score in lines if score >= MIN_SCORE and text.strip()]
    return kept[:MAX_LINES]
