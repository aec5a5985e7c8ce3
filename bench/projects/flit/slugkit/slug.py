"""Slugs."""

from __future__ import annotations

import re
from collections.abc import Container

from slugkit.translit import ascii_fold

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def slugify(text: str, *, separator: str = "-", max_length: int = 0) -> str:
    """``text`` folded to ASCII, lower-cased, with runs of other characters as ``separator``."""
    slug = _NOT_WORD.sub(separator, ascii_fold(text).lower()).strip(separator)
    if max_length > 0:
        slug = slug[:max_length].rstrip(separator)
    return slug


def unique_slug(text: str, taken: Container[str], *, separator: str = "-") -> str:
    """A slug of ``text`` that is not in ``taken``, with a numeric suffix if needed."""
    base = slugify(text, separator=separator)
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}{separator}{number}"
    return candidate
