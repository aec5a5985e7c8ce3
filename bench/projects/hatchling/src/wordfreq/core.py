"""Counting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from wordfreq.tokenize import tokens


def count_words(lines: Iterable[str], *, min_length: int = 1) -> Counter[str]:
    """Count the words of at least ``min_length`` characters in ``lines``."""
    counter: Counter[str] = Counter()
    for line in lines:
        counter.update(word for word in tokens(line) if len(word) >= min_length)
    return counter


def top_words(counter: Counter[str], n: int = 10) -> list[tuple[str, int]]:
    """The ``n`` most common words, ties broken alphabetically."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]
