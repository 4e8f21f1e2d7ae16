"""Start a real ``voxgate serve`` in a subprocess for integration, e2e and benchmark tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    token: str | None
    log_path: Path
    trace_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_server(
    *extra: str, token: str | None = "test-token", workdir: Path | None = None
) -> Iterator[ServerProcess]:
    """``workdir`` holds the log, the trace and the memory store (default: a new temp dir)."""
    port = free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="voxgate-test-"))
    log_path, trace_path = workdir / "server.log", workdir / "trace.jsonl"
    args = [
        sys.executable,
        "-m",
        "voxgate",
        "serve",
        "--port",
        str(port),
        "--trace",
        str(trace_path),
        *extra,
    ]
    args += ["--token", token] if token else ["--no-token"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "VOXGATE_DATA": str(workdir)},
        )
    server = ServerProcess(process, port, token, log_path, trace_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"voxgate serve exited early:\n{server.log()}")
            try:
                with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"voxgate serve not ready:\n{server.log()}") from None
                time.sleep(0.5)
        yield server
    finally:
        stop_process(process, timeout=20)


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask it to stop (SIGTERM); kill it if it has not within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
