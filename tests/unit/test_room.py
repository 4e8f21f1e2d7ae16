"""Room policy: who answers, and what the other personas hear."""

from __future__ import annotations

import pytest

from voxgate.llm.base import ChatMessage
from voxgate.personas.persona import Persona
from voxgate.personas.room import Floor, Reason, choose_speaker, exchange_messages, words


def _persona(pid: str, name: str, *aliases: str) -> Persona:
    return Persona(id=pid, name=name, instructions=f"You are {name}.", aliases=aliases)


ADA = _persona("ada", "Ada", "Aida")
MAX = _persona("max", "Max", "Mack")
LUNA = _persona("luna", "Luna")
ROOM = [ADA, MAX, LUNA]


@pytest.mark.parametrize(
    ("transcript", "expected", "heard"),
    [
        ("Max, what time is it?", "max", "max"),
        ("hey luna tell me a story", "luna", "luna"),
        ("HEY LUNA!", "luna", "luna"),
        ("What do you think, Ada?", "ada", "ada"),
        ("Is that Ada's idea?", "ada", "ada"),
        ("Mack, are you there?", "max", "mack"),  # an alias speech recognition wrote
        ("Aida, hello.", "ada", "aida"),
        ("Can luna help me with this?", "luna", "luna"),
    ],
)
def test_addressed_by_name(transcript: str, expected: str, heard: str) -> None:
    floor = choose_speaker(transcript, ROOM, last_speaker="ada" if expected != "ada" else "max")
    assert floor == Floor(expected, Reason.ADDRESSED, heard)


@pytest.mark.parametrize(
    ("transcript", "expected"),
    [
        ("Max, what does Luna think?", "max"),  # first word beats a later mention
        ("What did Max say, Luna?", "luna"),  # last word beats a mid-sentence mention
        ("I asked Max and Ada. Hey Luna, you too?", "luna"),  # greeting beats all
        ("So Ada told Max about it", "ada"),  # otherwise the earliest mention
    ],
)
def test_several_names_the_vocative_wins(transcript: str, expected: str) -> None:
    assert choose_speaker(transcript, ROOM, None).persona_id == expected


@pytest.mark.parametrize("transcript", ["Maxwell said hello", "I like lunar eclipses",
                                        "adagio is a tempo"])
def test_only_whole_words_match(transcript: str) -> None:
    assert choose_speaker(transcript, ROOM, last_speaker=None) == Floor("ada", Reason.DEFAULT)


def test_a_name_used_as_a_word_still_counts() -> None:
    # The documented limit of word matching: "max" the word names Max.
    assert choose_speaker("the max value", ROOM, "luna") == Floor("max", Reason.ADDRESSED, "max")


def test_nobody_named_the_last_speaker_keeps_the_floor() -> None:
    assert choose_speaker("and why is that?", ROOM, "luna") == Floor("luna", Reason.FLOOR)


def test_nobody_named_nobody_spoke_the_first_persona_answers() -> None:
    assert choose_speaker("hello everyone", ROOM, None) == Floor("ada", Reason.DEFAULT)
    assert choose_speaker("hello", [LUNA, ADA, MAX], None) == Floor("luna", Reason.DEFAULT)


def test_last_speaker_who_left_the_room_does_not_keep_the_floor() -> None:
    assert choose_speaker("and then?", [MAX, LUNA], "ada") == Floor("max", Reason.DEFAULT)


def test_empty_room_is_an_error() -> None:
    with pytest.raises(ValueError):
        choose_speaker("hi", [], None)


def test_words_drops_possessives_and_punctuation() -> None:
    assert words("Hey, Ada's   dog—MAX’s too!") == ["hey", "ada", "dog", "max", "too"]


def test_others_hear_the_user_and_the_named_reply() -> None:
    got = exchange_messages(ROOM, "ada", "What is two plus two?", "Four.")
    assert got["ada"] == [ChatMessage("user", "What is two plus two?"),
                          ChatMessage("assistant", "Four.")]
    for other in ("max", "luna"):
        assert got[other] == [ChatMessage("user", "What is two plus two?"),
                              ChatMessage("user", "Ada: Four.")]


def test_a_reply_cut_off_before_any_word_is_not_passed_on() -> None:
    got = exchange_messages(ROOM, "max", "Tell me a long story.", "  ")
    assert got["luna"] == [ChatMessage("user", "Tell me a long story.")]
    # An empty assistant turn would teach the model to answer with nothing.
    assert got["max"] == [ChatMessage("user", "Tell me a long story.")]


def test_histories_only_grow_across_a_room_conversation() -> None:
    """Each persona's history after a turn starts with its history before it (KV reuse)."""
    histories: dict[str, list[ChatMessage]] = {p.id: [] for p in ROOM}
    last: str | None = None
    for said, reply in [("Hi all.", "Hello!"), ("Max, your view?", "Doubtful."),
                        ("And why?", "No evidence."), ("Luna?", "I agree.")]:
        speaker = choose_speaker(said, ROOM, last).persona_id
        before = {pid: list(h) for pid, h in histories.items()}
        for pid, new in exchange_messages(ROOM, speaker, said, reply).items():
            histories[pid].extend(new)
        for pid, history in histories.items():
            assert history[:len(before[pid])] == before[pid]
        last = speaker
    assert last == "luna"
    assert ChatMessage("user", "Max: No evidence.") in histories["ada"]
    assert ChatMessage("assistant", "No evidence.") in histories["max"]


def test_unknown_speaker_is_an_error() -> None:
    with pytest.raises(ValueError, match="not in the room"):
        exchange_messages(ROOM, "pip", "hi", "hello")
