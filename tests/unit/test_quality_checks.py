"""The reply rule checks (voxgate.quality.checks) on replies small models really gave."""

from __future__ import annotations

from voxgate.quality import checks
from voxgate.quality.checks import ReplyContext

INSTRUCTIONS = (
    "You are Ada, a friendly voice assistant in a spoken conversation. Reply in one or two "
    "short sentences of plain speech. If you did not understand, ask briefly."
)
FACT = "You run offline: speech recognition, language model and voice all live on this machine."


def ctx(
    user: str = "", earlier: tuple[str, ...] = (), others: frozenset[str] = frozenset()
) -> ReplyContext:
    return ReplyContext(
        persona_name="Ada",
        instructions=INSTRUCTIONS,
        knowledge=(FACT,),
        user_text=user,
        earlier_replies=earlier,
        other_names=others,
    )


def rules(reply: str, context: ReplyContext) -> set[str]:
    return {v.rule for v in checks.check(reply, context)}


def test_reciting_the_instructions_is_parroting() -> None:
    assert "parrot" in rules("If you did not understand, ask briefly.", ctx("Hello there."))
    assert "parrot" in rules("Reply in one or two short sentences of plain speech.", ctx("Hi"))


def test_an_unasked_fact_is_parroting_and_an_asked_one_is_an_answer() -> None:
    dickens = "It was the best of times, it was the worst of times."
    assert "parrot" in rules("Yes, you run offline on this machine.", ctx(dickens))
    asked = "Do you run offline on this machine?"
    assert "parrot" not in rules("Yes, I run offline on this machine.", ctx(asked))
    # A question about the assistant may be answered from its facts, whatever its words.
    assert "parrot" not in rules("You run offline on this machine.", ctx("Who made you?"))


def test_saying_the_users_line_back_is_an_echo() -> None:
    line = "It was the best of times, it was the worst of times."
    assert "echo" in rules("It was the best of times, it was the worst of times.", ctx(line))
    assert "echo" in rules("The best of times, it was the worst of times!", ctx(line))
    # A statement, and a reply that reacts to it.
    assert "echo" not in rules("What a famous opening, full of contrasts.", ctx(line))


def test_restating_a_question_to_answer_it_is_not_an_echo() -> None:
    question = "Do you need an internet connection to work?"
    assert "echo" not in rules("No, I don't need an internet connection to work.", ctx(question))
    question = "What colour do you get when you mix blue and yellow?"
    assert "echo" not in rules("When you mix blue and yellow, you get green.", ctx(question))


def test_the_same_reply_or_the_same_template_again_is_a_repeat() -> None:
    earlier = ("Yes, you are correct. The war and the peace were significant events.",)
    again = "Yes, you are correct. The war and the peace were significant events."
    assert "repeat" in rules(again, ctx("Tell me more.", earlier))
    template = ("That's the opening of A Tale of Two Cities by Charles Dickens.",)
    assert "repeat" in rules("That's the opening of The Great Gatsby.", ctx("Go on.", template))
    assert "repeat" not in rules("The capital of Italy is Rome.", ctx("Italy?", earlier))


def test_asking_to_hear_it_again_or_asking_who_it_is_allows_the_same_reply() -> None:
    earlier = ("The tallest mountain in the world is Mount Everest.",)
    again = "The tallest mountain in the world is Mount Everest."
    assert "repeat" not in rules(again, ctx("Sorry, could you say that again?", earlier))
    assert "repeat" not in rules(again, ctx("Pardon? I didn't catch that.", earlier))
    same = ReplyContext(
        persona_name="Ada",
        user_text="Ever tried?",
        earlier_replies=earlier,
        earlier_user_lines=("Hello.", "Ever tried?"),
    )
    assert "repeat" not in rules(again, same)  # the same line again: the same answer is fine
    name = ("I'm Ada, your voice assistant.",)
    assert "repeat" not in rules("I'm Ada, your voice assistant.", ctx("Who are you?", name))


def test_markdown_lists_and_emoji_are_not_speech() -> None:
    assert "markdown" in rules("Here are some ideas:\n- rice\n- eggs", ctx("Dinner?"))
    assert "markdown" in rules("It is **very** simple.", ctx("How?"))
    assert "markdown" in rules("Great job! 🎉", ctx("I did it."))
    assert "markdown" not in rules("It's 3.5 kilometres, about 2 miles.", ctx("How far?"))
    # A tag echoed from the tool section of the prompt is read out as words.
    assert "markdown" in rules("Sure, the time is <current_time>.", ctx("Long day."))
    assert "markdown" not in rules("Three is < four and 5 > 2.", ctx("Compare."))


def test_taking_the_users_name_or_the_base_models_is_an_identity_slip() -> None:
    line = "Call me Ishmael."
    others = frozenset(checks.names_claimed(line))
    assert others == {"Ishmael"}
    assert "identity" in rules("I'm Ishmael, how can I help?", ctx(line, others=others))
    assert "identity" not in rules("Nice to meet you, Ishmael.", ctx(line, others=others))
    assert "identity" in rules("I am Qwen, created by Alibaba Cloud.", ctx("Who are you?"))
    assert "identity" in rules("As an AI language model, I cannot.", ctx("Sing!"))
    assert "identity" not in rules("I'm Ada, your voice assistant.", ctx("Who are you?"))


def test_empty_and_over_long_replies() -> None:
    assert rules("", ctx("Hello")) == {"empty"}
    long_reply = " ".join(["word"] * (checks.MAX_WORDS + 1))
    assert "over_long" in rules(long_reply, ctx("Talk to me."))


def test_user_names_are_read_from_what_the_user_says_not_from_tired_or_sorry() -> None:
    assert checks.names_claimed("Hi, my name is Priya and I live in Lisbon.") == {"Priya"}
    assert checks.names_claimed("I'm tired.") == set()
    assert checks.names_remembered("The user's name is Priya. The user lives in Lisbon.") == {
        "Priya"
    }
    assert checks.names_claimed("I'm Sorry to bother you.") == set()
    assert checks.asks_again("Could you say that again please?")
    assert not checks.asks_again("What is the capital of France?")
