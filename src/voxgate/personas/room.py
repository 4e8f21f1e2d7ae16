"""A room: several personas, one user. Who answers a turn, and what the others hear.

Both functions are pure: the session keeps the state (the room, who spoke
last, one history per persona) and asks them.

Who answers, in order:

1. a persona addressed by name: case-insensitive whole-word match on its
   name or aliases ("Max", "hey max", "Max's", but not "Maxwell"). When
   several are named, the vocative wins: right after a greeting ("hey Luna,
   ask Max") > first word ("Max, what does Luna think") > last word ("what
   do you think, Luna") > earliest mention;
2. else the persona who spoke last keeps the floor (a follow-up question
   goes to whoever answered);
3. else the first persona of the room.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from voxgate.llm.base import ChatMessage
from voxgate.personas.persona import Persona

# Words that, right before a name, make it a call: "hey Ada", "okay Max".
GREETINGS = frozenset({"hey", "hi", "hello", "ok", "okay", "yo", "oi", "dear", "thanks"})
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class Reason(StrEnum):
    ADDRESSED = "addressed"
    FLOOR = "floor"  # spoke last and keeps the floor
    DEFAULT = "default"  # nobody named, nobody spoke yet: the first persona


@dataclass(frozen=True, slots=True)
class Floor:
    persona_id: str
    reason: Reason
    heard_name: str | None = None  # the words that named the persona, when addressed


def words(text: str) -> list[str]:
    """Lower-case words; a possessive "'s" is dropped ("Ada's" -> "ada")."""
    out = []
    for word in _WORD.findall(text.lower().replace("’", "'")):
        out.append(word[:-2] if word.endswith("'s") else word)
    return out


def _find(haystack: Sequence[str], needle: Sequence[str]) -> list[int]:
    n = len(needle)
    if n == 0:
        return []
    return [i for i in range(len(haystack) - n + 1) if list(haystack[i : i + n]) == list(needle)]


def _rank(said: Sequence[str], start: int, end: int) -> int:
    if start > 0 and said[start - 1] in GREETINGS:
        return 0
    if start == 0:
        return 1
    if end == len(said):
        return 2
    return 3


def choose_speaker(transcript: str, room: Sequence[Persona], last_speaker: str | None) -> Floor:
    """Who answers ``transcript`` (see the module doc for the rules)."""
    if not room:
        raise ValueError("a room needs at least one persona")
    said = words(transcript)
    best: tuple[int, int, int] | None = None  # (rank, start, room index)
    heard: dict[int, str] = {}
    for index, persona in enumerate(room):
        for name in persona.names:
            name_words = words(name)
            for start in _find(said, name_words):
                key = (_rank(said, start, start + len(name_words)), start, index)
                if best is None or key < best:
                    best = key
                    heard[index] = " ".join(name_words)
    if best is not None:
        return Floor(room[best[2]].id, Reason.ADDRESSED, heard[best[2]])
    if last_speaker is not None and any(p.id == last_speaker for p in room):
        return Floor(last_speaker, Reason.FLOOR)
    return Floor(room[0].id, Reason.DEFAULT)


def overheard(speaker_name: str, reply: str) -> ChatMessage:
    """How another persona's words appear in a history: a user-role line with its name."""
    return ChatMessage("user", f"{speaker_name}: {reply.strip()}")


def exchange_messages(
    room: Sequence[Persona],
    speaker_id: str,
    user_text: str,
    reply: str,
    notes: Sequence[str] = (),
) -> dict[str, list[ChatMessage]]:
    """What each persona's history gains from one exchange, to append in order.

    The speaker gets the usual user/assistant pair. The others get the user's
    words as a user message, then the reply as ``"Name: ..."`` (a user-role
    message: to them it is someone else talking). A reply cut off before any
    word was heard (empty) is not passed on. Histories only grow, so each
    persona's prompt stays a prefix of its next one and its KV slot is reused.
    """
    by_id: Mapping[str, Persona] = {p.id: p for p in room}
    if speaker_id not in by_id:
        raise ValueError(f"speaker {speaker_id!r} is not in the room")
    speaker = by_id[speaker_id]
    # A reply to the conversation as it stands (no new user words, e.g. a Realtime
    # client's response.create) adds no user message.
    asked = [ChatMessage("user", user_text)] if user_text else []
    out: dict[str, list[ChatMessage]] = {}
    for persona in room:
        if persona.id == speaker_id:
            # An empty assistant turn (cut off before a word was heard) teaches the model
            # to answer with nothing: leave it out.
            said = [ChatMessage("assistant", reply)] if reply.strip() else []
            # What its tools returned, before the reply that used it (``notes``).
            found = [ChatMessage("user", note) for note in notes]
            out[persona.id] = [*asked, *found, *said]
        else:
            heard = list(asked)
            if reply.strip():
                heard.append(overheard(speaker.name, reply))
            out[persona.id] = heard
    return out
