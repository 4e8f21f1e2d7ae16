"""Plain-text tables and target checks for ``voxgate bench stress``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from voxgate.bench.fixtures import FixtureTiming
from voxgate.bench.stress_client import TurnRecord
from voxgate.bench.stress_runs import BareTurns, RunResult, SwitchTurn

GB = 1024.0  # MiB per GiB


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns, as wide as their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _med(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _f(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _replies(records: Sequence[TurnRecord]) -> str:
    answered = sum(bool(r.reply) and r.done is not None and not r.errors for r in records)
    return f"{answered}/{len(records)}"


def _turn_ms(records: Sequence[TurnRecord]) -> list[float]:
    return [t for r in records if (t := r.turn_ms) is not None]


FIXTURE_HEADERS = ("N", "M", "turns", "materialize ms", "serve wall ms", "turn mean ms",
                   "turn max ms", "overhead med ms", "overhead max ms", "slack med ms",
                   "CPU/turn ms", "replies")


def fixture_table(runs: Sequence[RunResult], timing: FixtureTiming, first_chunk: int,
                  lockstep: bool = False) -> str:
    rows = []
    for run in runs:
        turns = _turn_ms(run.records)
        rows.append([str(run.n), str(run.m), str(len(run.records)), _f(run.materialize_ms),
                     _f(run.serve_wall_ms), _f(statistics.mean(turns) if turns else None),
                     _f(max(turns, default=None)), _f(_med(run.overhead_ms), 2),
                     _f(max(run.overhead_ms, default=None), 2), _f(_med(run.slack_ms), 2),
                     _f(run.cpu_ms / max(len(run.records), 1), 2), _replies(run.records)])
    head = (f"Fixture runs: FixedDelayLLM first token {timing.ttft_ms:.0f} ms then "
            f"{timing.per_token_ms:.0f} ms/token, FixedDelayTTS {timing.tts_ms:.0f} ms per "
            f"clause; the first clause needs {first_chunk} tokens, so "
            f"{timing.critical_path_ms(first_chunk):.0f} ms nominal from commit to first audio.")
    legend = ("overhead = time to first answer audio - what the fixtures actually slept on that "
              "path; slack = actual - nominal sleep (timer granularity and event-loop queueing);\n"
              "CPU/turn = process CPU over the serve phase / turns: the fixtures only sleep, but "
              "every timer wake-up of the loop is charged CPU (see below).\n"
              "materialize = N x (Session + hello handshake), one after another; serve wall "
              "includes letting each reply finish playing before the next turn.\n"
              + ("sessions run in lockstep: every session's tokens land in the same loop "
                 "iteration (worst case)." if lockstep else
                 "session starts are spread evenly over one reply's duration (independent "
                 "users; serve wall includes the spread), then all N talk concurrently."))
    return f"{head}\n{table(FIXTURE_HEADERS, rows)}\n{legend}"


REAL_HEADERS = ("N", "M", "turns", "prewarm ms", "materialize ms", "serve wall ms",
                "turn mean ms", "turn max ms", "TTFT med ms", "TTFT max ms", "replies",
                "slots", "slot MB", "RSS MB")


def real_table(runs: Sequence[RunResult]) -> str:
    rows = []
    for run in runs:
        turns = _turn_ms(run.records)
        ttft = [t for r in run.records if (t := r.llm_ttft_ms) is not None]
        rows.append([str(run.n), str(run.m), str(len(run.records)), _f(run.prewarm_ms),
                     _f(run.materialize_ms), _f(run.serve_wall_ms),
                     _f(statistics.mean(turns) if turns else None), _f(max(turns, default=None)),
                     _f(_med(ttft)), _f(max(ttft, default=None)), _replies(run.records),
                     str(run.slots), _f(run.slot_mb, 1), _f(run.rss_mb)])
    legend = ("TTFT = LLM request start -> first token (metrics llm_ttft); with N sessions on one "
              "model it includes waiting for the other sessions' turns.\n"
              "RSS MB = VmRSS after every persona of the run has answered: the model's mapped "
              "weights, llama.cpp buffers, the run's KV slots and sessions.")
    return f"{table(REAL_HEADERS, rows)}\n{legend}"


def _ratio(record: TurnRecord) -> float | None:
    prompt = record.llm.get("prompt_tokens") or 0
    return 100.0 * record.llm.get("evaluated_tokens", 0) / prompt if prompt else None


def warm_ratios(runs: Sequence[RunResult]) -> list[float]:
    """Evaluated % of prompt per turn, each persona's first turn left out."""
    return [x for run in runs for r in run.records if r.turn > 1 and (x := _ratio(r)) is not None]


TOKEN_HEADERS = ("N", "warm turns", "prompt", "reused", "evaluated", "generated", "eval %",
                 "eval % max",
                 "1st prompt", "1st reused", "1st eval", "1st eval %", "all eval %")


