from voxgate.tts.chunker import TextChunker


def feed_all(chunker: TextChunker, text: str, step: int = 3) -> list[str]:
    out: list[str] = []
    for i in range(0, len(text), step):
        out += chunker.feed(text[i : i + step])
    rest = chunker.flush()
    return [*out, rest] if rest else out


def test_clause_chunks_start_at_the_first_long_enough_clause() -> None:
    text = "Well, the capital of France, as you know, is Paris. It is lovely in spring."
    chunks = feed_all(TextChunker(clauses=True), text)
    # The first clause goes out at once, however short; later ones need 4 words.
    assert chunks[:3] == ["Well,", "the capital of France,", "as you know, is Paris."]
    assert " ".join(chunks) == text


def test_sentence_mode_waits_for_the_sentence_end() -> None:
    text = "Well, the capital of France, as you know, is Paris. It is lovely in spring."
    chunks = feed_all(TextChunker(clauses=False), text)
    assert chunks == ["Well, the capital of France, as you know, is Paris.",
                      "It is lovely in spring."]


def test_decimal_points_and_short_later_clauses_do_not_split() -> None:
    chunks = feed_all(TextChunker(clauses=True), "Yes, it costs 3.50, or so, dollars today")
    assert chunks == ["Yes,", "it costs 3.50, or so,", "dollars today"]


def test_a_short_first_chunk_ends_after_n_words_without_punctuation() -> None:
    chunker = TextChunker(first_chunk_words=3)
    assert chunker.feed("I have never") == []  # the third word may still go on
    assert chunker.feed(" had the chance") == ["I have never"]
    # Only the first chunk: later ones wait for punctuation as before.
    assert chunker.feed(" to try it out and see") == []
    assert chunker.feed(". Yes") == ["had the chance to try it out and see."]


def test_punctuation_before_n_words_still_ends_the_first_chunk() -> None:
    chunker = TextChunker(first_chunk_words=4)
    assert chunker.feed("Sure, I can do that ") == ["Sure,"]
