"""Persona memory: the SQLite store (atomic, survives SIGKILL) and the fact heuristic."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voxgate.personas.memory import (
    DEFAULT_USER,
    SCHEMA_VERSION,
    MemoryStore,
    MemoryStoreError,
    fact_key,
)
from voxgate.personas.memory_update import Fact, extract_facts, summarize
from voxgate.personas.memory_writer import MemoryWriter


@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    return MemoryStore(tmp_path / "memory.db")


def test_turns_are_logged_and_filtered(store: MemoryStore) -> None:
    first = store.log_turn("s1", "ada", "hello", "hi there", user="sam", started_at=10.0,
                           ended_at=12.5)
    store.log_turn("s1", "max", "and you?", "fine", user="sam")
    store.log_turn("s2", "ada", "again", "welcome back", user="sam")

    assert [t.user_text for t in store.turns(session_id="s1")] == ["hello", "and you?"]
    assert [t.reply_text for t in store.turns(persona="ada")] == ["hi there", "welcome back"]
    assert [t.session_id for t in store.turns(persona="ada", limit=1)] == ["s2"]
    turn = store.turns(session_id="s1")[0]
    assert (turn.id, turn.user, turn.started_at, turn.ended_at) == (first, "sam", 10.0, 12.5)
    assert store.turns(session_id="nope") == []


def test_an_interrupted_reply_is_corrected(store: MemoryStore) -> None:
    turn_id = store.record_turn("s1", "ada", "Tell me a story.", "Once upon a time there was")
    other = store.log_turn("s1", "ada", "Stop.", "Okay.")
    store.correct_reply(turn_id, "Once upon")
    assert [t.reply_text for t in store.turns(session_id="s1")] == ["Once upon", "Okay."]
    assert store.turns(session_id="s1")[1].id == other


def test_facts_dedupe_and_replace_by_key(store: MemoryStore) -> None:
    assert store.add_fact("ada", "sam", "Likes tea.")
    assert not store.add_fact("ada", "sam", "Likes tea.")  # known already
    assert store.add_fact("ada", "sam", "The user's name is Sam.", key="name")
    assert store.add_fact("ada", "sam", "likes  TEA.")  # same fact, respelled: replaces
    assert store.add_fact("ada", "sam", "The user's name is Samuel.", key="name")
    assert store.facts("ada", "sam") == ["likes  TEA.", "The user's name is Samuel."]
    assert store.facts("max", "sam") == []  # each persona has its own memory
    assert fact_key("Likes  Tea.") == fact_key("likes tea.")


def test_summary_round_trip(store: MemoryStore) -> None:
    assert store.summary("ada", "sam") == ""
    store.update_summary("ada", "sam", "Sam likes tea.")
    store.update_summary("ada", "sam", "Sam likes coffee now.")
    assert store.summary("ada", "sam") == "Sam likes coffee now."
    assert store.summary("ada", "kim") == ""


def test_record_turn_learns_from_the_user(store: MemoryStore) -> None:
    store.record_turn("s1", "luna", "Hi, my name is sam and I live in Porto.", "Hello Sam!",
                      user="u1")
    store.record_turn("s1", "luna", "What's the weather?", "Sunny.", user="u1")
    store.record_turn("s1", "luna", "Actually my name is Samuel.", "Noted.", user="u1")
    assert store.facts("luna", "u1") == ["The user lives in Porto.",
                                         "The user's name is Samuel."]
    assert store.summary("luna", "u1") == "The user lives in Porto. The user's name is Samuel."
    assert len(store.turns(session_id="s1")) == 3


def test_learn_keeps_the_last_n_facts_in_the_summary(store: MemoryStore) -> None:
    facts = [Fact(f"k{i}", f"Fact {i}.") for i in range(5)]
    assert store.learn("ada", "sam", facts, keep=2)
    assert store.summary("ada", "sam") == "Fact 3. Fact 4."
    assert not store.learn("ada", "sam", facts[:1], keep=2)  # nothing new


def test_a_failed_write_leaves_nothing_behind(store: MemoryStore) -> None:
    class Boom(Exception):
        pass

    def facts() -> list[Fact]:
        raise Boom

    store.add_fact("ada", "sam", "Likes tea.")
    with pytest.raises(Boom), store._write() as db:
        db.execute("DELETE FROM facts")
        facts()
    assert store.facts("ada", "sam") == ["Likes tea."]


def test_settings_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "memory.db"
    with MemoryStore(path) as store:
        store.log_turn("s", "ada", "a", "b")
        assert store._read("PRAGMA journal_mode")[0][0] == "wal"
        assert store._read("PRAGMA synchronous")[0][0] == 1  # NORMAL
    with MemoryStore(path, durable=True) as store:
        assert store._read("PRAGMA synchronous")[0][0] == 2  # FULL
        assert [t.user_text for t in store.turns()] == ["a"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(MemoryStoreError, match="newer"):
        MemoryStore(path)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MemoryStoreError, match="cannot open"):
        MemoryStore(path)


def test_threads_can_share_a_store(store: MemoryStore) -> None:
    def write(n: int) -> None:
        for i in range(25):
            store.log_turn(f"s{n}", "ada", f"{n}-{i}", "ok")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.turns()) == 100
    assert [t.user_text for t in store.turns(session_id="s2")] == [f"2-{i}" for i in range(25)]


# --------------------------------------------------------------------------- SIGKILL

WRITER = textwrap.dedent("""
    import sys
    from voxgate.personas.memory import MemoryStore

    store = MemoryStore(sys.argv[1])
    session = sys.argv[2]
    i = 0
    while True:
        user_text = f"{session} turn {i}: my name is Sam and I like tea number {i}."
        turn_id = store.record_turn(session, "ada", user_text, "reply " * 50 + str(i),
                                    user="sam")
        print(turn_id, i, flush=True)  # only after the commit returned
        i += 1
