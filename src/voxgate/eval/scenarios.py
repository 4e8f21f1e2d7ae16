"""Conversation scenarios for ``voxgate eval``: TOML files, one conversation each.

A scenario is a list of user turns, each with what its reply is checked for::

    id = "say-again"                 # the file name when absent
    title = "Asking to hear an answer again"
    kind = "say-again"               # the category the table groups by

    [[turns]]
    user = "What is the tallest mountain in the world?"
    expect_any = ["everest"]         # a known answer: one of these words must appear

    [[turns]]
    user = "Sorry, could you say that again?"
    expect_any = ["everest"]

    [[turns]]
    new_session = true               # a new connection of the same user: memory only
    user = "What's my name?"

Words in ``expect_any`` / ``forbid`` match whole words, case-insensitively.
The built-in scenarios are in ``voxgate/eval/data``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

_SCENARIO_KEYS = frozenset({"id", "title", "kind", "persona", "turns"})
_TURN_KEYS = frozenset({"user", "expect_any", "forbid", "new_session"})


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class EvalTurn:
    user: str
    expect_any: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    new_session: bool = False  # start a new session (same user) before this turn

    def known_answer(self, reply: str) -> bool | None:
        """None when this turn has no known answer."""
        if not self.expect_any:
            return None
        return any(_has_word(reply, w) for w in self.expect_any)

    def forbidden(self, reply: str) -> list[str]:
        return [w for w in self.forbid if _has_word(reply, w)]


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    title: str
    kind: str
    turns: tuple[EvalTurn, ...]
    persona: str | None = None  # None: the persona under test


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word.lower())}(?![\w-])", text.lower()) is not None


def _words(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ScenarioError(f"{what} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _turn(index: int, data: Any) -> EvalTurn:
    if not isinstance(data, dict):
        raise ScenarioError(f"turns[{index}] must be a table")
    unknown = sorted(set(data) - _TURN_KEYS)
    if unknown:
        raise ScenarioError(f"turns[{index}]: unknown key(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(_TURN_KEYS))})")
    user = data.get("user")
    if not isinstance(user, str) or not user.strip():
        raise ScenarioError(f"turns[{index}]: 'user' must be a non-empty string")
    new_session = data.get("new_session", False)
    if not isinstance(new_session, bool):
        raise ScenarioError(f"turns[{index}]: new_session must be true or false")
    return EvalTurn(
        user=" ".join(user.split()),
        expect_any=_words(data.get("expect_any", []), f"turns[{index}].expect_any"),
        forbid=_words(data.get("forbid", []), f"turns[{index}].forbid"),
        new_session=new_session,
    )


def scenario_from_dict(default_id: str, data: dict[str, Any]) -> Scenario:
    unknown = sorted(set(data) - _SCENARIO_KEYS)
    if unknown:
        raise ScenarioError(f"unknown key(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(_SCENARIO_KEYS))})")
    turns = data.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ScenarioError("a scenario needs at least one [[turns]] table")
    sid = str(data.get("id", default_id))
    persona = data.get("persona")
    if persona is not None and not isinstance(persona, str):
        raise ScenarioError("persona must be a persona id")
    return Scenario(
        id=sid,
        title=str(data.get("title", sid)),
        kind=str(data.get("kind", sid)),
        turns=tuple(_turn(i, t) for i, t in enumerate(turns, start=1)),
        persona=persona,
    )


def load_scenario(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return scenario_from_dict(path.stem, data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ScenarioError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc


def builtin_scenario_dir() -> Path:
    return Path(str(files("voxgate.eval").joinpath("data")))


def load_scenarios(directory: Path | None = None, only: list[str] | None = None) -> list[Scenario]:
    """Every scenario in ``directory`` (default: the built-in ones), sorted by id;
    ``only`` keeps the named ids (and fails on an unknown one)."""
    folder = directory or builtin_scenario_dir()
    if not folder.is_dir():
        raise ScenarioError(f"no scenario folder {folder} (fix: pass --scenarios DIR)")
    scenarios = sorted((load_scenario(p) for p in folder.glob("*.toml")), key=lambda s: s.id)
    if not scenarios:
        raise ScenarioError(f"no *.toml scenarios in {folder}")
    if only:
        known = {s.id for s in scenarios}
        missing = [x for x in only if x not in known]
        if missing:
            raise ScenarioError(f"unknown scenario(s) {', '.join(missing)}; "
                                f"known: {', '.join(sorted(known))}")
        scenarios = [s for s in scenarios if s.id in only]
    return scenarios
