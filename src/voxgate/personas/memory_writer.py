"""All writes to a ``MemoryStore`` on one background thread, off the asyncio loop.

A write can wait up to the store's busy timeout (2 s) for another process
holding the database's write lock, and even an uncontended commit writes the
WAL file: neither belongs on the event loop between a turn's reply and its
``metrics``/``DONE``. The session queues writes here instead; each call
returns at once, and the writer's one thread applies them in call order, each
in its own transaction (as ``MemoryStore`` does).

``record_turn`` returns a ``TurnRef`` whose ``id`` the thread fills in once the
row is committed; ``correct_reply(ref, heard)`` called right after is still
applied to that row, because it is queued behind the insert. A write that fails
is logged and skipped, never raised to the caller; a correction of a turn
whose insert failed is skipped with a warning.

Reads (``summary``, ``facts``, ``turns``) stay on the ``MemoryStore``; they see
what has been committed, so a test that reads what it just queued calls
``flush()`` first. ``close()`` flushes and stops the thread but leaves the store
open (its owner closes it, after the writer). Writers still open at
interpreter exit are flushed.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TypeVar

from voxgate.personas.memory import DEFAULT_USER, MemoryStore
from voxgate.personas.memory_update import SUMMARY_FACTS, Fact

log = logging.getLogger(__name__)

# "database is locked" past the store's busy timeout: tried again this many times,
# since waiting here stalls nobody but later memory writes.
LOCKED_RETRIES = 2


class TurnRef:
    """A turn queued by ``MemoryWriter.record_turn``; ``id`` is set once it is written."""

    __slots__ = ("_done", "_id", "session_id")

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self._id: int | None = None
        self._done = threading.Event()

    @property
    def id(self) -> int | None:
        """The row id: None until the insert is committed, and for ever if it failed."""
        return self._id

    @property
    def settled(self) -> bool:
        """True once the insert was attempted (committed, or failed and logged)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until settled (not on the event loop); the id, None on failure/timeout."""
        self._done.wait(timeout)
        return self._id

    def _settle(self, turn_id: int | None) -> None:
        self._id = turn_id
        self._done.set()

    def __repr__(self) -> str:
        return f"TurnRef(session_id={self.session_id!r}, id={self._id!r})"


_Job = Callable[[], object]
_T = TypeVar("_T")


class MemoryWriter:
    """Owns every write to ``store``. All methods are non-blocking except ``flush`` and
    ``close``, and none raises because a write failed."""

    def __init__(self, store: MemoryStore, *, locked_retries: int = LOCKED_RETRIES) -> None:
        self.store = store
        self.locked_retries = locked_retries
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()  # None: stop
        self._lock = threading.Lock()  # guards _closed against a racing close()
        self._closed = False
        self._warned_closed = False
        self.failures = 0  # writes given up on (each one logged)
        self._thread = threading.Thread(target=self._run, name="voxgate-memory-writer",
                                        daemon=True)
        self._thread.start()
        _live.add(self)

    # -- writes (queued) --------------------------------------------------

    def record_turn(self, session_id: str, persona: str, user_text: str, reply_text: str, *,
                    user: str = DEFAULT_USER, interrupted: bool = False,
                    started_at: float | None = None, ended_at: float | None = None,
                    keep: int = SUMMARY_FACTS) -> TurnRef:
        """Queue ``MemoryStore.record_turn`` (log the turn, learn from the user's words).
        ``ended_at`` defaults to now, the time of this call, not of the write."""
        ref = TurnRef(session_id)
        ended = ended_at if ended_at is not None else time.time()

        def job() -> None:
            turn_id: int | None = None
            try:
                turn_id = self._attempt(
                    "record_turn",
                    lambda: self.store.record_turn(
                        session_id, persona, user_text, reply_text, user=user,
                        started_at=started_at, ended_at=ended, interrupted=interrupted,
                        keep=keep))
            finally:
                ref._settle(turn_id)

        if not self._submit(job):
            ref._settle(None)
        return ref

    def correct_reply(self, ref: TurnRef, heard: str) -> None:
        """Queue the correction of an interrupted reply: the turn keeps only ``heard``
        and is marked interrupted. Applied after ``ref``'s insert, whenever queued."""
        ended = time.time()

        def job() -> None:
            if ref.id is None:
                log.warning("memory: cannot correct %r, its turn was not written", ref)
                return
            turn_id = ref.id
            self._attempt("correct_reply",
                          lambda: self.store.correct_reply(turn_id, heard, ended_at=ended))

        self._submit(job)

    def learn(self, persona: str, user: str, facts: Iterable[Fact],
              keep: int = SUMMARY_FACTS) -> None:
        """Queue ``MemoryStore.learn`` (store facts, rewrite the summary)."""
        facts = list(facts)  # the caller's iterable is consumed now, not on the thread
        self._submit(lambda: self._attempt(
            "learn", lambda: self.store.learn(persona, user, facts, keep)))

    def add_fact(self, persona: str, user: str, fact: str, key: str | None = None) -> None:
        """Queue ``MemoryStore.add_fact``."""
        self._submit(lambda: self._attempt(
            "add_fact", lambda: self.store.add_fact(persona, user, fact, key)))

    def update_summary(self, persona: str, user: str, summary: str) -> None:
        """Queue ``MemoryStore.update_summary``."""
        self._submit(lambda: self._attempt(
            "update_summary", lambda: self.store.update_summary(persona, user, summary)))

    # -- lifecycle (blocking) ---------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every write queued before this call is done (committed, or failed
        and logged). False if ``timeout`` (seconds) ran out first. Not on the event loop."""
        done = threading.Event()
        if not self._submit(done.set, quiet=True):  # closed: the thread drains and ends
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; later writes are dropped (with a warning).
        Idempotent. The store stays open. False if ``timeout`` ran out first."""
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
            self._queue.put(None)  # after everything queued so far
        self._thread.join(timeout)
        _live.discard(self)
        return not self._thread.is_alive()

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Roughly how many writes are queued (for metrics)."""
        return self._queue.qsize()

    # -- the thread -------------------------------------------------------

    def _submit(self, job: _Job, *, quiet: bool = False) -> bool:
        with self._lock:
            if not self._closed:
                self._queue.put(job)
                return True
            if not quiet and not self._warned_closed:
                self._warned_closed = True
                log.warning("memory writer is closed: writes are dropped")
            return False

    def _attempt(self, what: str, write: Callable[[], _T]) -> _T | None:
        """Run ``write`` (on the thread); on failure log it and return None."""
        for attempt in range(self.locked_retries + 1):
            try:
                return write()
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) and attempt < self.locked_retries:
                    log.warning("memory %s: %s; trying again", what, exc)
                    continue
                self.failures += 1
                log.exception("memory %s failed; the write is dropped", what)
                return None
            except Exception:
                self.failures += 1
                log.exception("memory %s failed; the write is dropped", what)
                return None
        return None  # not reached: the last attempt returns

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a bug in a job must not end the thread
                log.exception("memory writer job failed")


_live: weakref.WeakSet[MemoryWriter] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for writer in list(_live):
        writer.close(timeout=5.0)
