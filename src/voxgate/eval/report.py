"""The eval table: one row per model/persona/setting, and the thresholds it must meet."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from voxgate.eval.judge import TurnOutcome


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The issue's targets by default: no parroting, no loops, no identity slip,
    >= 90 % of replies passing every rule, >= 80 % of known answers right."""

    max_parrot: float = 0.0
    max_repeat: float = 0.0
    max_identity: float = 0.0
    min_pass: float = 0.9
    min_known: float = 0.8


@dataclass(frozen=True, slots=True)
class Summary:
    label: str
    turns: int
    passed: float
    rates: dict[str, float]  # rule -> share of replies failing it
    known: tuple[int, int]  # right, asked
    forbidden: int
    regenerated: int
    fallbacks: int
    truncated: int
    errors: int
    latency_ms: float | None
    on_topic: tuple[int, int] | None

    @property
    def known_share(self) -> float:
        right, asked = self.known
        return right / asked if asked else 1.0

    def failures(self, limits: Thresholds) -> list[str]:
        problems = []
        for rule, limit in (("parrot", limits.max_parrot), ("repeat", limits.max_repeat),
                            ("identity", limits.max_identity)):
            if self.rates[rule] > limit:
                problems.append(f"{rule} {self.rates[rule]:.0%} > {limit:.0%}")
        if self.passed < limits.min_pass:
            problems.append(f"all rules passed {self.passed:.0%} < {limits.min_pass:.0%}")
        if self.known_share < limits.min_known:
            problems.append(f"known answers {self.known_share:.0%} < {limits.min_known:.0%}")
        if self.errors:
            problems.append(f"{self.errors} turn(s) without a reply")
        return [f"{self.label}: {p}" for p in problems]


RULES = ("parrot", "echo", "repeat", "empty", "over_long", "markdown", "identity")


def summarize(label: str, outcomes: Sequence[TurnOutcome]) -> Summary:
    n = max(len(outcomes), 1)
    hits = [h for o in outcomes for h in o.guard]
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    judged = [o.on_topic for o in outcomes if o.on_topic is not None]
    asked = [o.known for o in outcomes if o.known is not None]
    return Summary(
        label=label,
        turns=len(outcomes),
        passed=sum(o.rules_pass for o in outcomes) / n,
        rates={rule: sum(o.failed(rule) for o in outcomes) / n for rule in RULES},
        known=(sum(bool(k) for k in asked), len(asked)),
        forbidden=sum(bool(o.forbidden) for o in outcomes),
        regenerated=sum(h.get("action") == "regenerated" for h in hits),
        fallbacks=sum(h.get("action") == "fallback" for h in hits),
        truncated=sum(h.get("action") == "truncated" for h in hits),
        errors=sum(o.error is not None for o in outcomes),
        latency_ms=statistics.median(latencies) if latencies else None,
        on_topic=(sum(judged), len(judged)) if judged else None,
    )


def table(summaries: Sequence[Summary]) -> str:
    head = (f"{'run':<22}{'turns':>6}{'pass':>6}{'parrot':>7}{'echo':>6}{'repeat':>7}"
            f"{'empty':>6}{'long':>5}{'md':>4}{'ident':>6}{'known':>9}{'forbid':>7}"
            f"{'regen':>6}{'fallbk':>7}{'trunc':>6}{'answer ms':>10}{'on-topic':>9}")
    lines = [head, "-" * len(head)]
    for s in summaries:
        right, asked = s.known
        topic = f"{s.on_topic[0]}/{s.on_topic[1]}" if s.on_topic else "—"
        latency = f"{s.latency_ms:.0f}" if s.latency_ms is not None else "—"
        lines.append(
            f"{s.label:<22}{s.turns:>6}{s.passed:>6.0%}{s.rates['parrot']:>7.0%}"
            f"{s.rates['echo']:>6.0%}{s.rates['repeat']:>7.0%}{s.rates['empty']:>6.0%}"
            f"{s.rates['over_long']:>5.0%}{s.rates['markdown']:>4.0%}{s.rates['identity']:>6.0%}"
            f"{f'{right}/{asked}':>9}{s.forbidden:>7}{s.regenerated:>6}{s.fallbacks:>7}"
            f"{s.truncated:>6}{latency:>10}{topic:>9}"
        )
    return "\n".join(lines)


def by_kind(outcomes: Sequence[TurnOutcome]) -> str:
    """Pass rate and known answers per scenario kind: where a run is weak."""
    kinds = sorted({o.kind for o in outcomes})
    lines = [f"{'kind':<14}{'turns':>6}{'pass':>6}{'known':>8}"]
    for kind in kinds:
        mine = [o for o in outcomes if o.kind == kind]
        asked = [o.known for o in mine if o.known is not None]
        known = f"{sum(bool(k) for k in asked)}/{len(asked)}" if asked else "—"
        passed = sum(o.rules_pass for o in mine) / len(mine)
        lines.append(f"{kind:<14}{len(mine):>6}{passed:>6.0%}{known:>8}")
    return "\n".join(lines)