""")


def _kill_mid_stream(db: Path, session: str, after_lines: int) -> dict[int, int]:
    """Run a writer, SIGKILL it once ``after_lines`` commits were reported; return them all."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(db), session],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    committed: dict[int, int] = {}
    try:
        for line in child.stdout:
            turn_id, index = map(int, line.split())
            committed[turn_id] = index
            if len(committed) >= after_lines:
                break
        child.send_signal(signal.SIGKILL)  # it is writing the next turn right now
        child.wait(timeout=30)
        for line in child.stdout:  # lines printed before the kill are still in the pipe
            turn_id, index = map(int, line.split())
            committed[turn_id] = index
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return committed


def test_every_committed_turn_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    for round_, session in enumerate(["first", "second", "third"]):
        committed = _kill_mid_stream(db, session, after_lines=40 + 17 * round_)
        assert len(committed) >= 40
        with MemoryStore(db) as store:
            assert store._read("PRAGMA integrity_check")[0][0] == "ok"
            stored = {t.id: t for t in store.turns(session_id=session)}
            for turn_id, index in committed.items():
                assert turn_id in stored, f"turn {index} was committed but is lost"
                assert stored[turn_id].user_text.startswith(f"{session} turn {index}:")
            # At most the one turn being written when the kill landed is extra.
            assert len(stored) - len(committed) in (0, 1)
            assert store.facts("ada", "sam")[0] == "The user's name is Sam."


# --------------------------------------------------------------------------- heuristic


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("My name is sam and I live in Porto.",
         ["The user's name is Sam.", "The user lives in Porto."]),
        ("Hi! I'm from New York, and I really like jazz music but I hate rain.",
         ["The user is from New York.", "The user likes jazz music.",
          "The user does not like rain."]),
        ("I work as a nurse. Call me Jo.",
         ["The user works as a nurse.", "The user's name is Jo."]),
        ("My favorite colour is green.", ["The user's favourite colour is green."]),
        ("Do I like jazz?", []),  # a question states nothing
        ("I would like a coffee.", []),
        ("I like it a lot.", []),  # the thing liked is not in the words
        ("My name is the longest name you have ever heard in your life", []),
        ("", []),
    ],
)
def test_extract_facts(said: str, expected: list[str]) -> None:
    assert [f.text for f in extract_facts(said)] == expected


def test_repeated_statements_share_a_key() -> None:
    first = extract_facts("My name is Sam.")[0]
    second = extract_facts("my name's Kim")[0]
    assert first.key == second.key == "name"
    likes = extract_facts("I love Jazz. I like jazz.")
    assert likes[0].key == likes[1].key == "likes:jazz"


def test_summarize_keeps_who_the_user_is_and_the_most_recent() -> None:
    facts = [Fact("likes:a", "A."), Fact("name", "Sam."), Fact("likes:b", "B."),
             Fact("likes:c", "C."), Fact("likes:d", "D.")]
    assert summarize(facts, keep=3) == "Sam. C. D."
    assert summarize(facts, keep=1) == "Sam."
    assert summarize(facts[2:], keep=2) == "C. D."
    assert summarize(facts, keep=0) == ""


