"""The ``unitconv`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from unitconv.convert import UnknownUnitError, convert


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unitconv")
    parser.add_argument("value", type=float)
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    try:
        result = convert(args.value, args.source, args.target)
    except UnknownUnitError as exc:
        print(f"unitconv: {exc}", file=sys.stderr)
        return 2
    print(f"{result:.6g} {args.target}")
    return 0
