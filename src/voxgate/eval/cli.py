"""``voxgate eval``: conversation quality on real models, as a table, with thresholds.

Each run (a model, a persona, a setting) loads its own engines, plays every
scenario through a real session and scores each reply. The exit status is 1
when a run misses a threshold or a turn got no reply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from voxgate.config import SessionConfig
from voxgate.eval.judge import TurnOutcome, llm_judge
from voxgate.eval.report import Summary, Thresholds, by_kind, summarize, table
from voxgate.eval.runner import eval_user, run_audio, run_text
from voxgate.eval.scenarios import Scenario, ScenarioError, load_scenarios


@dataclass(frozen=True, slots=True)
class RunSpec:
    model: str
    persona: str
    guard: bool

    @property
    def label(self) -> str:
        return f"{self.model}/{self.persona}" + ("" if self.guard else " no-guard")


def _runs(args: argparse.Namespace) -> list[RunSpec]:
    models = args.models or [args.model or "default"]
    guards = [True, False] if args.ablate_guard else [True]
    return [RunSpec(m, p, g) for m in models for p in args.persona for g in guards]


def _print_turn(outcome: TurnOutcome) -> None:
    flags = [v.rule for v in outcome.violations] + [f"forbid:{w}" for w in outcome.forbidden]
    if outcome.known is False:
        flags.append("wrong")
    if outcome.guard:
        flags.append("guard:" + ",".join(str(h.get("action")) for h in outcome.guard))
    mark = "ok " if outcome.rules_pass and outcome.known is not False else "BAD"
    print(f"  {mark} {outcome.scenario}#{outcome.index} {outcome.user[:60]!r} -> "
          f"{outcome.reply[:90]!r} {' '.join(flags)}", flush=True)


async def _run_one(spec: RunSpec, scenarios: list[Scenario], args: argparse.Namespace
                   ) -> list[TurnOutcome]:
    from voxgate.engines import load_default_engines

    print(f"[eval] {spec.label}: loading and warming models...", flush=True)
    model = None if spec.model == "default" else spec.model
    store = Path(tempfile.mkdtemp(prefix="voxgate-eval-")) / "memory.sqlite3"
    engines = load_default_engines(
        memory_path=store, model=model, default_persona=spec.persona,
        personas_dir=Path(args.personas_dir) if args.personas_dir else None,
        llm_url=args.llm_url, llm_model=args.llm_model,
    )
    await engines.warm()
    # Text mode: reply audio is not paced (nobody listens), so turns take compute time only.
    config = SessionConfig(fillers=False, reply_guard=spec.guard,
                           output_lead_ms=60000 if not args.audio else 300)
    outcomes: list[TurnOutcome] = []
    server = None
    try:
        if args.audio:
            from voxgate.bench.harness import serve_engines

            server = await serve_engines(engines)
        user = eval_user()
        plays = [(rep, s) for rep in range(max(args.repeat, 1)) for s in scenarios]
        for rep, scenario in plays:
            print(f"[eval] {spec.label}: {scenario.id} ({len(scenario.turns)} turns)", flush=True)
            started = time.perf_counter()
            # Reproducible: the same seed gives the same replies; each repetition a new one.
            config = config.model_copy(update={"seed": args.seed + rep})
            if server is not None:
                outcomes += await run_audio(engines, server.url, scenario, spec.persona, config,
                                            _print_turn)
            else:
                outcomes += await run_text(engines, scenario, spec.persona, config,
                                           f"{user}-{scenario.id}-{len(outcomes)}", _print_turn)
            print(f"[eval]   {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        if server is not None:
            await server.close()  # closes the engines too
        else:
            await engines.close()
    if args.judge_url:
        for outcome in outcomes:
            outcome.on_topic = await llm_judge(args.judge_url, args.judge_model, outcome.user,
                                               outcome.reply)
    return outcomes


async def _run_all(args: argparse.Namespace, scenarios: list[Scenario]
                   ) -> list[tuple[RunSpec, list[TurnOutcome]]]:
    return [(spec, await _run_one(spec, scenarios, args)) for spec in _runs(args)]


def cli_eval(args: argparse.Namespace) -> int:
    try:
        scenarios = load_scenarios(Path(args.scenarios) if args.scenarios else None,
                                   args.only or None)
    except ScenarioError as exc:
        print(f"voxgate eval: {exc}", file=sys.stderr)
        return 2
    turns = sum(len(s.turns) for s in scenarios)
    print(f"[eval] {len(scenarios)} scenarios, {turns} turns per run, "
          f"{'audio' if args.audio else 'text'} mode", flush=True)
    results = asyncio.run(_run_all(args, scenarios))
    summaries: list[Summary] = [summarize(spec.label, outs) for spec, outs in results]
    print()
    print(table(summaries))
    for spec, outs in results:
        print(f"\n{spec.label} by scenario kind:")
        print(by_kind(outs))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {spec.label: [o.as_dict() for o in outs] for spec, outs in results}, indent=1))
        print(f"\n[eval] per-turn results -> {args.json}")
    limits = Thresholds(min_pass=args.min_pass, min_known=args.min_known)
    # The guard-off rows of an ablation are a baseline: they are reported, not gated.
    problems = [p for spec, s in zip(_runs(args), summaries, strict=True) if spec.guard
                for p in s.failures(limits)]
    for problem in problems:
        print(f"[eval] FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0
