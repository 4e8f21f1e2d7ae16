"""``voxgate bench stress``: N personas talking at once x M turns, through the real session.

Every turn is a typed user turn (EVENT ``user_text``) handed to a real
``Session`` per persona; all sessions share one ``Engines`` (one model) and
one event loop, so prompt assembly, reply runs, the clause chunker, TTS
scheduling, frames, metrics, the JSONL trace and the history all run for real.

Phase 1, fixtures: the LLM and TTS are the ``FixedDelay*`` benchmark fixtures
(``bench/fixtures.py``), which only sleep. Substrate overhead per turn is

    (first answer audio frame received - user_text handed to the session)
    - (what the fixtures actually slept on that path: LLM sleeps up to the token
       that completes the first clause, plus that clause's TTS sleep)

i.e. the wall time the substrate adds to the critical path, including waiting
for other sessions' substrate work on the shared loop. The gap between the
fixtures' actual and nominal sleeps (timer granularity, loop queueing) is
shown apart as "slack". A second, load-independent figure is process CPU time
(``time.process_time``) over the serve phase divided by turns: the fixtures
burn none, so it is the substrate's (plus the in-process client's header reads).

Phase 2, real model: the embedded llama.cpp model with the fixture TTS/STT.
Per turn it reports prompt / reused / evaluated tokens (LLMUsage) and the LLM
time to first token; a sequential probe compares TTFT when the persona
switches (save + restore a KV slot, prefill the suffix) with the same persona
twice in a row; RSS is read from /proc after the 6-persona run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voxgate.bench.fixtures import (
    FIXTURE_REPLY,
    FixtureTiming,
    reply_tokens,
    tokens_to_first_chunk,
)
from voxgate.bench.stress_report import (
    Target,
    fixture_table,
    real_table,
    switch_table,
    targets,
    targets_table,
    token_table,
)
from voxgate.bench.stress_runs import (
    REAL_REPLY_TOKENS,
    BareTurns,
    RunResult,
    SwitchTurn,
    bare_turns,
    bench_config,
    fixture_run,
    load_real_model,
    real_run,
    rss_mb,
    switch_probe,
    timer_wakeup_cpu_us,
)

BARE_TURNS = 12


def _say(message: str) -> None:
    print(f"[stress] {message}", flush=True)


def vad_build_ms(samples: int = 3) -> float:
    """Median time to build one Silero VAD, which every hello does: most of 'materialize'."""
    from voxgate.turns.vad import SileroStreamVad

    times = []
    for _ in range(samples):
        started = time.perf_counter()
        SileroStreamVad()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


async def fixture_phase(ns: list[int], m: int, timing: FixtureTiming,
                        lockstep: bool = False) -> list[RunResult]:
    _say(f"fixture phase: N = {ns}, M = {m} turns per persona")
    # First turns pay one-off costs (lazy imports, first allocations): not the substrate's.
    await fixture_run(1, 1, timing, lambda _: None)
    runs = []
    for n in ns:
        runs.append(await fixture_run(n, m, timing, _say, lockstep))
        if runs[-1].stt_calls:
            _say(f"  warning: the STT fixture was called {runs[-1].stt_calls} times")
    return runs


async def real_phase(ns: list[int], m: int,
                     timing: FixtureTiming) -> tuple[list[RunResult], list[SwitchTurn], str]:
    _say(f"real phase: loading and warming the default model (N = {ns}, M = {m})")
    with tempfile.TemporaryDirectory(prefix="voxgate-stress-") as tmp:
        model = await load_real_model(timing, Path(tmp))
        note = (f"model {model.llm.name} loaded and warmed in {model.load_ms:.0f} ms; "
                f"RSS after load {model.rss_loaded_mb:.0f} MB")
        _say(note)
        try:
            runs = [await real_run(model, n, m, _say) for n in ns]
            switch = await switch_probe(model, _say)
        finally:
            await model.llm.close()
    return runs, switch, note


def _dump(path: Path, fixture: list[RunResult], real: list[RunResult],
          switch: list[SwitchTurn], summary: dict[str, Any]) -> None:
    data = {"summary": summary, "fixture": [asdict(r) for r in fixture],
            "real": [asdict(r) for r in real], "switch": [asdict(t) for t in switch]}
    path.write_text(json.dumps(data, indent=1, default=str))


@dataclass(slots=True)
class Results:
    timing: FixtureTiming
    fixture: list[RunResult]
    bare: BareTurns
    vad_ms: float
    wake_us: float
    real: list[RunResult] = field(default_factory=list)
    switch: list[SwitchTurn] = field(default_factory=list)
    model_note: str = ""


def _print_report(res: Results, args: argparse.Namespace) -> list[Target]:
    first_chunk = tokens_to_first_chunk(reply_tokens(FIXTURE_REPLY),
                                        bench_config().clause_chunking)
    print()
    print(fixture_table(res.fixture, res.timing, first_chunk, args.lockstep))
    print(f"bare substrate (one session, zero-delay fixtures, no timer wake-ups, "
          f"{len(res.bare.cpu_ms)} turns): time to first answer audio median "
          f"{statistics.median(res.bare.first_audio_ms):.2f} ms, CPU per turn median "
          f"{statistics.median(res.bare.cpu_ms):.2f} ms (max {max(res.bare.cpu_ms):.2f})")
    print(f"one idle timer wake-up of the event loop costs {res.wake_us:.0f} us of CPU here "
          f"(fixture sleeps and the substrate's task hand-offs both pay it)")
    print(f"each hello builds a Silero VAD: {res.vad_ms:.0f} ms per session measured alone, "
          f"most of 'materialize'")
    if res.real:
        print()
        print(f"Real model runs: {res.model_note}; replies <= {REAL_REPLY_TOKENS} tokens; "
              f"fixture TTS/STT.")
        if max(args.real_personas) < max(args.personas):
            print(f"(real runs stop at N = {max(args.real_personas)}: 2 CPU cores serve one "
                  f"model, so {max(args.personas)} personas x {res.real[0].m} turns would take "
                  f"many minutes; --real-personas raises it)")
        print(real_table(res.real))
        print()
        print(token_table(res.real))
        print()
        print(switch_table(res.switch))
    print()
    checks = targets(res.fixture, res.real, res.switch, res.bare)
    print(targets_table(checks))
    print(f"peak RSS of the whole run (VmHWM): {rss_mb('VmHWM'):.0f} MB")
    return checks


def cli_stress(args: argparse.Namespace) -> int:
    timing = FixtureTiming()
    vad_ms, wake_us = vad_build_ms(), timer_wakeup_cpu_us()
    fixture = asyncio.run(fixture_phase(args.personas, args.turns, timing, args.lockstep))
    _say(f"bare substrate: one session, zero-delay fixtures, {BARE_TURNS} turns one at a time")
    res = Results(timing, fixture, asyncio.run(bare_turns(BARE_TURNS)), vad_ms, wake_us)
    real_failed = False
    if args.real:
        try:
            res.real, res.switch, res.model_note = asyncio.run(
                real_phase(args.real_personas, args.real_turns or args.turns, timing))
        except Exception as exc:  # e.g. no model: the fixture results still get printed
            _say(f"real phase failed: {type(exc).__name__}: {exc}")
            real_failed = True
    checks = _print_report(res, args)
    if args.json:
        summary = {"targets": [asdict(t) for t in checks], "vad_build_ms": vad_ms,
                   "bare": asdict(res.bare), "timer_wakeup_cpu_us": wake_us,
                   "timing": asdict(timing), "model": res.model_note}
        _dump(Path(args.json), res.fixture, res.real, res.switch, summary)
        _say(f"per-turn results -> {args.json}")
    failed = [r for run in (*res.fixture, *res.real) for r in run.records
              if not r.reply or r.errors]
    failed += [t.record for t in res.switch if not t.record.reply or t.record.errors]
    if failed:
        print(f"[stress] {len(failed)} turn(s) produced no reply or an error", file=sys.stderr)
    return 1 if failed or real_failed else 0
