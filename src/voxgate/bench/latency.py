"""``voxgate bench latency [--compare]``: real speech through a real server, stage by stage.

The server runs in this process (models loaded once) and is driven over a
real WebSocket by the ``converse`` client, which paces audio in real time and
measures voice-to-voice on its own clock: user speech end -> first *answer*
audio frame received (acknowledgment fillers never count as the answer).

With ``--compare`` the same conversation also runs ``sequential`` first (no
overlap, no speculation, no partials, sentence TTS, the 30 s Whisper path,
500 ms endpointing: the "before" of the design documents). With ``--ablate``
it runs once more per lever with only that lever off (``-short-context``,
``-partials``, ``-prime``, ``-speculation``, ``-clauses``), so each lever's worth is
measured against the default in the same run, plus the two endpointing
choices: the minimum delay at its old 200 ms, and Smart Turn v3.2 on, and
the opt-in short first chunk (4 words).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from voxgate.bench.conversation import Utterance, build_conversation
from voxgate.bench.harness import start_bench_server
from voxgate.client.converse import TurnResult, VoiceClient, converse
from voxgate.client.realtime_client import converse_realtime
from voxgate.config import SessionConfig, sequential_config
from voxgate.engines import Engines
from voxgate.stt.whisper import WhisperSTT

STAGES = (
    "endpointing",
    "stt",
    "stt_after_speech_end",
    "llm_ttft",
    "speculation_lead",
    "llm_after_commit",
    "answer_after_commit",
    "tts_first_byte",
    "first_audio",
    "voice_to_voice",
)


@dataclass(frozen=True)
class Mode:
    """One way to run the conversation: session settings, and the STT path to use."""

    name: str
    config: SessionConfig
    short_context: bool = True  # an engine setting: applied for the mode's run
    plotted: bool = False  # in the waterfall figure (the default and the baseline)
    realtime: bool = False  # through the OpenAI Realtime endpoint, not the native protocol


def ablations(name: str) -> list[Mode]:
    """The default, then one lever off at a time."""
    default = SessionConfig()
    return [
        Mode(name, default, plotted=True),
        Mode(f"{name} -short-context", default, short_context=False),
        Mode(f"{name} -partials", default.model_copy(update={"interim_stt": False})),
        Mode(f"{name} -prime", default.model_copy(update={"prime_partials": False})),
        Mode(f"{name} -speculation", default.model_copy(update={"speculate": False})),
        Mode(f"{name} -clauses", default.model_copy(update={"clause_chunking": False})),
        # Not levers but the two endpointing choices this release made, measured the same way.
        Mode(f"{name} commit-200", default.model_copy(update={"endpoint_min_ms": 200})),
        Mode(f"{name} +smart-turn", default.model_copy(update={"smart_turn": True})),
        Mode(f"{name} +first-4-words", default.model_copy(update={"first_chunk_words": 4})),
    ]


def modes_for(name: str, args: argparse.Namespace) -> list[Mode]:
    modes = ablations(name) if args.ablate else [Mode(name, SessionConfig(), plotted=True)]
    if args.ablate_guard:
        modes.append(Mode(f"{name} no-guard", SessionConfig(reply_guard=False)))
    if args.realtime:  # the same settings through /v1/realtime, right after the native run
        modes.insert(1, Mode(f"{name} realtime", SessionConfig(), realtime=True))
    if args.compare:
        modes.insert(0, Mode("sequential" if name == "voxgate" else f"{name} sequential",
                             sequential_config(), short_context=False, plotted=True))  # fmt: skip
    return modes


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
    stt_source: str | None
    answer_ready_at_commit: bool | None
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
            stt_source=metrics.get("stt_source"),
            answer_ready_at_commit=metrics.get("answer_ready_at_commit"),
            wasted_llm_calls=int(metrics.get("wasted_llm_calls") or 0),
            false_endpoint=result.false_endpoint,
            mid_sentence_pause=utterance.mid_sentence_pause,
            timestamps=metrics.get("timestamps", {}),
            spans=spans,
            llm=metrics.get("llm", {}),
        )


# A speculative reply that starts this long before the commit has really led it.
LEAD_TARGET_MS = 100
BENCH_SEED = 20261201
# A p95 from fewer turns is one or two samples: not quoted.
P95_MIN_TURNS = 20


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


def _transport_ms(row: TurnRow) -> float | None:
    """What the wire added to a turn: the client's voice-to-voice minus the server's own
    (speech end on the audio clock -> first answer audio sent). Protocol framing, audio
    coding and resampling land here, not the model's variance from turn to turn."""
    server = row.durations.get("voice_to_voice")
    if row.client_v2v_ms is None or server is None:
        return None
    return row.client_v2v_ms - server


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
    series["wire (client - server)"] = _transport_ms
    for name, get in series.items():
        stats = [_stat([get(r) for r in by_mode[m]]) for m in modes]
        line = f"{name:<24}" + "".join(f"{_fmt(s):>{width}}" for s in stats)
        if compare and stats[0] and stats[1] and stats[0][0] > 0:
            line += f"{stats[1][0] / stats[0][0]:>11.2f}"
        lines.append(line)
    lines.append("")
    for mode in modes:
        lines.append(_mode_line(mode, by_mode[mode]))
    lines.append("")
    lines.append("speculation: lead = commit - start of the kept speculative reply (ms)")
    for mode in modes:
        lines.append(_lead_line(mode, by_mode[mode]))
    return "\n".join(lines)


