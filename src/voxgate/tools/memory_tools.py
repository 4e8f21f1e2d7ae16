"""remember and recall: notes a persona keeps about this user, in its persona memory.

A note is stored as a fact of (persona, user) in the memory store, so it outlives the
session and joins the summary the persona's prompt carries in later sessions. The words
are kept as the user said them, quoted: turning "my" into "your" by rule mangles grammar.
"""

from __future__ import annotations

import re
from typing import Any

from voxgate.personas.memory import fact_key
from voxgate.personas.memory_update import Fact
from voxgate.tools.registry import ToolContext

NOTE_PREFIX = "The user asked you to remember: "
MAX_NOTE_CHARS = 300
RECALL_LIMIT = 8  # notes given back: the newest that match
# Words that say nothing of the subject asked about.
_STOP_WORDS = (
    "a an the my your i me you is are was were to of in on at for and or what what's did do "
    "does about tell told remember recall know that this it"
)
_STOP = frozenset(_STOP_WORDS.split())


def _no_memory() -> ValueError:
    return ValueError("this server keeps no persona memory (start it with a memory store)")


def remember(note: str, context: ToolContext) -> str:
    """Keep a note about the user for later conversations. Call this when the user asks you
    to remember, note or not forget something.

    Args:
        note: what to remember, in the user's words.
    """
    note = " ".join(note.split()).strip(" .")
    if not note:
        raise ValueError("the note is empty")
    note = note[:MAX_NOTE_CHARS]
    if context.memory_writer is None:
        raise _no_memory()
    fact = Fact(f"note:{fact_key(note)}", f'{NOTE_PREFIX}"{note}".')
    # The writer's thread commits it; the turn does not wait on SQLite.
    context.memory_writer.learn(context.persona_id, context.user_id, [fact])
    return f'Noted: "{note}".'


def recall(context: ToolContext, about: str = "") -> str:
    """Look up what the user asked you to remember and what you learned about them. Call this
    when the user asks whether you remember something or what they told you.

    Args:
        about: the subject, in a few words; empty for everything.
    """
    if context.memory is None:
        raise _no_memory()
    facts: list[str] = context.memory.facts(context.persona_id, context.user_id)
    if not facts:
        return "Nothing is remembered about the user yet."
    words = _words(about)
    if words:
        facts = [fact for fact in facts if words & _words(fact)]
        if not facts:  # not every fact: the model would answer from unrelated notes
            return f"Nothing is noted about {about.strip()}."
    return "\n".join(f"- {fact}" for fact in facts[-RECALL_LIMIT:])


def _word_list(text: str) -> list[str]:
    """The words of ``text`` that could name a subject, in order, once each."""
    found = re.findall(r"[a-z0-9']+", text.lower())
    return list(dict.fromkeys(w for w in found if w not in _STOP and len(w) > 1))


def _words(text: str) -> set[str]:
    return set(_word_list(text))


# "Remember that my locker is 42", "please note: ...", "don't forget I'm vegetarian", one
# sentence at a time. Not "do you remember ...", "I remember ...", "remember when ...":
# recall or reminiscence. A question keeps a note only as "could you remember that ...?".
_ASK = r"(?:please\s+|can you\s+|could you\s+|would you\s+|will you\s+|i want you to\s+|" \
    r"i need you to\s+|you should\s+)?"  # fmt: skip
_KEEP = r"(?:remember|note|make a note|take a note|note down|keep in mind|don'?t forget)"
REMEMBER_INTENT = re.compile(
    rf"^(?:ok(?:ay)?,?\s+|so,?\s+|and\s+|also,?\s+)?{_ASK}{_KEEP}"
    r"(?!\s+(?:when|how|what|who|where|why|if|me|to)\b)"
    r"(?P<that>\s+(?:that|this|of this)\b)?\s*[:,]?\s+(?P<note>.{3,}?)\s*(?P<end>[.!?]*)$",
    re.IGNORECASE,
)
# What gates the search (REMEMBER_INTENT then reads each sentence).
REMEMBER_WORDS = re.compile(r"\b(?:remember|note|keep in mind|forget)\b", re.IGNORECASE)
_PRONOUNS = frozenset({"that", "this", "it", "them", "those", "these"})

# "Do you remember my locker?", "what did I tell you about ...", "what's my ...".
RECALL_INTENT = re.compile(
    r"\b(?:do|did|can|could) you (?:still )?(?:remember|recall|know)\s+(?:my|me|mine|"
    r"(?:what|where|when|who|which|how|that|if) (?:i|i'm|i've|i'd|my)|anything about me)\b"
    r"|\bwhat (?:did|have) i (?:tell|told|say|said|ask|asked)\b"
    r"|\bwhat did i ask you to\b"
    r"|\bwhat do you (?:remember|know) about (?:me|my)\b"
    r"|\b(?:remind me|what was|what is|what's) (?:of )?my\b",
    re.IGNORECASE,
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?;])\s+", text.strip()) if s.strip()]


def remember_arguments(asked: str) -> dict[str, Any] | None:
    """The note the user's words ask to keep, or None when they do not ask that."""
    for sentence in _sentences(asked):
        match = REMEMBER_INTENT.match(sentence)
        if match is None:
            continue
        note = match.group("note").strip(" ,")
        if "?" in match.group("end") and not match.group("that"):
            continue  # "can you remember my name?" asks, it does not tell
        if len(note.split()) < 2 or note.lower() in _PRONOUNS:
            continue  # "remember that." keeps nothing
        return {"note": note}
    return None


def recall_arguments(asked: str) -> dict[str, Any] | None:
    """The subject the user asks about: their words without the asking."""
    if not RECALL_INTENT.search(asked):
        return None
    return {"about": " ".join(_word_list(asked))}
