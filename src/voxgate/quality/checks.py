"""Rule checks on a spoken reply: the failures a small model makes in conversation.

Pure functions on text, shared by the reply guard (before a clause is spoken)
and by ``voxgate eval`` (after the turn). Each rule returns a short reason, or
None when the reply is fine:

- parrot: recites its own instructions, or a fact the user did not ask about;
- echo: repeats the user's line back;
- repeat: says again what it said earlier (a loop);
- empty, over_long, markdown: not speakable as a short reply;
- identity: calls itself by another name (the user's, another persona's, the
  base model's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from voxgate.sequences import common_prefix_len

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Words that carry no topic: a fact and a user line sharing only these are unrelated.
_STOP = frozenset(
    """
    a about after all also am an and any are as at be because been but by can could
    did do does doing for from had has have he her here him his how i i'm if in into is it
    it's its just know let like me more my no not now of off on one or our out so some
    than that that's the their them then there these they this to too up us very was we
    what when where which who why will with would yes you you're your yours
    """.split()  # noqa: SIM905 - a word list reads better as text
)
# A stable prefix or user line shares a run this long with a reply only by recitation.
PARROT_RUN = 5
# Share of a reply's word trigrams found in the source that makes it a copy.
COPY_SHARE = 0.6
MAX_WORDS = 60
# Long enough that a shared opening ("Sure, I can help.") is not yet a loop.
REPEAT_MIN_WORDS = 4
# A sentence this long said again, anywhere in a reply, is a repeat.
REPEAT_RUN = 6

_MARKDOWN = re.compile(
    r"(\*\*|__|`|^\s*#{1,6}\s|^\s*[-*•]\s|^\s*\d+[.)]\s|\[[^\]]+\]\([^)]+\))", re.MULTILINE
)
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
# Tags a model echoes from its prompt's tool section ("the time is <current_time>").
_TAG = re.compile(r"</?[A-Za-z_][\w-]*/?>")
_AGAIN = re.compile(
    r"\b(say (that|it|this) again|repeat (that|it|yourself|this|after me)|come again|"
    r"what did you (just )?say|one more time|(didn't|did not|couldn't) (catch|hear) (that|it|you)|"
    r"say that once more|pardon)\b"
)
# Base-model self-descriptions: a persona never calls itself these.
_BASE_MODEL = re.compile(
    r"\b(qwen|alibaba|openai|chatgpt|gpt-\d|(an|a large) (ai )?language model)",
    re.I,
)
# Questions about the assistant itself: the same answer twice is right, not a loop.
_ABOUT_YOU = re.compile(r"\b(who are you|your name|what are you|who is this|who am i talking)\b")
# The lead-in in any case, the name capitalized: "I'm Tom", not "I'm tired".
_CALLS_ITSELF = re.compile(r"\b(?i:my name is|my name's|call me|i am|i'm|this is)\s+([A-Z][a-z]+)")
_USER_NAMES = re.compile(
    r"\b(?i:my name is|my name's|call me|i am called|i'm called|i am|i'm)\s+([A-Z][a-z]+)"
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def _ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def longest_shared_run(reply: Sequence[str], source: Sequence[str]) -> int:
    """The longest run of consecutive words the two share."""
    best = 0
    for n in range(1, len(reply) + 1):
        if not _ngrams(reply, n) & _ngrams(source, n):
            break
        best = n
    return best


def copied_share(reply: Sequence[str], source: Sequence[str]) -> float:
    """Share of the reply's word trigrams (bigrams when short) that the source holds."""
    n = 3 if len(reply) >= 4 else 2
    grams = _ngrams(reply, n)
    if not grams:
        return 0.0
    return len(grams & _ngrams(source, n)) / len(grams)


def content(tokens: Iterable[str]) -> set[str]:
    return {t for t in tokens if t not in _STOP and len(t) > 2}


def asks_again(user_text: str) -> bool:
    """The user wants to hear something again: a repeat is the right answer."""
    return bool(_AGAIN.search(user_text.lower()))


