"""Persistent persona memory in SQLite: what each persona learned about each user,
a running summary per (persona, user), and a log of every turn.

Durability: WAL journal, one transaction per write (``BEGIN IMMEDIATE`` ..
``COMMIT``), and ``synchronous=NORMAL`` by default. In WAL mode NORMAL
means a commit has been written to the WAL file (the OS page cache) when
the call returns, so it survives the process being killed, SIGKILL
included (tests/unit/test_memory.py kills a writer to check). What NORMAL
gives up is the last few commits on a power cut or kernel crash (the
database stays consistent); FULL adds an fsync per commit, which would
stall the asyncio thread for milliseconds on slow disks, for a guarantee a
conversation log rarely needs. ``durable=True`` buys it anyway.

Threads: the store is safe to share (a lock per connection). Writes can
wait up to ``busy_timeout_s`` for another process holding the database's
write lock, so the session does not call them on the asyncio thread: it
queues them on a ``memory_writer.MemoryWriter``, whose one thread owns all
writes. Reads (``summary``, ``facts``, ``turns``) go through a second,
read-only connection: in WAL mode a reader never waits for a writer, so a
read on the asyncio thread is not stuck behind a queued or waiting write
(it sees what was committed so far).

Schema changes: ``PRAGMA user_version`` is the schema version; ``_setup``
brings an older database up to date in one transaction (v2 added
``turns.interrupted``), and a newer one is refused.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxgate.personas.memory_update import SUMMARY_FACTS, Fact, extract_facts, summarize

SCHEMA_VERSION = 2
DEFAULT_USER = "anonymous"
# Another process holding the write lock (a second gateway on the same file)
# is waited for this long per attempt (MemoryWriter tries again, on its own thread).
BUSY_TIMEOUT_S = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    persona TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_text TEXT NOT NULL,
    reply_text TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0  -- v2: cut off by barge-in or disconnect
);
CREATE INDEX IF NOT EXISTS turns_by_session ON turns (session_id, id);
CREATE INDEX IF NOT EXISTS turns_by_persona ON turns (persona, id);
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY,  -- insertion order: the newest fact has the largest id
    persona TEXT NOT NULL,
    user_id TEXT NOT NULL,
    fact_key TEXT NOT NULL,
    fact TEXT NOT NULL,
    learned_at REAL NOT NULL,
    UNIQUE (persona, user_id, fact_key)
);
CREATE TABLE IF NOT EXISTS summaries (
    persona TEXT NOT NULL,
    user_id TEXT NOT NULL,
    summary TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (persona, user_id)
);
"""


@dataclass(frozen=True, slots=True)
class Turn:
    id: int
    session_id: str
    persona: str
    user: str
    user_text: str
    reply_text: str
    started_at: float  # Unix time
    ended_at: float
    interrupted: bool = False  # the reply was cut off (barge-in, disconnect)


class MemoryStoreError(RuntimeError):
    """The memory database cannot be used (newer schema, not a database)."""


def fact_key(text: str) -> str:
    """Facts without an explicit key are deduplicated on their normalised text."""
    return "text:" + " ".join(text.lower().split())


