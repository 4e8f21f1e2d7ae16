"""Scoring one reply: the rule checks, the known answer, and an optional LLM judge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voxgate.eval.scenarios import EvalTurn
from voxgate.personas.persona import Persona
from voxgate.quality import checks
from voxgate.quality.checks import Violation


@dataclass(slots=True)
class TurnOutcome:
    scenario: str
    kind: str
    index: int  # 1-based within the scenario
    user: str
    reply: str
    violations: list[Violation] = field(default_factory=list)
    known: bool | None = None  # None: no known answer for this turn
    forbidden: list[str] = field(default_factory=list)
    guard: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float | None = None  # line sent (typed) or commit (spoken) -> answer audio
    error: str | None = None
    on_topic: bool | None = None  # the LLM judge's verdict, when one was asked

    @property
    def rules_pass(self) -> bool:
        return not self.violations and not self.forbidden and not self.error

    def failed(self, rule: str) -> bool:
        return any(v.rule == rule for v in self.violations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "kind": self.kind,
            "turn": self.index,
            "user": self.user,
            "reply": self.reply,
            "violations": [{"rule": v.rule, "reason": v.reason} for v in self.violations],
            "known": self.known,
            "forbidden": self.forbidden,
            "guard": self.guard,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "on_topic": self.on_topic,
        }


def expected_words(turn: EvalTurn, persona: Persona) -> EvalTurn:
    """``{persona}`` in a scenario's expectations stands for the persona's name."""
    def fill(words: Sequence[str]) -> tuple[str, ...]:
        return tuple(w.replace("{persona}", persona.name) for w in words)

    return EvalTurn(turn.user, fill(turn.expect_any), fill(turn.forbid), turn.new_session)


def score(
    turn: EvalTurn,
    reply: str,
    persona: Persona,
    earlier: Sequence[str],
    user_lines: Sequence[str],
    other_personas: Sequence[str],
) -> tuple[list[Violation], bool | None, list[str]]:
    """The rule violations, the known answer (None: none expected), forbidden words.
    ``user_lines`` ends with this turn's line."""
    ctx = checks.reply_context(
        persona.name,
        persona.instructions,
        persona.facts,
        turn.user,
        earlier_replies=earlier,
        earlier_user_lines=user_lines[:-1],
        other_personas=other_personas,
    )
    filled = expected_words(turn, persona)
    return checks.check(reply, ctx), filled.known_answer(reply), filled.forbidden(reply)


JUDGE_PROMPT = (
    "You grade replies of a voice assistant. Given the user's line and the reply, answer "
    "with one word: yes if the reply is a sensible, on-topic response to the line, no if it "
    "is off-topic, nonsense, a copy of the line, or ignores it."
)


async def llm_judge(url: str, model: str, user: str, reply: str) -> bool | None:
    """Ask any OpenAI-compatible chat endpoint; None when it gives no clear verdict."""
    import aiohttp

    body = {
        "model": model,
        "temperature": 0,
        "max_tokens": 3,
        "messages": [
            {"role": "system", "content": JUDGE_PROMPT},
            {"role": "user", "content": f"User: {user}\nReply: {reply}\nOn topic?"},
        ],
    }
    endpoint = url.rstrip("/") + "/chat/completions"
    async with aiohttp.ClientSession() as http, http.post(endpoint, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"judge {endpoint} answered HTTP {response.status}")
        data = json.loads(await response.text())
    verdict = str(data["choices"][0]["message"]["content"]).strip().lower()
    if verdict.startswith("yes"):
        return True
    if verdict.startswith("no"):
        return False
    return None
