"""The ``slugify`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from slugkit.slug import slugify


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slugify")
    parser.add_argument("text", nargs="+")
    parser.add_argument("--separator", default="-")
    parser.add_argument("--max-length", type=int, default=0)
    args = parser.parse_args(argv)
    print(slugify(" ".join(args.text), separator=args.separator, max_length=args.max_length))
    return 0
