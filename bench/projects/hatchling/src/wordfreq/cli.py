"""The ``wordfreq`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wordfreq.core import count_words, top_words


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wordfreq")
    parser.add_argument("files", nargs="*", default=["-"])
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--min-length", type=int, default=1)
    args = parser.parse_args(argv)
    counter = count_words((), min_length=args.min_length)
    for name in args.files:
        if name == "-":
            counter += count_words(sys.stdin, min_length=args.min_length)
        else:
            with Path(name).open(encoding="utf-8") as handle:
                counter += count_words(handle, min_length=args.min_length)
    for word, count in top_words(counter, args.top):
        print(f"{count:8d}  {word}")
    return 0
