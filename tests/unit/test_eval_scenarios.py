"""Scenario files and the eval table's thresholds (voxgate.eval)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.served_app import serving
from voxgate.eval.judge import TurnOutcome, expected_words, score
from voxgate.eval.report import Thresholds, summarize, table
from voxgate.eval.scenarios import EvalTurn, ScenarioError, load_scenario, load_scenarios
from voxgate.personas.persona import Persona
from voxgate.quality.checks import Violation

ADA = Persona(id="ada", name="Ada", instructions="You are Ada, a friendly voice assistant.")


def test_the_builtin_scenarios_cover_what_the_issue_lists() -> None:
    scenarios = load_scenarios()
    kinds = {s.kind for s in scenarios}
    assert {"greeting", "known-answer", "request", "follow-up", "statement", "reading",
            "about-you", "say-again", "long", "memory"} <= kinds
    long = next(s for s in scenarios if s.kind == "long")
    assert len(long.turns) >= 20
    assert sum(t.expect_any != () for s in scenarios for t in s.turns) >= 20
    assert any(t.new_session for s in scenarios for t in s.turns)


def test_a_bad_scenario_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[[turns]]\nuser = "Hi"\nexpect = ["x"]\n')
    with pytest.raises(ScenarioError, match=r"broken.toml: turns\[1\]: unknown key\(s\) expect"):
        load_scenario(path)
    path.write_text('title = "no turns"\n')
    with pytest.raises(ScenarioError, match="at least one"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenarios(only=["nope"])


def test_known_answers_match_whole_words_and_the_persona_placeholder() -> None:
    turn = EvalTurn("How many legs does a spider have?", expect_any=("eight", "8"))
    assert turn.known_answer("Spiders have eight legs.") is True
    assert turn.known_answer("Eighteen, I think.") is False
    assert turn.known_answer("It has 8.") is True
    assert EvalTurn("Hi").known_answer("Hello!") is None
    named = expected_words(EvalTurn("Your name?", expect_any=("{persona}",)), ADA)
    assert named.known_answer("I'm Ada.") is True


def test_score_sees_the_users_claimed_name_as_not_the_personas() -> None:
    turn = EvalTurn("Call me Ishmael.")
    violations, known, forbidden = score(turn, "I'm Ishmael, hello!", ADA, [], [turn.user], [])
    assert [v.rule for v in violations] == ["identity"]
    assert known is None and forbidden == []


def outcome(rules: tuple[str, ...] = (), known: bool | None = None) -> TurnOutcome:
    return TurnOutcome("s", "k", 1, "u", "r", [Violation(r, r) for r in rules], known)


def test_thresholds_fail_a_run_with_a_parrot_or_too_few_passes() -> None:
    clean = summarize("good", [outcome(known=True) for _ in range(9)] + [outcome(("echo",))])
    assert clean.passed == 0.9
    assert clean.failures(Thresholds()) == []
    parrot = summarize("bad", [outcome()] * 19 + [outcome(("parrot",))])
    assert parrot.failures(Thresholds()) == ["bad: parrot 5% > 0%"]
    wrong = summarize("wrong", [outcome(known=False)] * 3 + [outcome(known=True)])
    assert any("known answers 25%" in p for p in wrong.failures(Thresholds()))
    assert "good" in table([clean, parrot])


async def test_the_llm_judge_reads_a_yes_or_no_from_any_openai_compatible_server() -> None:
    """A fake chat-completions server (aiohttp, loopback) answers the judge."""
    from aiohttp import web

    from voxgate.eval.judge import llm_judge

    asked: list[dict[str, object]] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(body)
        verdict = "No." if "Yes, you run offline" in body["messages"][1]["content"] else "Yes"
        return web.json_response({"choices": [{"message": {"content": verdict}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with serving(app) as base:
        url = f"{base}/v1"
        assert await llm_judge(url, "m", "It was the best of times.", "Dickens!") is True
        assert await llm_judge(url, "m", "It was the best of times.",
                               "Yes, you run offline.") is False
    assert asked[0]["model"] == "m" and asked[0]["temperature"] == 0
