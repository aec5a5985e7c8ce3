"""``python -m kiln`` and the ``kiln`` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    # `kiln --version` is on the hot path of scripts and benchmarks: skip argparse.
    if args in (["--version"], ["-V"]):
        from kiln import __version__

        print(f"kiln {__version__}")
        return 0
    from kiln.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
