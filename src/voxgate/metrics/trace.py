"""Append-only JSONL trace: one record per turn (with its spans), one line each."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class JsonlTrace:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        # One write() of a whole line in append mode: lines never interleave.
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
