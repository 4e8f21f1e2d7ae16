"""Split streamed LLM text into pieces TTS can start on: clauses, or whole sentences."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[-–—])(?=\s)")
# A clause shorter than this sounds clipped and gains little time: keep going.
MIN_CLAUSE_WORDS = 4
# ...except the first one: "Sure," or "Well," is a natural pause, and speaking it
# while the rest is generated is the cheapest latency there is.
FIRST_CLAUSE_MIN_WORDS = 1


class TextChunker:
    """Feed text deltas, get speakable chunks; ``flush`` returns the rest."""

    def __init__(self, clauses: bool = True, min_clause_words: int = MIN_CLAUSE_WORDS,
                 first_clause_min_words: int = FIRST_CLAUSE_MIN_WORDS,
                 first_chunk_words: int = 0) -> None:
        self.clauses = clauses
        self.min_clause_words = min_clause_words
        self.first_clause_min_words = first_clause_min_words
        # > 0: the first chunk ends after this many words even without punctuation,
        # so synthesis starts sooner (at the price of a seam in the sentence's melody).
        self.first_chunk_words = first_chunk_words
        self._buffer = ""
        self._emitted = 0

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        chunks: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return chunks
            chunk, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if chunk:
                chunks.append(chunk)
                self._emitted += 1

    def _next_cut(self) -> int | None:
        sentence = _SENTENCE_END.search(self._buffer)
        best = sentence.end() if sentence else None
        if self.clauses:
            minimum = self.first_clause_min_words if self._emitted == 0 else self.min_clause_words
            for match in _CLAUSE_END.finditer(self._buffer):
                if best is not None and match.end() >= best:
                    break
                if len(self._buffer[: match.end()].split()) >= minimum:
                    best = match.end()
                    break
        if best is None and self._emitted == 0 and self.first_chunk_words > 0:
            best = self._after_words(self.first_chunk_words)
        return best

    def _after_words(self, count: int) -> int | None:
        """Where the ``count``-th word ends, once a space shows that it is complete."""
        words = list(re.finditer(r"\S+(?=\s)", self._buffer))
        return words[count - 1].end() if len(words) >= count else None

    @property
    def pending(self) -> str:
        """Text fed and not yet returned as a chunk."""
        return self._buffer

    def flush(self) -> str:
        rest, self._buffer = self._buffer.strip(), ""
        return rest