def names_claimed(user_text: str) -> set[str]:
    """Names the user gives for themself ("Call me Ishmael.")."""
    return {m.group(1) for m in _USER_NAMES.finditer(user_text)} - {"Not", "So", "Just", "Sorry"}


_REMEMBERED_NAME = re.compile(r"\buser's name is ([A-Z][a-z]+)")


def names_remembered(memory: str) -> set[str]:
    """The user's name in a memory summary ("The user's name is Priya.")."""
    return {m.group(1) for m in _REMEMBERED_NAME.finditer(memory)}


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What a reply is checked against."""

    persona_name: str
    instructions: str = ""  # behaviour text: never to be recited
    knowledge: Sequence[str] = ()  # facts and memories: fine when the user asks about them
    user_text: str = ""
    earlier_replies: Sequence[str] = ()  # this persona's replies in the conversation so far
    earlier_user_lines: Sequence[str] = ()  # what the user said before, in order
    other_names: frozenset[str] = field(default_factory=frozenset)  # the user's, other personas'
    max_words: int = MAX_WORDS


def reply_context(
    persona_name: str,
    instructions: str,
    facts: Sequence[str],
    user_text: str,
    *,
    earlier_replies: Sequence[str] = (),
    earlier_user_lines: Sequence[str] = (),
    other_personas: Iterable[str] = (),
    memory: str = "",
    window: int | None = None,
) -> ReplyContext:
    """The context for a persona's reply to ``user_text``: the names it must not take
    are the other personas', and the user's from everything they said and from
    ``memory``; the repeat rule looks at the last ``window`` replies and lines (all
    when None)."""
    names = set(other_personas) | names_remembered(memory)
    for line in (*earlier_user_lines, user_text):
        names |= names_claimed(line)
    return ReplyContext(
        persona_name=persona_name,
        instructions=instructions,
        knowledge=(*facts, *(s for s in memory.split(". ") if s.strip())),
        user_text=user_text,
        earlier_replies=tuple(earlier_replies)[-window:] if window else tuple(earlier_replies),
        earlier_user_lines=(
            tuple(earlier_user_lines)[-window:] if window else tuple(earlier_user_lines)
        ),
        other_names=frozenset(names - {persona_name}),
    )


def parrot(reply: str, ctx: ReplyContext) -> str | None:
    said = words(reply)
    if len(said) < 2:
        return None
    told = words(ctx.instructions)
    user = words(ctx.user_text)
    run = longest_shared_run(said, told)
    if run >= PARROT_RUN and longest_shared_run(said, user) < run:
        return f"recites {run} words of its instructions"
    if len(said) >= 3 and copied_share(said, told) >= COPY_SHARE:
        return "copies its instructions"
    asked = content(user)
    about_you = _is_question(ctx.user_text) and bool({"you", "your", "yourself"} & set(user))
    for line in ctx.knowledge:
        known = words(line)
        if about_you or content(known) & asked:
            continue  # the user asked about this (or about the persona): using it is the point
        run = longest_shared_run(said, known)
        if run >= 4 or (run >= 3 and copied_share(said, known) >= 0.4):
            return f"recites an unasked fact: {line[:40]!r}"
    return None


def echo(reply: str, ctx: ReplyContext) -> str | None:
    """The whole reply says back the user's line and adds (almost) nothing of its own."""
    said, heard = words(reply), words(ctx.user_text)
    if len(said) < 3 or len(heard) < 3 or asks_again(ctx.user_text):
        return None
    if said == heard:
        return "echoes the user's line"
    added = content(said) - content(heard)
    if _is_question(ctx.user_text):
        # "No, I don't need an internet connection." restates a question to answer it.
        copied = not added and copied_share(said, heard) >= 0.8
    else:
        copied = len(added) <= 1 and copied_share(said, heard) >= COPY_SHARE
    return "echoes the user's line" if copied else None


def _is_question(text: str) -> bool:
    return text.rstrip().endswith("?")


