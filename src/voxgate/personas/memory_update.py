"""A cheap, deterministic memory updater: regexes over what the user said.

A HEURISTIC, on purpose: it runs after every turn on the asyncio thread, in
microseconds, with no extra LLM call in the hot path. It catches plain
first-person statements ("my name is Sam", "I live in Porto", "I like
jazz", "my favourite colour is green") and nothing subtler; questions are
skipped, and "I don't like X" is recorded as a dislike. The running summary
is the facts about who the user is (name, home, work) plus the most recent
others, up to a small count.
A later, off-line summariser (an LLM in background time) can replace
``summarize`` without changing the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The summary goes into the persona's SEMI_STABLE prompt tier: a few facts
# help, a long list costs prefill on every new session.
SUMMARY_FACTS = 8
_MAX_VALUE_WORDS = 5
# Facts about who the user is: a summary never drops them for newer likes.
PINNED_KEYS = frozenset({"name", "home", "origin", "job", "work"})
# A value ends at a clause break or a conjunction that starts a new thought.
_VALUE = r"(?P<v>[^.,;:!?]+?)(?=\s+(?:and|but|so|because|though)\b|[.,;:!?]|$)"
# "I like it", "I love that": the thing is in the context, not in the words.
_VAGUE = frozenset({"it", "that", "this", "them", "these", "those", "you", "him", "her",
                    "what", "how", "when", "where", "which", "who", "something", "anything"})


@dataclass(frozen=True, slots=True)
class Fact:
    key: str  # one fact per key: "name" again replaces the old name
    text: str  # a sentence about the user, for the prompt


def _clean(value: str) -> str | None:
    words = value.strip().strip("\"'").split()
    if not words or len(words) > _MAX_VALUE_WORDS or words[0].lower() in _VAGUE:
        return None
    return " ".join(words)


def _name(value: str) -> str | None:
    words = value.split()
    # Names are short; "my name is Sam and ..." already stops at "and".
    if len(words) > 3 or not all(w.replace("-", "").replace("'", "").isalpha() for w in words):
        return None
    return " ".join(w[:1].upper() + w[1:] for w in words)


def _lower_key(value: str) -> str:
    return " ".join(value.lower().split())


MakeFact = Callable[[re.Match[str], str], Fact | None]
Rule = tuple[re.Pattern[str], MakeFact]


def _rule(pattern: str, make: MakeFact) -> Rule:
    return re.compile(pattern + r"\s+" + _VALUE, re.IGNORECASE), make


def _simple(key: str, template: str, name: bool = False) -> MakeFact:
    def make(match: re.Match[str], value: str) -> Fact | None:
        final = _name(value) if name else value
        if final is None:
            return None
        return Fact(key.format(v=_lower_key(final)), template.format(v=final))

    return make


def _favourite(match: re.Match[str], value: str) -> Fact | None:
    thing = match.group("k").lower()
    return Fact(f"favourite:{thing}", f"The user's favourite {thing} is {value}.")


_RULES: tuple[Rule, ...] = (
    _rule(r"\bmy name(?:'s| is)", _simple("name", "The user's name is {v}.", name=True)),
    _rule(r"\b(?:call me|i am called|i'm called)", _simple("name", "The user's name is {v}.",
                                                          name=True)),
    _rule(r"\bi live in", _simple("home", "The user lives in {v}.")),
    _rule(r"\bi(?: am|'m) from", _simple("origin", "The user is from {v}.")),
    _rule(r"\bi work as", _simple("job", "The user works as {v}.")),
    _rule(r"\bi work (?:at|for)", _simple("work", "The user works at {v}.")),
    _rule(r"\bi (?:really )?(?:like|love|enjoy)", _simple("likes:{v}", "The user likes {v}.")),
    _rule(r"\bi (?:really )?(?:hate|dislike|don't like|do not like)",
          _simple("dislikes:{v}", "The user does not like {v}.")),
    _rule(r"\bmy (?:favourite|favorite) (?P<k>[a-z]+) is", _favourite),
)

_SENTENCE = re.compile(r"[^.!?]+[.!?]?")


def extract_facts(user_text: str) -> list[Fact]:
    """Facts stated in ``user_text``, in the order said; questions are skipped."""
    found: list[Fact] = []
    for sentence in _SENTENCE.findall(user_text):
        if sentence.strip().endswith("?"):
            continue  # "do I like jazz?" states nothing
        hits: list[tuple[int, Fact]] = []
        for pattern, make in _RULES:
            for match in pattern.finditer(sentence):
                value = _clean(match.group("v"))
                fact = make(match, value) if value else None
                if fact is not None:
                    hits.append((match.start(), fact))
        found += [fact for _, fact in sorted(hits, key=lambda hit: hit[0])]
    return found


def summarize(facts: Sequence[Fact], keep: int = SUMMARY_FACTS) -> str:
    """The running summary: up to ``keep`` facts in the order learned. Who the user is
    (name, home, work...) always stays; the rest are the most recent of the others."""
    if keep <= 0:
        return ""
    pinned = {id(f) for f in facts if f.key in PINNED_KEYS}
    others = [f for f in facts if id(f) not in pinned]
    room = max(keep - len(pinned), 0)
    chosen = pinned | {id(f) for f in (others[-room:] if room else [])}
    kept = [f.text for f in facts if id(f) in chosen]
    return " ".join(kept[-keep:])