def test_many_likes_do_not_push_the_name_out(store: MemoryStore) -> None:
    store.record_turn("s", "ada", "My name is Sam.", "Hi Sam.")
    for food in ["tea", "jam", "figs", "rice", "kale"]:
        store.record_turn("s", "ada", f"I like {food}.", "Nice.")
    assert store.learn("ada", DEFAULT_USER, [Fact("likes:soup", "The user likes soup.")], keep=3)
    assert store.summary("ada") == ("The user's name is Sam. The user likes kale. "
                                    "The user likes soup.")


# --------------------------------------------------------------------------- schema v2


V1_SCHEMA = """
CREATE TABLE turns (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, persona TEXT NOT NULL,
    user_id TEXT NOT NULL, user_text TEXT NOT NULL, reply_text TEXT NOT NULL,
    started_at REAL NOT NULL, ended_at REAL NOT NULL);
CREATE TABLE facts (id INTEGER PRIMARY KEY, persona TEXT NOT NULL, user_id TEXT NOT NULL,
    fact_key TEXT NOT NULL, fact TEXT NOT NULL, learned_at REAL NOT NULL,
    UNIQUE (persona, user_id, fact_key));
CREATE TABLE summaries (persona TEXT NOT NULL, user_id TEXT NOT NULL, summary TEXT NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (persona, user_id));
INSERT INTO turns VALUES (1, 's0', 'ada', 'sam', 'old question', 'old answer', 1.0, 2.0);
INSERT INTO summaries VALUES ('ada', 'sam', 'Sam likes tea.', 2.0);
PRAGMA user_version=1;
"""


