"""``voxgate bench churn``: many short sessions, one after another. Does memory grow?

Each session connects on a real WebSocket, says hello, types one question, and
ends in one of the ways real clients end: it closes cleanly after the answer, or
it vanishes (the socket shut down without a close) while the answer is still
streaming. The server runs in this process with the real models; RSS (VmRSS) is
read after every session. Reported: RSS after the first ``--warmup`` sessions and
after the last, the growth per 100 sessions (least squares over the sessions
after warm-up), and the sessions whose turn got no answer (exit status 1).

``--compare`` runs the same churn three times, each in a fresh process: the
default, then one memory lever off at a time: no C heap trim after sessions
(``--no-release``), and ONNX Runtime's CPU memory arena back on
(``VOXGATE_ONNX_ARENA=1``, what voxgate did before).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from voxgate.bench.harness import start_bench_server
from voxgate.bench.soak import rss_mib
from voxgate.native_memory import MemoryRelease
from voxgate.onnx_options import ARENA_ENV
from voxgate.protocol.frames import FrameType, decode, encode_event
from voxgate.transport.server import MEMORY_RELEASE

GROWTH_TARGET_MIB = 5.0  # issue 11: after the first 20 sessions vs after the last
ENDINGS = ("close", "vanish")
QUESTIONS = (
    "What is a good name for a cat?",
    "Give me one tip for sleeping better.",
    "What should I cook tonight?",
    "Tell me a fact about the moon.",
    "How do I say thank you in French?",
)
HELLO = {"type": "hello", "protocol": 2, "sample_rate": 16000, "config": {"fillers": False}}
SESSION_TIMEOUT_S = 60.0
SETTLE_S = 0.7  # > the server's MemoryRelease delay (0.5 s)


@dataclass
class ChurnResult:
    mode: str
    release_memory: bool
    sessions: int
    warmup: int
    rss_mib: list[float] = field(default_factory=list)  # after each session
    unanswered: list[int] = field(default_factory=list)  # sessions without answer audio
    seconds: float = 0.0

    def growth_mib(self) -> float:
        """RSS after the last session minus RSS after the warm-up sessions."""
        return self.rss_mib[-1] - self.rss_mib[self.warmup - 1]

    def slope_per_100(self) -> float:
        """Least-squares RSS slope over the sessions after warm-up, MiB per 100 sessions."""
        ys = self.rss_mib[self.warmup - 1 :]
        n = len(ys)
        if n < 2:
            return 0.0
        mean_x, mean_y = (n - 1) / 2, sum(ys) / n
        cov = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(ys))
        var = sum((x - mean_x) ** 2 for x in range(n))
        return 100 * cov / var


async def one_session(http: aiohttp.ClientSession, url: str, index: int, ending: str) -> bool:
    """One session, one typed turn; True when answer audio arrived."""
    try:
        ws = await http.ws_connect(url)
    except aiohttp.ClientError as exc:
        print(f"[churn] session {index}: cannot connect: {exc!r}", file=sys.stderr)
        return False
    answered = False
    try:
        await ws.send_bytes(encode_event(HELLO))
        question = QUESTIONS[index % len(QUESTIONS)]
        await ws.send_bytes(encode_event({"type": "user_text", "text": question}))
        async with asyncio.timeout(SESSION_TIMEOUT_S):
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    continue
                frame = decode(message.data)
                if frame.type is FrameType.TTS_AUDIO:
                    answered = True
                    if ending == "vanish":  # the client's process dies mid-answer: a reset
                        sock = ws.get_extra_info("socket")
                        if sock is not None:
                            sock.setsockopt(
                                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                            )
                            sock.shutdown(socket.SHUT_RDWR)
                        break
                elif frame.type is FrameType.DONE:
                    break
    except TimeoutError:
        pass
    finally:
        await ws.close()
    return answered


async def churn(
    sessions: int, warmup: int, release_memory: bool, model: str | None, trace: str | None
) -> ChurnResult:
    server = await start_bench_server(
        "churn", trace, max_sessions=4, model=model, release_memory=release_memory
    )
    arena = os.environ.get(ARENA_ENV) == "1"
    mode = (
        "default"
        if release_memory and not arena
        else ("no heap trim" if not release_memory else "ONNX arena on")
    )
    result = ChurnResult(mode, release_memory, sessions, warmup)
    release = server.runner.app[MEMORY_RELEASE]
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(sessions):
                ending = ENDINGS[i % len(ENDINGS)]
                if not await one_session(http, server.url, i, ending):
                    result.unanswered.append(i)
                # The server closes its side after the client: wait until it has, and
                # for the heap trim that follows (without trims, as long as one takes).
                trims = release.trims
                await _until_closed(server.url, http)
                await _until_trimmed(release, trims, release_memory)
                gc.collect()
                result.rss_mib.append(round(rss_mib(), 2))
                if (i + 1) % 20 == 0:
                    print(
                        f"[churn] {i + 1}/{sessions} sessions  RSS {result.rss_mib[-1]:.1f} MiB"
                        f"  unanswered {len(result.unanswered)}",
                        flush=True,
                    )
    finally:
        result.seconds = round(time.monotonic() - started, 1)
        await server.close()
    return result


async def _until_closed(url: str, http: aiohttp.ClientSession) -> None:
    health = url.replace("ws://", "http://").rsplit("/ws", 1)[0] + "/healthz"
    for _ in range(200):
        async with http.get(health) as response:
            if (await response.json())["sessions"] == 0:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("the server still holds the session 10 s after the client left")


async def _until_trimmed(release: MemoryRelease, before: int, trimming: bool) -> None:
    if not trimming:
        await asyncio.sleep(SETTLE_S)  # the same wait the default mode's trim takes
        return
    async with asyncio.timeout(10):
        while release.trims == before:
            await asyncio.sleep(0.02)


def table(results: list[ChurnResult]) -> str:
    lines = [
        "| mode | sessions | RSS after warm-up (MiB) | "
        "RSS at the end (MiB) | growth (MiB) | per 100 sessions (MiB) | unanswered |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.sessions} | "
            f"{r.rss_mib[r.warmup - 1]:.1f} | {r.rss_mib[-1]:.1f} | {r.growth_mib():+.1f} | "
            f"{r.slope_per_100():+.2f} | {len(r.unanswered)} |"
        )
    return "\n".join(lines)


def _child(args: argparse.Namespace, release: bool, arena: bool, out: Path) -> ChurnResult:
    command = [
        sys.executable, "-m", "voxgate", "bench", "churn",
        "--sessions", str(args.sessions), "--warmup", str(args.warmup), "--json", str(out),
    ]  # fmt: skip
    if args.model:
        command += ["--model", args.model]
    if not release:
        command.append("--no-release")
    env = {**os.environ, ARENA_ENV: "1" if arena else "0"}
    done = subprocess.run(command, check=False, env=env)
    if not out.is_file():
        raise SystemExit(
            f"voxgate bench churn: the run {' '.join(command[3:])} failed "
            f"(exit status {done.returncode}; its output is above)"
        )
    data = json.loads(out.read_text())
    return ChurnResult(**data)


def cli_churn(args: argparse.Namespace) -> int:
    if args.warmup < 1 or args.sessions <= args.warmup:
        print("voxgate bench churn: need --sessions > --warmup >= 1", file=sys.stderr)
        return 2
    if args.compare:
        with tempfile.TemporaryDirectory() as tmp:
            levers = [(True, False), (False, False), (True, True)]  # (trim, arena)
            results = [
                _child(args, release, arena, Path(tmp) / f"{i}.json")
                for i, (release, arena) in enumerate(levers)
            ]
    else:
        results = [
            asyncio.run(churn(args.sessions, args.warmup, args.release, args.model, args.trace))
        ]
    if args.json:
        raw = [asdict(r) for r in results] if args.compare else asdict(results[0])
        Path(args.json).write_text(json.dumps(raw))
    print(f"\n[churn] one typed turn per session, endings alternate {' / '.join(ENDINGS)}")
    print(table(results))
    default = [r for r in results if r.mode == "default"]
    if default:
        verdict = "ok" if default[0].growth_mib() < GROWTH_TARGET_MIB else "OVER TARGET"
        print(
            f"[churn] growth after the first {args.warmup} sessions: target < "
            f"{GROWTH_TARGET_MIB:g} MiB: {verdict}"
        )
    unanswered = sum(len(r.unanswered) for r in results)
    if unanswered:
        print(f"[churn] {unanswered} session(s) got no answer", file=sys.stderr)
        return 1
    return 0
