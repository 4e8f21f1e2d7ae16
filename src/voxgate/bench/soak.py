"""``voxgate bench soak``: K sessions talking at once for T minutes. Does anything fail or grow?

The server runs in this process (models loaded once, loopback only). Each session
is a ``converse`` client on a real WebSocket that speaks the benchmark
conversation's real speech in turn, paced in real time, waits for the answer,
listens to it, and speaks again until the time is up. Sessions start at
different points of the conversation so they do not speak in lockstep.

Reported: turns completed and failed, error frames, voice-to-voice (client clock:
user speech end -> first answer audio), and this process's RSS (VmRSS) sampled
every few seconds, with its growth after warm-up (target < 5 %).

``--find-max`` runs K = 1, 2, 3, ... (each for ``--minutes``) and stops at the
first K where real time fails: p95 voice-to-voice over 3 s, or any failed turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from voxgate.bench.conversation import Utterance, build_conversation
from voxgate.bench.harness import start_bench_server
from voxgate.bench.latency import percentile
from voxgate.client.converse import VoiceClient
from voxgate.protocol.frames import FrameType, encode

# Real time, as the find-max search defines it.
REALTIME_P95_MS = 3000.0
GROWTH_TARGET = 0.05
MAX_MINUTES = 120.0  # a soak is bounded; longer runs are repeated runs
TURN_TIMEOUT_S = 60.0
CONVERSATION_TURNS = 8  # the distinct utterances each session cycles through


@dataclass
class SoakTurn:
    session: int
    label: str
    started_s: float  # since the soak began
    v2v_ms: float | None
    errors: list[str]

    @property
    def failed(self) -> bool:
        return bool(self.errors) or self.v2v_ms is None


@dataclass
class SoakResult:
    sessions: int
    minutes: float
    turns: list[SoakTurn] = field(default_factory=list)
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    warmup_s: float = 0.0

    @property
    def failed_turns(self) -> int:
        return sum(t.failed for t in self.turns)

    @property
    def errors(self) -> int:
        return sum(len(t.errors) for t in self.turns)

    def v2v(self) -> list[float]:
        return [t.v2v_ms for t in self.turns if t.v2v_ms is not None]

    def p95_ms(self) -> float | None:
        values = self.v2v()
        return percentile(values, 0.95) if values else None

    def growth(self) -> tuple[float, float, float] | None:
        """(RSS at the end of warm-up, RSS at the end, relative growth), MiB."""
        return rss_growth(self.rss_mib, self.warmup_s)

    def realtime(self) -> bool:
        p95 = self.p95_ms()
        return (
            bool(self.turns)
            and self.failed_turns == 0
            and p95 is not None
            and p95 <= REALTIME_P95_MS
        )


def parse_vmrss_kib(status: str) -> int:
    """VmRSS from the text of /proc/<pid>/status, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS line (not Linux?)")


def rss_mib() -> float:
    return parse_vmrss_kib(Path("/proc/self/status").read_text()) / 1024


def rss_growth(
    samples: list[tuple[float, float]], warmup_s: float
) -> tuple[float, float, float] | None:
    """Baseline: the first sample at or after warm-up; end: the last sample."""
    after = [mib for t, mib in samples if t >= warmup_s]
    if len(after) < 2:
        return None
    return after[0], after[-1], (after[-1] - after[0]) / after[0]


async def sample_rss(result: SoakResult, started: float, every_s: float) -> None:
    while True:
        result.rss_mib.append((round(time.monotonic() - started, 1), round(rss_mib(), 1)))
        await asyncio.sleep(every_s)


