"""``python -m kiln`` and the ``kiln`` console script."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

_VERSION_ARGS = (["--version"], ["-V"])
# 128 + SIGINT: what a shell reports for a command Ctrl-C stopped.
_EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    # `kiln --version` is on the hot path of scripts and benchmarks: skip argparse.
    if args in _VERSION_ARGS:
        from kiln import __version__

        print(f"kiln {__version__}")
        return 0
    from kiln.cli import run

    return run(args)


def console() -> None:
    """The console script: :func:`main`, then exit without tearing the interpreter down.

    An interrupt (Ctrl-C, or SIGTERM and SIGHUP, which raise
    :class:`kiln.errors.Terminated`) at any point ends kiln with 128 + the signal
    and at most a line, never a traceback: where the build is under way, the
    command line reports it (and what was kept) itself; before that, or should a
    second interrupt cut the cleanup short, it is reported here.

    By the end of a run kiln has closed its files and stopped its workers; what is
    left is freeing every module and object one by one, which takes longer than
    a warm build's own work in kiln. The exit handlers still run (logging flushes
    its handlers there) and the standard streams are flushed; a failure to write
    them fails the exit as the interpreter's own would (status 120).
    """
    status = _EXIT_INTERRUPTED
    sys.unraisablehook = _unraisable
    try:
        try:
            if sys.argv[1:] not in _VERSION_ARGS:  # which stays free of the signal module
                _stop_on_termination()
            status = main()
            _ignore_signals()
        except BaseException as error:
            interrupt = _interrupt_behind(error)
            if interrupt is None:
                raise
            status = _exit_status(interrupt)
            _ignore_signals()
            _say(f"kiln: interrupted{_by(interrupt)}")
    except KeyboardInterrupt as interrupt:  # another one, while reporting the first
        status = _exit_status(interrupt)
        _ignore_signals()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120
    os._exit(status)


def _stop_on_termination() -> None:
    """Make SIGTERM and SIGHUP raise Terminated, as Ctrl-C raises KeyboardInterrupt,
    so that they stop what kiln started and keep the failed build just as Ctrl-C does.
    A signal ignored when kiln started (``nohup``) stays ignored."""
    import signal

    from kiln.errors import Terminated

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(signum, signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, terminate)


def _ignore_signals() -> None:
    """From here on kiln is only exiting, with nothing left running to stop: an
    interrupt now would only cut the exit handlers short (with a traceback)."""
    signal = sys.modules.get("signal")  # not loaded: nothing but the default handlers
    if signal is not None:
        # SIGALRM: an interrupt raised again (_unraisable) that is still to come.
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGALRM"):
            signum = getattr(signal, name, None)
            if signum is not None:
                signal.signal(signum, signal.SIG_IGN)


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """An interrupt that comes while Python runs a callback it cannot raise from (one
    the import machinery registered, a ``__del__``) would be printed with a traceback,
    then forgotten: raise it again a moment later, outside the callback."""
    interrupt = unraisable.exc_value
    if not isinstance(interrupt, KeyboardInterrupt) or os.name != "posix":
        sys.__unraisablehook__(unraisable)
        return
    import signal

    def again(signum: int, frame: object) -> None:
        raise interrupt

    # Not the interrupt's own signal, sent now: Python would run its handler in here.
    signal.signal(signal.SIGALRM, again)
    signal.setitimer(signal.ITIMER_REAL, 0.001)


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The interrupt ``error`` is, or was directly caused by: Python 3.11 turns one
    that comes while a class is being made (an import) into a RuntimeError."""
    seen = 0
    cause: BaseException | None = error
    while cause is not None and seen < 10:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        cause, seen = cause.__cause__, seen + 1
    return None


def _exit_status(interrupt: KeyboardInterrupt) -> int:
    exit_code = getattr(interrupt, "exit_code", _EXIT_INTERRUPTED)
    return exit_code if isinstance(exit_code, int) else _EXIT_INTERRUPTED


def _by(interrupt: KeyboardInterrupt) -> str:
    name = getattr(interrupt, "name", None)
    return f" by {name}" if isinstance(name, str) else ""


def _say(line: str) -> None:
    """One line on stderr, if it can still be written (after SIGHUP, the terminal may be gone)."""
    try:  # noqa: SIM105 (contextlib would cost an import before any interrupt)
        print(line, file=sys.stderr)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    console()