def echo_so_far(reply: str, ctx: ReplyContext) -> str | None:
    """While streaming, only a reply that has already said most of the user's line back
    is an echo: restating the question before answering it is normal."""
    said, heard = words(reply), words(ctx.user_text)
    if len(heard) < 6 or _is_question(ctx.user_text) or asks_again(ctx.user_text):
        return None
    run = longest_shared_run(said, heard)
    if run >= 0.8 * len(heard):
        return f"echoes {run} words of the user's line"
    if len(said) >= 5 and not content(said) - content(heard) and copied_share(said, heard) >= 0.8:
        return "starts by saying the user's line back"
    return None


def repeat(reply: str, ctx: ReplyContext) -> str | None:
    """Says again what it said earlier, or opens the way an earlier reply opened (4+ words
    alike: "That's the opening of ..." to every sentence read aloud is a template loop)."""
    said = words(reply)
    if not said or asks_again(ctx.user_text) or _ABOUT_YOU.search(ctx.user_text.lower()):
        return None
    if said_before(ctx.user_text, ctx.earlier_user_lines):
        return None  # the same line again may get the same answer
    for earlier in ctx.earlier_replies:
        before = words(earlier)
        if said == before and len(said) >= 2:
            return "repeats an earlier reply"
        if len(said) >= REPEAT_MIN_WORDS and copied_share(said, before) >= COPY_SHARE:
            return "repeats an earlier reply"
        if (run := longest_shared_run(said, before)) >= REPEAT_RUN:
            return f"repeats {run} words of an earlier reply"
        if common_prefix_len(said, before) >= REPEAT_MIN_WORDS:
            return f"opens like an earlier reply: {' '.join(said[:REPEAT_MIN_WORDS])!r}"
    return None


def said_before(line: str, earlier_lines: Sequence[str]) -> bool:
    """The user said (almost) exactly this before."""
    heard = words(line)
    return bool(heard) and any(
        words(e) == heard or (len(heard) >= 4 and copied_share(heard, words(e)) >= 0.8)
        for e in earlier_lines
    )


def empty(reply: str, ctx: ReplyContext) -> str | None:
    return "says nothing" if not words(reply) else None


def over_long(reply: str, ctx: ReplyContext) -> str | None:
    count = len(words(reply))
    return f"{count} words (over {ctx.max_words})" if count > ctx.max_words else None


def markdown(reply: str, ctx: ReplyContext) -> str | None:
    if _MARKDOWN.search(reply):
        return "markdown or a list"
    if _EMOJI.search(reply):
        return "emoji"
    if tag := _TAG.search(reply):
        return f"markup tag {tag.group(0)}"
    return None


def identity(reply: str, ctx: ReplyContext) -> str | None:
    if m := _BASE_MODEL.search(reply):
        return f"calls itself {m.group(0)!r}"
    for m in _CALLS_ITSELF.finditer(reply):
        name = m.group(1)
        if name != ctx.persona_name and name in ctx.other_names:
            return f"calls itself {name}"
    return None


Rule = Callable[[str, ReplyContext], str | None]

# The rules the guard applies while the reply is generated, in reporting order.
STREAM_RULES: tuple[tuple[str, Rule], ...] = (
    ("parrot", parrot),
    ("echo", echo_so_far),
    ("repeat", repeat),
    ("markdown", markdown),
    ("identity", identity),
)
# The guard's rules once the reply is complete.
GUARD_FINAL_RULES: tuple[tuple[str, Rule], ...] = (
    ("empty", empty),
    ("parrot", parrot),
    ("echo", echo),
    ("repeat", repeat),
    ("markdown", markdown),
    ("identity", identity),
)
# Every rule, for scoring a finished reply (``voxgate eval``).
RULES: tuple[tuple[str, Rule], ...] = (*GUARD_FINAL_RULES, ("over_long", over_long))


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    reason: str


def check(
    reply: str, ctx: ReplyContext, rules: Sequence[tuple[str, Rule]] = RULES
) -> list[Violation]:
    found = []
    for name, rule in rules:
        reason = rule(reply, ctx)
        if reason:
            found.append(Violation(name, reason))
    return found
