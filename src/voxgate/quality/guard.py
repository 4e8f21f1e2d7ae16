"""The reply guard: a reply is checked clause by clause before any of it is spoken.

The reply run holds its first clauses until they say enough to judge (a few
words or a whole sentence), then checks the text so far before each clause
goes to synthesis. A failure before anything was released regenerates the
reply once with a new seed and a hotter temperature; a second failure speaks
a short neutral acknowledgement instead. A failure after the opening was
released stops the reply there: what was spoken had passed. So a failed
reply is never spoken, and never stored in the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voxgate.quality import checks
from voxgate.quality.checks import ReplyContext, Violation

# Enough words to tell a recitation or an echo from an ordinary opening.
JUDGE_MIN_WORDS = 4
RETRY_TEMPERATURE_STEP = 0.3
MAX_TEMPERATURE = 1.2
# Said when both attempts failed: short, neutral, and different from the last replies.
NEUTRAL_ACKS = ("I see.", "Okay, go on.", "Mm, tell me more.", "Right, I'm listening.")


@dataclass(frozen=True, slots=True)
class GuardHit:
    rule: str
    reason: str
    attempt: int  # 0 = the first generation
    action: str  # "regenerated" | "fallback" | "truncated"

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "reason": self.reason, "attempt": self.attempt,
                "action": self.action}


class ReplyGuard:
    def __init__(self, ctx: ReplyContext, attempts: int = 2) -> None:
        self.ctx = ctx
        self.attempts = attempts
        self.hits: list[GuardHit] = []

    def ready_to_judge(self, text: str) -> bool:
        """Enough text to check: a few words, or a whole sentence."""
        stripped = text.rstrip()
        return len(checks.words(text)) >= JUDGE_MIN_WORDS or stripped.endswith((".", "!", "?"))

    def check_partial(self, text: str) -> list[Violation]:
        return checks.check(text, self.ctx, checks.STREAM_RULES)

    def check_final(self, text: str) -> list[Violation]:
        return checks.check(text, self.ctx, checks.GUARD_FINAL_RULES)

    def record(self, violations: Sequence[Violation], attempt: int, action: str) -> None:
        self.hits += [GuardHit(v.rule, v.reason, attempt, action) for v in violations]

    def neutral_ack(self) -> str:
        recent = {r.strip() for r in self.ctx.earlier_replies[-len(NEUTRAL_ACKS) :]}
        return next((a for a in NEUTRAL_ACKS if a not in recent), NEUTRAL_ACKS[0])

    @staticmethod
    def retry_temperature(temperature: float) -> float:
        return min(temperature + RETRY_TEMPERATURE_STEP, MAX_TEMPERATURE)