def mode_table(rows: list[TurnRow], modes: list[str]) -> str:
    """One row per mode (markdown): what a reader compares between the modes."""
    head = (
        "| mode | client v2v median | p95 | STT after speech end | commit after speech end "
        "| answer audio after commit | lead median | lead >= 100 ms | kept speculation "
        "| false endpoints | no answer |"
    )
    lines = [head, "| --- |" + " ---: |" * 10]
    for mode in modes:
        turns = [r for r in rows if r.mode == mode]
        v2v = _stat([r.client_v2v_ms for r in turns])
        p95 = f"{v2v[1]:.0f}" if v2v and len(turns) >= P95_MIN_TURNS else "n < 20"
        leads = [r.durations.get("speculation_lead") for r in turns]
        lead = _stat(leads)
        leading = sum(1 for x in leads if x is not None and x >= LEAD_TARGET_MS)
        tried = sum(r.speculative in ("hit", "miss") for r in turns)
        hits = sum(r.speculative == "hit" for r in turns)
        cells = [
            f"{v2v[0]:.0f}" if v2v else "—",
            p95,
            _median_cell([r.durations.get("stt_after_speech_end") for r in turns]),
            _median_cell([r.durations.get("endpointing") for r in turns]),
            _median_cell([r.durations.get("answer_after_commit") for r in turns]),
            f"{lead[0]:.0f}" if lead else "—",
            f"{leading}/{len(turns)}",
            f"{hits}/{tried}",
            str(sum(r.false_endpoint for r in turns)),
            str(sum(r.client_v2v_ms is None for r in turns)),
        ]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def median_p95_cell(values: Sequence[float | None], digits: int = 0) -> str:
    """ "median / p95" for a table; from fewer than P95_MIN_TURNS values, the median
    alone, marked: a p95 of a handful is one or two samples."""
    stat = _stat(list(values))
    if stat is None:
        return "—"
    median = f"{stat[0]:.{digits}f}"
    count = sum(v is not None for v in values)
    if count < P95_MIN_TURNS:
        return f"{median} (n < {P95_MIN_TURNS})"
    return f"{median} / {stat[1]:.{digits}f}"


def _median_cell(values: list[float | None]) -> str:
    stat = _stat(values)
    return "—" if stat is None else f"{stat[0]:.0f}"


def _mode_line(mode: str, turns: list[TurnRow]) -> str:
    hits = sum(r.speculative == "hit" for r in turns)
    tried = sum(r.speculative in ("hit", "miss") for r in turns)
    wasted = sum(r.wasted_llm_calls for r in turns)
    false = sum(r.false_endpoint for r in turns)
    evaluated = [r.llm.get("evaluated_tokens", 0) for r in turns]
    prompt = [r.llm.get("prompt_tokens", 0) for r in turns]
    hit_rate = f"{hits / tried:.0%}" if tried else "n/a"
    sources = Counter(r.stt_source or "none" for r in turns)
    return (
        f"{mode:<24} turns {len(turns)}  speculative hits {hits}/{tried} ({hit_rate})  "
        f"wasted LLM calls/turn {wasted / max(len(turns), 1):.2f}  false endpoints {false}  "
        f"prefill tokens/turn {statistics.mean(evaluated or [0]):.0f}"
        f" of {statistics.mean(prompt or [0]):.0f}  transcript from "
        + ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
    )