class MemoryStore:
    def __init__(self, path: str | Path, *, durable: bool = False,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; each write opens its own.
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        try:
            self._setup(durable)
            self._reader = sqlite3.connect(self.path, timeout=busy_timeout_s,
                                           isolation_level=None, check_same_thread=False)
            self._reader.execute("PRAGMA query_only=1")
            self._reader.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        except MemoryStoreError:
            self._close_connections()
            raise
        except sqlite3.DatabaseError as exc:
            self._close_connections()
            raise MemoryStoreError(f"cannot open memory database {self.path}: {exc}") from exc

    def _setup(self, durable: bool) -> None:
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise MemoryStoreError(f"{self.path}: WAL journal not available (got {mode!r})")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise MemoryStoreError(f"{self.path} has schema {version}, newer than this "
                                   f"voxgate ({SCHEMA_VERSION}); upgrade voxgate")
        with self._write() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            self._migrate(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring tables created by an older schema up to date (idempotent)."""
        columns = {str(row[1]) for row in db.execute("PRAGMA table_info(turns)")}
        if "interrupted" not in columns:  # v1 -> v2
            db.execute("ALTER TABLE turns ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction: all of it is committed, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        assert self._reader is not None
        with self._read_lock:
            return self._reader.execute(sql, tuple(params)).fetchall()

    def _close_connections(self) -> None:
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
        with self._lock:
            self._db.close()

    def close(self) -> None:
        self._close_connections()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conversation log -------------------------------------------------

    def _insert_turn(self, db: sqlite3.Connection, session_id: str, persona: str, user: str,
                     user_text: str, reply_text: str, started_at: float | None,
                     ended_at: float | None, interrupted: bool) -> int:
        now = time.time()
        cursor = db.execute(
            "INSERT INTO turns (session_id, persona, user_id, user_text, reply_text, "
            "started_at, ended_at, interrupted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, persona, user, user_text, reply_text,
             started_at if started_at is not None else now,
             ended_at if ended_at is not None else now, int(interrupted)))
        return int(cursor.lastrowid or 0)

    def log_turn(self, session_id: str, persona: str, user_text: str, reply_text: str, *,
                 user: str = DEFAULT_USER, started_at: float | None = None,
                 ended_at: float | None = None, interrupted: bool = False) -> int:
        """Append one turn; returns its id. Times are Unix seconds (default: now)."""
        with self._write() as db:
            return self._insert_turn(db, session_id, persona, user, user_text, reply_text,
                                     started_at, ended_at, interrupted)

    def correct_reply(self, turn_id: int, heard: str, *, ended_at: float | None = None) -> None:
        """The user cut the reply off after it was logged: keep only what was heard,
        and mark the turn interrupted. ``ended_at`` defaults to now."""
        with self._write() as db:
            db.execute("UPDATE turns SET reply_text = ?, ended_at = ?, interrupted = 1 "
                       "WHERE id = ?",
                       (heard, ended_at if ended_at is not None else time.time(), turn_id))

    def turns(self, *, session_id: str | None = None, persona: str | None = None,
              user: str | None = None, limit: int | None = None) -> list[Turn]:
        """Turns matching every filter given, oldest first; ``limit`` keeps the newest."""
        where: list[str] = []
        params: list[object] = []
        for column, value in (("session_id", session_id), ("persona", persona),
                              ("user_id", user)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = ("SELECT id, session_id, persona, user_id, user_text, reply_text, started_at, "
               "ended_at, interrupted FROM turns")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._read(sql, params)
        return [Turn(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                     float(r[6]), float(r[7]), bool(r[8])) for r in reversed(rows)]

    # -- what a persona knows about a user --------------------------------

    def summary(self, persona: str, user: str = DEFAULT_USER) -> str:
        rows = self._read("SELECT summary FROM summaries WHERE persona = ? AND user_id = ?",
                          (persona, user))
        return str(rows[0][0]) if rows else ""

    def _set_summary(self, db: sqlite3.Connection, persona: str, user: str, text: str) -> None:
        db.execute("INSERT INTO summaries (persona, user_id, summary, updated_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (persona, user_id) DO UPDATE SET "
                   "summary = excluded.summary, updated_at = excluded.updated_at",
                   (persona, user, text, time.time()))

    def update_summary(self, persona: str, user: str, summary: str) -> None:
        with self._write() as db:
            self._set_summary(db, persona, user, summary)

    def _put_fact(self, db: sqlite3.Connection, persona: str, user: str, fact: Fact) -> bool:
        """Insert, or replace the fact with the same key (it becomes the newest)."""
        old = db.execute("SELECT fact FROM facts WHERE persona = ? AND user_id = ? AND "
                         "fact_key = ?", (persona, user, fact.key)).fetchone()
        if old is not None and old[0] == fact.text:
            return False
        db.execute("DELETE FROM facts WHERE persona = ? AND user_id = ? AND fact_key = ?",
                   (persona, user, fact.key))
        db.execute("INSERT INTO facts (persona, user_id, fact_key, fact, learned_at) "
                   "VALUES (?, ?, ?, ?, ?)", (persona, user, fact.key, fact.text, time.time()))
        return True

    def add_fact(self, persona: str, user: str, fact: str, key: str | None = None) -> bool:
        """Remember ``fact``; a fact with the same ``key`` is replaced. False if known."""
        with self._write() as db:
            return self._put_fact(db, persona, user, Fact(key or fact_key(fact), fact.strip()))

    def facts(self, persona: str, user: str = DEFAULT_USER) -> list[str]:
        """Oldest first."""
        rows = self._read("SELECT fact FROM facts WHERE persona = ? AND user_id = ? ORDER BY id",
                          (persona, user))
        return [str(r[0]) for r in rows]

    def _learn(self, db: sqlite3.Connection, persona: str, user: str, facts: Iterable[Fact],
               keep: int) -> bool:
        changed = [self._put_fact(db, persona, user, f) for f in facts]
        if any(changed):
            rows = db.execute("SELECT fact_key, fact FROM facts WHERE persona = ? AND "
                              "user_id = ? ORDER BY id", (persona, user)).fetchall()
            known = [Fact(str(key), str(text)) for key, text in rows]
            self._set_summary(db, persona, user, summarize(known, keep))
        return any(changed)

    def learn(self, persona: str, user: str, facts: Iterable[Fact],
              keep: int = SUMMARY_FACTS) -> bool:
        """Store ``facts`` and rewrite the summary from them, in one transaction.
        True when something new was learned (the summary changed)."""
        with self._write() as db:
            return self._learn(db, persona, user, facts, keep)

    def record_turn(self, session_id: str, persona: str, user_text: str, reply_text: str, *,
                    user: str = DEFAULT_USER, started_at: float | None = None,
                    ended_at: float | None = None, interrupted: bool = False,
                    keep: int = SUMMARY_FACTS) -> int:
        """The per-turn call: log the turn and learn from what the user said, atomically
        (the heuristic of memory_update.extract_facts; no LLM call)."""
        with self._write() as db:
            turn_id = self._insert_turn(db, session_id, persona, user, user_text, reply_text,
                                        started_at, ended_at, interrupted)
            self._learn(db, persona, user, extract_facts(user_text), keep)
            return turn_id