def test_a_v1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.close()
    with MemoryStore(path) as store:
        assert store._read("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 2
        (old,) = store.turns()
        assert (old.user_text, old.reply_text, old.interrupted) == ("old question",
                                                                    "old answer", False)
        assert store.summary("ada", "sam") == "Sam likes tea."
        new = store.log_turn("s1", "ada", "hi", "hel", user="sam", interrupted=True)
        assert [(t.id, t.interrupted) for t in store.turns()] == [(1, False), (new, True)]
    with MemoryStore(path) as store:  # reopening a v2 database changes nothing
        assert len(store.turns()) == 2


def test_interrupted_turns_are_marked(store: MemoryStore) -> None:
    cut = store.record_turn("s1", "ada", "Go on.", "And then", interrupted=True)
    whole = store.record_turn("s1", "ada", "Tell me a story.", "Once upon a time there was")
    store.correct_reply(whole, "Once upon", ended_at=123.0)
    turns = store.turns(session_id="s1")
    assert [(t.id, t.reply_text, t.interrupted) for t in turns] == [
        (cut, "And then", True), (whole, "Once upon", True)]
    assert turns[1].ended_at == 123.0


def test_reads_do_not_wait_for_a_write_stuck_on_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = MemoryStore(path, busy_timeout_s=10.0)
    store.update_summary("ada", "sam", "Sam likes tea.")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    stuck = threading.Thread(target=store.add_fact, args=("ada", "sam", "Likes jam."))
    stuck.start()  # waits on the lock, holding the store's write connection
    try:
        time.sleep(0.1)
        started = time.monotonic()
        assert store.summary("ada", "sam") == "Sam likes tea."
        assert store.facts("ada", "sam") == []
        assert time.monotonic() - started < 1.0
    finally:
        other.execute("ROLLBACK")
        stuck.join(timeout=15)
        other.close()
    assert store.facts("ada", "sam") == ["Likes jam."]
    store.close()


# --------------------------------------------------------------------------- writer


@pytest.fixture
def writer(store: MemoryStore) -> Iterator[MemoryWriter]:
    with MemoryWriter(store) as memory:
        yield memory


def test_writer_writes_in_order_on_its_thread(store: MemoryStore) -> None:
    threads: list[str] = []
    record_turn = store.record_turn

    def spy(*args: Any, **kwargs: Any) -> int:
        threads.append(threading.current_thread().name)
        return record_turn(*args, **kwargs)

    store.record_turn = spy  # type: ignore[method-assign]
    with MemoryWriter(store) as memory:
        refs = [memory.record_turn("s1", "ada", f"say {i}", f"reply {i}", user="sam")
                for i in range(30)]
        assert memory.flush(timeout=10)
        assert all(ref.settled for ref in refs)
    assert [t.user_text for t in store.turns(session_id="s1")] == [f"say {i}" for i in range(30)]
    assert [t.id for t in store.turns(session_id="s1")] == [ref.id for ref in refs]
    assert set(threads) == {"voxgate-memory-writer"}


def test_writer_does_not_block_while_the_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = MemoryStore(path, busy_timeout_s=10.0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another gateway holds the write lock
    memory = MemoryWriter(store)
    try:
        started = time.monotonic()
        ref = memory.record_turn("s1", "ada", "My name is Sam.", "Once upon a", user="sam")
        memory.correct_reply(ref, "Once")  # before the row even exists
        memory.add_fact("ada", "sam", "Likes tea.")
        assert time.monotonic() - started < 0.5  # nothing waited for the lock
        assert ref.id is None and not ref.settled
        assert not memory.flush(timeout=0.1)
        assert memory.pending >= 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert memory.flush(timeout=15)
    assert ref.settled and ref.id is not None and ref.wait(0) == ref.id
    (turn,) = store.turns(session_id="s1")
    assert (turn.id, turn.reply_text, turn.interrupted) == (ref.id, "Once", True)
    assert store.facts("ada", "sam") == ["The user's name is Sam.", "Likes tea."]
    memory.close()
    store.close()


def test_writer_queues_every_kind_of_write(writer: MemoryWriter, store: MemoryStore) -> None:
    writer.learn("ada", "sam", iter([Fact("name", "The user's name is Sam.")]))
    writer.add_fact("ada", "sam", "Likes tea.")
    writer.update_summary("max", "sam", "A summary.")
    cut = writer.record_turn("s1", "ada", "Hi.", "Hel", user="sam", interrupted=True,
                             started_at=5.0, ended_at=6.0)
    assert writer.flush(timeout=10)
    assert store.facts("ada", "sam") == ["The user's name is Sam.", "Likes tea."]
    assert store.summary("max", "sam") == "A summary."
    (turn,) = store.turns(session_id="s1")
    assert (turn.id, turn.interrupted, turn.started_at, turn.ended_at) == (cut.id, True, 5.0, 6.0)


def test_write_errors_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "memory.db"
    store = MemoryStore(path, busy_timeout_s=0.05)
    memory = MemoryWriter(store, locked_retries=0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.WARNING, logger="voxgate.personas.memory_writer"):
        ref = memory.record_turn("s1", "ada", "hello", "hi")
        memory.correct_reply(ref, "h")
        assert memory.flush(timeout=10)
    other.execute("ROLLBACK")
    other.close()
    assert ref.settled and ref.id is None
    assert memory.failures == 1
    assert any("record_turn failed" in r.message and r.exc_info for r in caplog.records)
    assert any("cannot correct" in r.message for r in caplog.records)
    later = memory.record_turn("s1", "ada", "again", "hi")  # the thread is still serving
    assert memory.flush(timeout=10) and later.id is not None
    assert [t.user_text for t in store.turns()] == ["again"]
    memory.close()
    store.close()


def test_a_locked_database_is_tried_again(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = MemoryStore(path, busy_timeout_s=0.05)
    memory = MemoryWriter(store, locked_retries=200)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ref = memory.record_turn("s1", "ada", "hello", "hi")
    time.sleep(0.3)  # several busy timeouts
    other.execute("ROLLBACK")
    other.close()
    assert memory.flush(timeout=15)
    assert ref.id is not None and memory.failures == 0
    memory.close()
    store.close()


def test_close_flushes_is_idempotent_and_drops_later_writes(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    memory = MemoryWriter(store)
    refs = [memory.record_turn("s1", "ada", f"{i}", "ok") for i in range(10)]
    assert memory.close(timeout=10)
    assert all(ref.id is not None for ref in refs)  # close() flushed first
    assert not memory._thread.is_alive()
    assert memory.close(timeout=1) and memory.flush(timeout=1)
    with caplog.at_level(logging.WARNING, logger="voxgate.personas.memory_writer"):
        late = memory.record_turn("s1", "ada", "late", "ok")
        memory.correct_reply(refs[0], "o")
        memory.add_fact("ada", DEFAULT_USER, "Late.")
    assert late.settled and late.id is None
    assert sum("closed" in r.message for r in caplog.records) == 1
    assert len(store.turns()) == 10 and store.facts("ada") == []  # the store is still open
    assert store.turns()[0].reply_text == "ok"