def _lead_line(mode: str, turns: list[TurnRow]) -> str:
    leads = sorted(
        lead for r in turns if (lead := r.durations.get("speculation_lead")) is not None
    )
    ready = sum(bool(r.answer_ready_at_commit) for r in turns)
    if not leads:
        return f"{mode:<24} no kept speculation; answer audio ready at commit {ready}/{len(turns)}"
    leading = sum(lead >= LEAD_TARGET_MS for lead in leads)
    spread = " ".join(f"p{q:.0f} {percentile(leads, q / 100):.0f}" for q in (10, 50, 90))
    return (
        f"{mode:<24} kept {len(leads)}/{len(turns)}  lead {spread}  "
        f">= {LEAD_TARGET_MS} ms: {leading}/{len(turns)} turns "
        f"({leading / len(turns):.0%})  answer audio ready at commit {ready}/{len(turns)}"
    )


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
    engines: Engines, url: str, mode: Mode, conversation: list[Utterance]
) -> list[TurnRow]:
    print(
        f"[bench] {mode.name}: {len(conversation)} turns of real speech, streamed in real "
        "time...",
        flush=True,
    )
    if isinstance(engines.stt, WhisperSTT):
        engines.stt.short_context = mode.short_context
    started = time.perf_counter()
    # One reply seed sequence for every mode: the modes then differ in their settings,
    # not in what the model happened to sample (reply length moves latency by 100s of ms).
    config = mode.config.model_copy(update={"seed": BENCH_SEED})
    audio = [u.audio for u in conversation]
    client: VoiceClient
    if mode.realtime:
        realtime_url = url.removesuffix("/ws") + "/v1/realtime"
        results, client = await converse_realtime(realtime_url, audio, config=config.model_dump())
    else:
        results, client = await converse(url, audio, config=config.model_dump())
    spans = _spans_for(engines, str(client.welcome.get("session_id")), len(results))
    rows = [
        TurnRow.from_result(mode.name, u, r, s)
        for u, r, s in zip(conversation, results, spans, strict=True)
    ]
    for row in rows:
        print(
            f"[bench]   {mode.name} turn {row.turn} ({row.label}): client v2v "
            f"{row.client_v2v_ms} ms, spec {row.speculative}, "
            f"heard {row.transcript!r} -> {row.reply[:60]!r}",
            flush=True,
        )
    if client.errors:
        print(f"[bench]   errors: {client.errors}", flush=True)
    print(f"[bench] {mode.name} done in {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def planned_modes(args: argparse.Namespace) -> list[tuple[str | None, list[Mode]]]:
    """Per server (model), the modes it runs, in order."""
    if args.models:
        return [(model, modes_for(model, args)) for model in args.models]
    return [(args.model, modes_for("voxgate", args))]


async def bench(args: argparse.Namespace) -> list[TurnRow]:
    """Every planned mode, one after the other, one server (and model) per model."""
    conversation = build_conversation(
        Path(args.speech_dir) if args.speech_dir else None, args.turns
    )
    rows: list[TurnRow] = []
    for model, modes in planned_modes(args):
        server = await start_bench_server(f"latency-{model or 'default'}", args.trace, model=model)
        try:
            for mode in modes:
                rows += await run_mode(server.engines, server.url, mode, conversation)
        finally:
            await server.close()
    return rows


def cli_latency(args: argparse.Namespace) -> int:
    if args.tools:
        from voxgate.bench.tool_turns import cli_tool_turns

        return cli_tool_turns(args)
    rows = asyncio.run(bench(args))
    modes = [mode.name for _, planned in planned_modes(args) for mode in planned]
    print()
    print(summarize(rows, modes))
    print()
    print(mode_table(rows, modes))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
        print(f"\n[bench] per-turn results -> {args.json}")
    if args.png:
        from voxgate.bench.figure import waterfall

        plotted = [m.name for _, planned in planned_modes(args) for m in planned if m.plotted]
        waterfall([r for r in rows if r.mode in plotted], plotted, Path(args.png))
        print(f"[bench] figure -> {args.png}")
    failed = [r for r in rows if r.client_v2v_ms is None]
    if failed:
        print(f"[bench] {len(failed)} turn(s) produced no answer audio", file=sys.stderr)
        return 1
    return 0
