"""The JSONL trace: written off the caller's thread, in order, whole lines, promptly."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from voxgate.metrics.trace import JsonlTrace, read_trace

# Every file opened in this process while a test records: (thread id, path). An audit
# hook cannot be removed, so it stays installed and records only when asked to.
_opens: list[tuple[int, str]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _opens is not None and isinstance(args[0], str | bytes | Path):
        _opens.append((threading.get_ident(), os.fsdecode(args[0])))


sys.addaudithook(_audit)


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def test_records_land_in_order(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "trace.jsonl"
    trace = JsonlTrace(path)
    for i in range(200):
        trace.write({"turn": i, "text": f"é {i}", "spans": [{"stage": "stt", "ms": i}]})
    assert trace.flush(timeout=5)
    assert [r["turn"] for r in read_trace(path)] == list(range(200))
    assert read_trace(path)[3] == {"turn": 3, "text": "é 3", "spans": [{"stage": "stt", "ms": 3}]}
    trace.write({"turn": 200, "at": Path("x")})  # default=str, as before
    assert trace.close(timeout=5)
    assert read_trace(path)[-1] == {"turn": 200, "at": "x"}


def test_the_caller_thread_never_opens_the_file(tmp_path: Path) -> None:
    global _opens
    path = tmp_path / "trace.jsonl"
    trace = JsonlTrace(path)
    _opens = []
    try:
        for i in range(20):
            trace.write({"turn": i})
        assert trace.flush(timeout=5)
        # The writer thread ends when idle and a new one reopens the file: still not us.
        trace.idle_close_s = 0.01
        trace.write({"turn": 20})
        assert _wait_for(lambda: trace._thread is None)
        trace.write({"turn": 21})
        assert trace.close(timeout=5)
        opens = [(ident, p) for ident, p in _opens if p == str(path)]
    finally:
        _opens = None
    assert opens, "the trace file was never opened?"
    assert all(ident != threading.get_ident() for ident, _ in opens), opens
    assert [r["turn"] for r in read_trace(path)] == list(range(22))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_write_returns_while_the_file_cannot_even_be_opened(tmp_path: Path) -> None:
    # Opening a named pipe for writing blocks until a reader opens it. A write() that
    # touched the file on the caller's thread would hang here; queued, it returns.
    path = tmp_path / "trace.fifo"
    os.mkfifo(path)
    trace = JsonlTrace(path)
    def write_all() -> None:
        for i in range(50):
            trace.write({"turn": i})

    caller = threading.Thread(target=write_all)
    started = time.monotonic()
    caller.start()
    caller.join(timeout=5)
    assert not caller.is_alive(), "write() blocked on the file"
    assert time.monotonic() - started < 1.0
    assert not trace.flush(timeout=0.05)  # the thread is stuck opening the pipe
    with path.open("rb") as reader:  # unblocks the thread
        closer = threading.Thread(target=trace.close)
        closer.start()
        data = reader.read()  # until the writer closes its end
        closer.join(timeout=5)
    assert [json.loads(line)["turn"] for line in data.splitlines()] == list(range(50))


def test_lines_from_many_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = JsonlTrace(path)
    big = "x" * 20_000  # longer than a pipe or stdio buffer

    def writer(n: int) -> None:
        for i in range(50):
            trace.write({"thread": n, "i": i, "pad": big if i % 10 == 0 else ""})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trace.close(timeout=10)
    records = read_trace(path)  # a torn line would not parse
    assert len(records) == 300
    for n in range(6):
        assert [r["i"] for r in records if r["thread"] == n] == list(range(50))


def test_no_path_is_a_no_op_without_a_thread(tmp_path: Path) -> None:
    before = threading.active_count()
    trace = JsonlTrace(None)
    trace.write({"turn": 1})
    assert trace.flush(timeout=0) and trace.close(timeout=0)
    assert trace._thread is None and threading.active_count() == before
    assert JsonlTrace("").path is None


def test_a_record_reaches_the_os_promptly_without_flush(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = JsonlTrace(path)
    trace.write({"turn": 1})
    # The thread writes as soon as it takes the record; allow for a loaded test machine.
    assert _wait_for(lambda: path.exists() and path.read_text() == '{"turn":1}\n', 2.0)
    trace.close()


CHILD = textwrap.dedent("""
    import sys, time
    from voxgate.metrics.trace import JsonlTrace

    trace = JsonlTrace(sys.argv[1])
    for i in range(int(sys.argv[2])):
        trace.write({"turn": i, "text": "a turn " * 20})
    print("written", flush=True)  # queued only: no flush() call
    time.sleep(60)
""")


def test_records_survive_a_sigkill_shortly_after_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "300"],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert [r["turn"] for r in read_trace(path)] == list(range(300))


def test_idle_thread_ends_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = JsonlTrace(path, idle_close_s=0.02)
    trace.write({"turn": 0})
    first = trace._thread
    assert first is not None
    assert _wait_for(lambda: trace._thread is None)
    first.join(timeout=5)
    assert not first.is_alive()
    assert trace.flush(timeout=0)  # nothing queued, no thread: nothing to wait for
    trace.write({"turn": 1})
    assert trace._thread is not None and trace._thread is not first
    assert trace.close(timeout=5)
    assert [r["turn"] for r in read_trace(path)] == [0, 1]


def test_close_is_idempotent_and_later_records_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "trace.jsonl"
    trace = JsonlTrace(path)
    trace.write({"turn": 0})
    assert trace.close(timeout=5)
    thread = trace._thread
    assert thread is not None and not thread.is_alive()
    assert trace.close(timeout=5)
    with caplog.at_level(logging.WARNING, logger="voxgate.metrics.trace"):
        trace.write({"turn": 1})
        trace.write({"turn": 2})
    assert sum("closed" in r.message for r in caplog.records) == 1
    assert [r["turn"] for r in read_trace(path)] == [0]


def test_bad_records_and_io_errors_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "trace.jsonl"
    trace = JsonlTrace(path)
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with caplog.at_level(logging.ERROR, logger="voxgate.metrics.trace"):
        trace.write({"turn": 0})
        trace.write(circular)
        trace.write({"turn": 1})
        assert trace.flush(timeout=5)
    assert [r["turn"] for r in read_trace(path)] == [0, 1]
    assert any("serialize" in r.message for r in caplog.records)
    trace.close()

    unwritable = JsonlTrace(tmp_path / "a-directory")
    (tmp_path / "a-directory").mkdir()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="voxgate.metrics.trace"):
        unwritable.write({"turn": 0})
        assert unwritable.flush(timeout=5)
        thread = unwritable._thread
        assert thread is not None and thread.is_alive()  # still serving
    assert any("cannot append" in r.message for r in caplog.records)
    unwritable.close()
