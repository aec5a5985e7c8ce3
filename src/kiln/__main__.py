"""``python -m kiln`` and the ``kiln`` console script."""

from __future__ import annotations

import os
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


def console() -> None:
    """The console script: :func:`main`, then exit without tearing the interpreter down.

    By the end of a run kiln has closed its files and stopped its workers; what is
    left is freeing every module and object one by one, which takes longer than
    a warm build's own work in kiln. The exit handlers still run (logging flushes
    its handlers there) and the standard streams are flushed; a failure to write
    them fails the exit as the interpreter's own would (status 120).
    """
    status = main()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120
    os._exit(status)


if __name__ == "__main__":
    console()
