"""``voxgate bench latency [--compare]``: real speech through a real server, stage by stage.

The server runs in this process (models loaded once) and is driven over a
real WebSocket by the ``converse`` client, which paces audio in real time and
measures voice-to-voice on its own clock: user speech end -> first *answer*
audio frame received (acknowledgment fillers never count as the answer).

With ``--compare`` the same conversation runs twice in the same run: once
``sequential`` (no overlap, no speculation, sentence TTS, 500 ms endpointing:
the "before" of the design documents), once ``voxgate`` (everything on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from voxgate.bench.conversation import Utterance, build_conversation
from voxgate.bench.harness import start_bench_server
from voxgate.client.converse import TurnResult, converse
from voxgate.config import SessionConfig, sequential_config
from voxgate.engines import Engines

STAGES = (
    "endpointing",
    "stt",
    "stt_after_speech_end",
    "llm_ttft",
    "llm_after_commit",
    "tts_first_byte",
    "first_audio",
    "voice_to_voice",
)


@dataclass
class TurnRow:
    mode: str
    turn: int
    label: str
    transcript: str
    reply: str
    durations: dict[str, float | None]
    client_v2v_ms: float | None
    speculative: str
    wasted_llm_calls: int
    false_endpoint: bool
    mid_sentence_pause: bool
    timestamps: dict[str, float]
    spans: list[dict[str, Any]]
    llm: dict[str, Any]

    @classmethod
    def from_result(
        cls, mode: str, utterance: Utterance, result: TurnResult, spans: list[dict[str, Any]]
    ) -> TurnRow:
        metrics = result.metrics
        return cls(
            mode=mode,
            turn=result.index + 1,
            label=utterance.label,
            transcript=result.transcript,
            reply=result.reply.strip(),
            durations=metrics.get("durations", {}),
            client_v2v_ms=result.client_voice_to_voice_ms,
            speculative=str(metrics.get("speculative", "none")),
            wasted_llm_calls=int(metrics.get("wasted_llm_calls") or 0),
            false_endpoint=result.false_endpoint,
            mid_sentence_pause=utterance.mid_sentence_pause,
            timestamps=metrics.get("timestamps", {}),
            spans=spans,
            llm=metrics.get("llm", {}),
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _stat(values: list[float | None]) -> tuple[float, float] | None:
    clean = [v for v in values if v is not None]
    if not clean:
        return None
    return statistics.median(clean), percentile(clean, 0.95)


def _fmt(stat: tuple[float, float] | None) -> str:
    return "—" if stat is None else f"{stat[0]:7.0f} {stat[1]:7.0f}"


def _duration(stage: str, row: TurnRow) -> float | None:
    return row.durations.get(stage)


def _client_v2v(row: TurnRow) -> float | None:
    return row.client_v2v_ms


def summarize(rows: list[TurnRow], modes: list[str]) -> str:
    """The table: median and p95 per stage and mode, and voxgate/sequential ratios."""
    by_mode = {m: [r for r in rows if r.mode == m] for m in modes}
    width = max(18, *(len(m) + 12 for m in modes))
    header = f"{'stage (ms)':<24}" + "".join(f"{m + ' med   p95':>{width}}" for m in modes)
    compare = len(modes) == 2
    if compare:
        header += f"{'ratio med':>11}"
    lines = [header, "-" * len(header)]
    series: dict[str, Callable[[TurnRow], float | None]] = {
        stage: partial(_duration, stage) for stage in STAGES
    }
    series["client voice_to_voice"] = _client_v2v
    for name, get in series.items():
        stats = [_stat([get(r) for r in by_mode[m]]) for m in modes]
        line = f"{name:<24}" + "".join(f"{_fmt(s):>{width}}" for s in stats)
        if compare and stats[0] and stats[1] and stats[0][0] > 0:
            line += f"{stats[1][0] / stats[0][0]:>11.2f}"
        lines.append(line)
    lines.append("")
    for mode in modes:
        turns = by_mode[mode]
        hits = sum(r.speculative == "hit" for r in turns)
        tried = sum(r.speculative in ("hit", "miss") for r in turns)
        wasted = sum(r.wasted_llm_calls for r in turns)
        false = sum(r.false_endpoint for r in turns)
        evaluated = [r.llm.get("evaluated_tokens", 0) for r in turns]
        prompt = [r.llm.get("prompt_tokens", 0) for r in turns]
        hit_rate = f"{hits / tried:.0%}" if tried else "n/a"
        lines.append(
            f"{mode:<11} turns {len(turns)}  speculative hits {hits}/{tried} ({hit_rate})  "
            f"wasted LLM calls/turn {wasted / max(len(turns), 1):.2f}  "
            f"false endpoints {false}  prefill tokens/turn {statistics.mean(evaluated or [0]):.0f}"
            f" of {statistics.mean(prompt or [0]):.0f}"
        )
    return "\n".join(lines)


def _spans_for(engines: Engines, session_id: str, turns: int) -> list[list[dict[str, Any]]]:
    """The session's spans from the server's trace (the client sees durations, not spans)."""
    engines.trace.flush()  # the trace is written on its own thread
    path = engines.trace.path
    records = []
    if path is not None and path.exists():
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    spans = [r.get("spans", []) for r in records if r.get("session") == session_id]
    return (spans + [[] for _ in range(turns)])[:turns]


async def run_mode(
    engines: Engines, url: str, mode: str, config: SessionConfig, conversation: list[Utterance]
) -> list[TurnRow]:
    print(
        f"[bench] {mode}: {len(conversation)} turns of real speech, streamed in real time...",
        flush=True,
    )
    started = time.perf_counter()
    results, client = await converse(
        url, [u.audio for u in conversation], config=config.model_dump()
    )
    spans = _spans_for(engines, str(client.welcome.get("session_id")), len(results))
    rows = [
        TurnRow.from_result(mode, u, r, s)
        for u, r, s in zip(conversation, results, spans, strict=True)
    ]
    for row in rows:
        print(
            f"[bench]   {mode} turn {row.turn} ({row.label}): client v2v "
            f"{row.client_v2v_ms} ms, spec {row.speculative}, "
            f"heard {row.transcript!r} -> {row.reply[:60]!r}",
            flush=True,
        )
    if client.errors:
        print(f"[bench]   errors: {client.errors}", flush=True)
    print(f"[bench] {mode} done in {time.perf_counter() - started:.0f} s", flush=True)
    return rows


async def bench(args: argparse.Namespace) -> list[TurnRow]:
    conversation = build_conversation(
        Path(args.speech_dir) if args.speech_dir else None, args.turns
    )
    if args.models:
        return await bench_models(args, conversation)
    server = await start_bench_server("latency", args.trace, model=args.model)
    modes: list[tuple[str, SessionConfig]] = [("voxgate", SessionConfig())]
    if args.compare:
        modes.insert(0, ("sequential", sequential_config()))
    rows: list[TurnRow] = []
    try:
        for mode, config in modes:
            rows += await run_mode(server.engines, server.url, mode, config, conversation)
    finally:
        await server.close()
    return rows


async def bench_models(args: argparse.Namespace, conversation: list[Utterance]) -> list[TurnRow]:
    """The same conversation on each model, one after the other, one server (and model) each."""
    rows: list[TurnRow] = []
    for model in args.models:
        server = await start_bench_server(f"latency-{model}", args.trace, model=model)
        try:
            for mode, config in model_modes(model, args.ablate_guard):
                rows += await run_mode(server.engines, server.url, mode, config, conversation)
        finally:
            await server.close()
    return rows


def model_modes(model: str, ablate_guard: bool) -> list[tuple[str, SessionConfig]]:
    """The settings a model runs under: the default, and with the reply guard off."""
    modes = [(model, SessionConfig())]
    if ablate_guard:
        modes.append((f"{model} no-guard", SessionConfig(reply_guard=False)))
    return modes


def cli_latency(args: argparse.Namespace) -> int:
    rows = asyncio.run(bench(args))
    modes = (
        [m for model in args.models for m, _ in model_modes(model, args.ablate_guard)]
        if args.models
        else sorted({r.mode for r in rows}, key=lambda m: m != "sequential")
    )
    print()
    print(summarize(rows, modes))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
        print(f"\n[bench] per-turn results -> {args.json}")
    if args.png:
        from voxgate.bench.figure import waterfall

        waterfall(rows, modes, Path(args.png))
        print(f"[bench] figure -> {args.png}")
    failed = [r for r in rows if r.client_v2v_ms is None]
    if failed:
        print(f"[bench] {len(failed)} turn(s) produced no answer audio", file=sys.stderr)
        return 1
    return 0