def token_table(runs: Sequence[RunResult]) -> str:
    rows = []
    for run in runs:
        warm = [r for r in run.records if r.turn > 1]
        first = [r for r in run.records if r.turn == 1]

        def med(records: list[TurnRecord], key: str) -> str:
            return _f(_med([float(r.llm.get(key, 0)) for r in records]))

        ratios = [x for r in warm if (x := _ratio(r)) is not None]
        firsts = [x for r in first if (x := _ratio(r)) is not None]
        total_prompt = sum(r.llm.get("prompt_tokens", 0) for r in run.records)
        total_eval = sum(r.llm.get("evaluated_tokens", 0) for r in run.records)
        rows.append([str(run.n), str(len(warm)), med(warm, "prompt_tokens"),
                     med(warm, "reused_tokens"), med(warm, "evaluated_tokens"),
                     med(warm, "generated_tokens"), _f(_med(ratios), 1),
                     _f(max(ratios, default=None), 1),
                     med(first, "prompt_tokens"), med(first, "reused_tokens"),
                     med(first, "evaluated_tokens"), _f(_med(firsts), 1),
                     _f(100.0 * total_eval / total_prompt if total_prompt else None, 1)])
    legend = ("Tokens per turn (medians). prompt/reused/evaluated/eval %: turns after each "
              "persona's first; 1st: each persona's first turn (its slot was prewarmed with the\n"
              "system prompt at start-up); all eval % = sum evaluated / sum prompt over all turns.")
    return f"{table(TOKEN_HEADERS, rows)}\n{legend}"


def switch_table(turns: Sequence[SwitchTurn]) -> str:
    rows = []
    for kind in ("warm-up", "same", "switch"):
        records = [t.record for t in turns if t.kind == kind]
        ttft = [t for r in records if (t := r.llm_ttft_ms) is not None]

        def med(key: str, records: list[TurnRecord] = records) -> str:
            return _f(_med([float(r.llm.get(key, 0)) for r in records]), 1)

        rows.append([kind, str(len(records)), _f(_med(ttft), 1), _f(max(ttft, default=None), 1),
                     med("restore_ms"), med("prefill_ms"), med("evaluated_tokens"),
                     med("prompt_tokens")])
    headers = ("turn kind", "turns", "TTFT med ms", "TTFT max ms", "restore med ms",
               "prefill med ms", "evaluated med", "prompt med")
    sequence = " ".join(t.persona for t in turns)
    head = (f"Persona switch probe: 2 personas, one turn at a time (no queueing), sequence "
            f"{sequence}.\nswitch = the other persona ran last (save its slot, restore this "
            f"one's, prefill the suffix); same = this persona ran last.")
    ratio = switch_ratio(turns)
    tail = f"TTFT switch / same (medians): {_f(ratio, 2)}"
    return f"{head}\n{table(headers, rows)}\n{tail}"


def switch_ratio(turns: Sequence[SwitchTurn]) -> float | None:
    def ttft(kind: str) -> float | None:
        return _med([t for x in turns if x.kind == kind
                     if (t := x.record.llm_ttft_ms) is not None])

    same, switch = ttft("same"), ttft("switch")
    return switch / same if same and switch is not None else None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    ok: bool | None  # None: not measured in this run


def targets(fixture: Sequence[RunResult], real: Sequence[RunResult],
            switch: Sequence[SwitchTurn], bare: BareTurns | None = None) -> list[Target]:
    out: list[Target] = []
    if fixture:
        run = max(fixture, key=lambda r: r.n)
        med = _med(run.overhead_ms)
        measured = f"{_f(med, 2)} ms"
        if bare is not None:
            measured += (f" (bare: {_f(_med(bare.first_audio_ms), 2)} ms to first audio, "
                         f"{_f(_med(bare.cpu_ms), 2)} ms CPU per turn)")
        out.append(Target(f"substrate overhead median per turn at N={run.n} <= 1 ms", measured,
                          None if med is None else med <= 1.0))
    ratios = warm_ratios(real)
    if ratios:
        within = sum(x <= 10.0 for x in ratios)
        out.append(Target("tokens evaluated per turn after warm-up <= 10 % of prompt",
                          f"median {statistics.median(ratios):.1f} %, max {max(ratios):.1f} %, "
                          f"{within}/{len(ratios)} turns within",
                          statistics.median(ratios) <= 10.0))
    ratio = switch_ratio(switch)
    if ratio is not None:
        out.append(Target("TTFT on a persona switch <= 2 x same persona", f"{ratio:.2f} x",
                          ratio <= 2.0))
    six = next((r for r in real if r.n == 6), None)
    if six is not None and six.rss_mb is not None:
        out.append(Target("RSS with 6 personas active <= 1.5 GB",
                          f"{six.rss_mb:.0f} MB ({six.rss_mb / GB:.2f} GB)",
                          six.rss_mb <= 1.5 * GB))
    return out


def targets_table(items: Sequence[Target]) -> str:
    rows = [[t.name, t.measured, "—" if t.ok is None else "met" if t.ok else "MISSED"]
            for t in items]
    widths = [max([len(r[i]) for r in rows] + [len(h)])
              for i, h in enumerate(("target", "measured", ""))]
    lines = [f"{'target':<{widths[0]}}  {'measured':<{widths[1]}}  result"]
    lines.append("-" * len(lines[0]))
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)
