"""Splitting text into words."""

from __future__ import annotations

import re
from collections.abc import Iterator

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def tokens(text: str) -> Iterator[str]:
    """The lower-cased words of ``text``."""
    for match in _WORD.finditer(text):
        yield match.group(0).lower()
