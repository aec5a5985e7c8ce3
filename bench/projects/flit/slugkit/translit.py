"""Folding text to ASCII."""

from __future__ import annotations

import unicodedata

_SPECIAL = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l"}


def ascii_fold(text: str) -> str:
    """``text`` with accents removed and a few letters spelled out."""
    text = "".join(_SPECIAL.get(char, char) for char in text)
    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode("ascii")
