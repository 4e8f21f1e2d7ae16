"""Small helpers on sequences, shared by the KV cache logic and the reply checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def common_prefix_len(a: Sequence[T], b: Sequence[T]) -> int:
    """How many leading items the two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