async def talker(
    index: int,
    url: str,
    conversation: list[Utterance],
    started: float,
    deadline: float,
    result: SoakResult,
    first_turn_done: asyncio.Event,
) -> None:
    """One session: speak, wait for the answer, listen, repeat until the deadline."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, max_msg_size=0)
            client = VoiceClient(ws)
            await client.handshake()
            await ws.send_bytes(encode(FrameType.AUDIO_START))
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.turns.append(SoakTurn(index, "connect", 0.0, None, [f"connect: {exc!r}"]))
            first_turn_done.set()
            return
        n = 0
        while time.monotonic() < deadline:
            utterance = conversation[(index * 3 + n) % len(conversation)]
            begun = time.monotonic() - started
            try:
                turn = await client.turn(utterance.audio, timeout=TURN_TIMEOUT_S)
            except (aiohttp.ClientError, ConnectionError) as exc:
                result.turns.append(
                    SoakTurn(index, utterance.label, begun, None, [f"connection: {exc!r}"])
                )
                break
            result.turns.append(
                SoakTurn(
                    index, utterance.label, begun, turn.client_voice_to_voice_ms, list(turn.errors)
                )
            )
            if n == 0:
                first_turn_done.set()
            n += 1
        first_turn_done.set()
        await client.close()


async def progress(result: SoakResult, started: float, minutes: float, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        p95 = result.p95_ms()
        rss = result.rss_mib[-1][1] if result.rss_mib else rss_mib()
        print(
            f"[soak] K={result.sessions} {time.monotonic() - started:5.0f}/{minutes * 60:.0f} s"
            f"  turns {len(result.turns)} (failed {result.failed_turns})"
            f"  p95 v2v {'—' if p95 is None else f'{p95:.0f} ms'}  RSS {rss:.0f} MiB",
            flush=True,
        )


async def soak_once(
    url: str,
    sessions: int,
    minutes: float,
    conversation: list[Utterance],
    *,
    sample_every_s: float,
    warmup_s: float,
) -> SoakResult:
    result = SoakResult(sessions, minutes)
    started = time.monotonic()
    deadline = started + minutes * 60
    firsts = [asyncio.Event() for _ in range(sessions)]
    background = [
        asyncio.create_task(sample_rss(result, started, sample_every_s)),
        asyncio.create_task(progress(result, started, minutes, 10.0)),
    ]
    talkers = [
        asyncio.create_task(talker(i, url, conversation, started, deadline, result, firsts[i]))
        for i in range(sessions)
    ]
    try:
        # Warm-up: until every session has had its first answer, and at least warmup_s.
        await asyncio.gather(*(e.wait() for e in firsts))
        await asyncio.sleep(max(0.0, started + warmup_s - time.monotonic()))
        result.warmup_s = round(time.monotonic() - started, 1)
        await asyncio.gather(*talkers)
        result.rss_mib.append((round(time.monotonic() - started, 1), round(rss_mib(), 1)))
    finally:
        for task in (*background, *talkers):
            task.cancel()
        for task in (*background, *talkers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return result


def report(result: SoakResult) -> str:
    values = result.v2v()
    lines = [
        f"[soak] K={result.sessions} for {result.minutes:g} min: "
        f"turns {len(result.turns)} (failed {result.failed_turns}), "
        f"error frames {result.errors}"
    ]
    if values:
        lines.append(
            f"[soak]   voice-to-voice (client) median {statistics.median(values):.0f} ms,"
            f" p95 {percentile(values, 0.95):.0f} ms, max {max(values):.0f} ms"
        )
    errors = sorted({e.split(":")[0] for t in result.turns for e in t.errors})
    if errors:
        lines.append(f"[soak]   error kinds: {', '.join(errors)}")
    series = "  ".join(f"{t:.0f}s {mib:.0f}" for t, mib in result.rss_mib)
    lines.append(f"[soak]   RSS MiB over time: {series}")
    growth = result.growth()
    if growth is None:
        lines.append("[soak]   RSS growth: too few samples after warm-up (run longer)")
    else:
        start, end, rel = growth
        peak = max(mib for t, mib in result.rss_mib if t >= result.warmup_s)
        verdict = "ok" if rel < GROWTH_TARGET else "OVER TARGET"
        lines.append(
            f"[soak]   RSS after warm-up ({result.warmup_s:.0f} s): {start:.0f} -> "
            f"{end:.0f} MiB ({rel:+.1%}; target < {GROWTH_TARGET:.0%}: {verdict}), "
            f"peak {peak:.0f}"
        )
    lines.append(
        f"[soak]   real time (p95 <= {REALTIME_P95_MS:.0f} ms, no failed turn): "
        f"{'yes' if result.realtime() else 'NO'}"
    )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[SoakResult]:
    server = await start_bench_server(
        "soak", args.trace, max_sessions=max(args.max_sessions, args.sessions)
    )
    conversation = build_conversation(
        Path(args.speech_dir) if args.speech_dir else None, CONVERSATION_TURNS
    )
    url = server.url
    counts = range(1, args.max_sessions + 1) if args.find_max else [args.sessions]
    results: list[SoakResult] = []
    try:
        for k in counts:
            print(f"[soak] {k} session(s) for {args.minutes:g} min...", flush=True)
            result = await soak_once(
                url,
                k,
                args.minutes,
                conversation,
                sample_every_s=args.sample_every,
                warmup_s=args.warmup,
            )
            results.append(result)
            print(report(result), flush=True)
            if args.find_max and not result.realtime():
                break
    finally:
        await server.close()
    return results


def max_realtime_sessions(results: list[SoakResult]) -> int:
    """The largest K of consecutive real-time runs from K=1."""
    best = 0
    for result in sorted(results, key=lambda r: r.sessions):
        if not result.realtime() or result.sessions != best + 1:
            break
        best = result.sessions
    return best


def cli_soak(args: argparse.Namespace) -> int:
    if not 0 < args.minutes <= MAX_MINUTES:
        print(f"voxgate bench soak: --minutes must be in (0, {MAX_MINUTES:g}]", file=sys.stderr)
        return 2
    if args.sessions < 1 or args.max_sessions < 1:
        print("voxgate bench soak: --sessions and --max-sessions must be >= 1", file=sys.stderr)
        return 2
    results = asyncio.run(run(args))
    if args.find_max:
        best = max_realtime_sessions(results)
        tried = max(r.sessions for r in results)
        bound = " (the --max-sessions bound)" if best == tried else ""
        print(f"[soak] max concurrent sessions in real time: {best}{bound}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
        print(f"[soak] results -> {args.json}")
    if args.find_max:
        return 0  # the last K is expected to fail: that is the answer
    return 0 if all(r.failed_turns == 0 for r in results) else 1
