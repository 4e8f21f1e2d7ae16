"""Append-only JSONL trace: one record per turn (with its spans), one line each.

``JsonlTrace.write`` is called from the asyncio thread at the end of every
turn, so it does no file I/O there: it only queues the record. One background
thread per trace serializes the queued records and appends them, keeping the
file open. Every batch it takes off the queue (one record, or all that piled
up meanwhile) goes to the OS in a single ``write`` on an unbuffered append-mode
file as soon as it is taken, so a record is in the OS page cache
(and survives a SIGKILL of the process) within milliseconds of ``write``,
and whole lines never interleave (one ``write`` system call per batch, in
``O_APPEND`` mode: atomic against other appenders on a local file system).
No fsync: a power cut may lose the last records.

The thread starts on the first ``write`` and ends, closing the file, after
``idle_close_s`` without records (a later ``write`` starts a new one), so an
unused or forgotten trace holds neither a thread nor a file. ``flush()`` waits
until everything queued is written; ``close()`` flushes and stops for good.
At interpreter exit open traces are flushed. ``JsonlTrace(None)`` is a no-op.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import queue
import threading
import weakref
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IDLE_CLOSE_S = 5.0


class JsonlTrace:
    def __init__(self, path: str | Path | None, *, idle_close_s: float = IDLE_CLOSE_S) -> None:
        self.path = Path(path) if path else None
        self.idle_close_s = idle_close_s
        # A record, or a flush marker: an Event the thread sets once all before it is written.
        self._queue: queue.SimpleQueue[dict[str, Any] | threading.Event] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _thread, _closed (never held during I/O)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned_closed = False
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _live.add(self)

    def write(self, record: dict[str, Any]) -> None:
        """Queue ``record`` for appending; returns at once. The trace owns ``record``
        from now on (it is serialized later, on the writer thread): don't mutate it."""
        if self.path is None:
            return
        with self._lock:
            if self._closed:
                if not self._warned_closed:
                    self._warned_closed = True
                    log.warning("trace %s is closed: records are dropped", self.path)
                return
            self._queue.put(record)
            self._ensure_thread()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record queued before this call is written to the OS.
        False if ``timeout`` (seconds) ran out first."""
        if self.path is None:
            return True
        done = threading.Event()
        with self._lock:
            thread, closed = self._thread, self._closed
            if not closed and thread is not None:
                self._queue.put(done)
        if closed:  # the thread writes what is left, then ends
            return self._join(thread, timeout)
        if thread is None:  # nothing queued: no thread means an empty queue
            return True
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then stop: later records are dropped (with one
        warning). Idempotent. False if ``timeout`` (seconds) ran out first."""
        if self.path is None:
            return True
        with self._lock:
            thread = self._thread
            if not self._closed:
                self._closed = True
                if thread is not None:
                    self._queue.put(_STOP)  # after every record queued so far
        _live.discard(self)
        return self._join(thread, timeout)

    @staticmethod
    def _join(thread: threading.Thread | None, timeout: float | None) -> bool:
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _ensure_thread(self) -> None:  # under self._lock
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"voxgate-trace:{self.path}",
                                             daemon=True)
            self._thread.start()

    def _run(self) -> None:
        handle: io.FileIO | None = None
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self.idle_close_s)
                except queue.Empty:
                    with self._lock:
                        if self._queue.empty():  # a write() now will start a new thread
                            self._thread = None
                            return
                    continue
                batch = [item]
                while True:  # take everything that piled up: one write for all of it
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    lines = [_encode(r) for r in batch if isinstance(r, dict)]
                    data = b"".join(line for line in lines if line is not None)
                    if data:
                        handle = self._append(handle, data)
                except Exception:  # never let the thread die: the queue would grow for ever
                    log.exception("trace %s: a batch of records was dropped", self.path)
                finally:
                    for marker in batch:
                        if isinstance(marker, threading.Event):
                            marker.set()
                if any(m is _STOP for m in batch):
                    return
        finally:
            if handle is not None:
                handle.close()

    def _append(self, handle: io.FileIO | None, data: bytes) -> io.FileIO | None:
        """Append ``data``; the handle to use next time (None: reopen then)."""
        assert self.path is not None
        try:
            if handle is None:
                # Unbuffered: each write() is one system call, straight to the OS.
                handle = io.FileIO(self.path, "ab")
            view = memoryview(data)
            while view:  # a regular file takes it all at once; loop on a short write anyway
                written = handle.write(view)
                view = view[written or 0 :]
        except OSError:
            log.exception("cannot append to trace %s: %d bytes dropped", self.path, len(data))
            if handle is not None:
                handle.close()
            return None
        return handle


# Stops the thread (only ``close`` puts it): an Event nobody waits on.
_STOP = threading.Event()
_live: weakref.WeakSet[JsonlTrace] = weakref.WeakSet()


def _encode(record: dict[str, Any]) -> bytes | None:
    try:
        return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    except (TypeError, ValueError):
        log.exception("trace record dropped: cannot serialize it")
        return None


@atexit.register
def _flush_all_at_exit() -> None:
    for trace in list(_live):
        trace.flush(timeout=2.0)


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
