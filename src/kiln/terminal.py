"""What the command line shows on the terminal: the progress log, errors, a kept
failed build, the success line."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from kiln.environments.envdir import RUN_DIR_NAME
from kiln.errors import (
    BackendError,
    DiskFullError,
    Interrupted,
    KilnError,
    Terminated,
    UsageError,
)
from kiln.result import BuildResult

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kiln.live import LiveScreen


def success_line(result: BuildResult) -> str:
    names = [artifact.name for artifact in result.artifacts]
    listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    return f"Successfully built {listed} in {result.outdir}"


def write_build_timings(result: BuildResult, path: str, verbosity: int) -> Path:
    """``kiln --timings[=PATH]``: the build's timings page, at PATH or beside its log."""
    from kiln.cache import TIMINGS_SUFFIX
    from kiln.timings import build_html, write_html

    if path:
        target = Path(path)
    elif result.log_path is not None:
        target = result.log_path.with_suffix(TIMINGS_SUFFIX)
    else:
        raise UsageError("this build kept no log to put the timings page beside: --timings=PATH")
    try:
        write_html(target, build_html(result.report()))
    except OSError as error:
        raise UsageError(f"cannot write --timings {target}: {error.strerror or error}") from error
    if verbosity > -2:
        print(f"timings: {target}", file=sys.stderr)
    return target


def print_error(error: KilnError, verbosity: int) -> None:
    lines = [f"kiln: error: {error}"]
    # With -v the output was streamed already; repeating it helps no one.
    # A hook that filled the disk is a DiskFullError: its output is shown as well.
    tail = error.output_tail if isinstance(error, (BackendError, DiskFullError)) else ()
    if tail and verbosity < 1:
        lines.append(f"  last {len(tail)} lines of the backend's output:")
        lines += [f"  | {line}" for line in tail]
    if error.log_path is not None:
        lines.append(f"  full log: {error.log_path}")
    print("\n".join(lines), file=sys.stderr)
    print_kept_build(error)


def print_interrupted(interrupt: KeyboardInterrupt) -> None:
    """kiln was interrupted (Ctrl-C, or a signal: see ``kiln.errors.Terminated``)."""
    name = interrupt.name if isinstance(interrupt, Terminated) else None
    try:
        print(f"\nkiln: interrupted{f' by {name}' if name else ''}", file=sys.stderr)
        print_kept_build(interrupt)
    except (OSError, ValueError):
        pass  # after SIGHUP the terminal may be gone: the exit status says it all


def print_kept_build(error: KilnError | KeyboardInterrupt) -> None:
    # A plain KeyboardInterrupt: interrupted before the builder kept anything.
    kept = error.kept_build if isinstance(error, (KilnError, Interrupted)) else None
    if kept is None:
        return
    env_dir = kept.run_dir.parent if kept.run_dir.name == RUN_DIR_NAME else None
    command = f"kiln debug --env-dir {env_dir}" if env_dir else "kiln debug"
    lines = []
    if not isinstance(error, KilnError):  # an interrupt: no error message named the log
        lines.append(f"  full log: {kept.log}")
    if kept.environment is not None:
        lines.append(f"  the build environment is kept at {kept.environment}")
    else:
        lines.append(f"  the failed build's files are kept at {kept.run_dir}")
    lines.append(f"  open it where the build failed: {command}")
    print("\n".join(lines), file=sys.stderr)


class _ProgressFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"kiln: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"kiln: warning: {message}"
        if record.levelno >= logging.INFO:
            return f"* {message}"
        return f"  [{record.name}] {message}"


def live_display_wanted(
    verbosity: int, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Whether to draw status lines in place: on a terminal only (not a pipe or a CI
    log), not with -q (less) or -v (the backend's output streams), not on a dumb
    terminal, and only with ``rich`` installed. Imports nothing heavy."""
    import importlib.util

    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    if verbosity != 0 or environ.get("TERM") == "dumb":
        return False
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
    return importlib.util.find_spec("rich") is not None


@contextlib.contextmanager
def build_progress(verbosity: int) -> Iterator[None]:
    """While a single build runs: on a terminal, a status line (step, time, the
    backend's latest line) under kiln's messages; elsewhere, a heartbeat line when
    a step has run long. Call :func:`configure_logging` first."""
    from kiln.progress import Activity, ActivityRecorder, step_watch

    activity = Activity()
    recorder = ActivityRecorder(activity)
    kiln_logger, output_logger = logging.getLogger("kiln"), logging.getLogger("kiln.output")
    kiln_logger.addHandler(recorder)
    output_logger.addHandler(recorder)

    def status(screen: LiveScreen) -> list[tuple[str, str]]:
        from kiln.live import build_status

        return build_status(screen, activity)

    try:
        with progress_display(verbosity, status, step_watch(activity)):
            yield
    finally:
        kiln_logger.removeHandler(recorder)
        output_logger.removeHandler(recorder)


@contextlib.contextmanager
def progress_display(
    verbosity: int,
    status: Callable[[LiveScreen], Sequence[tuple[str, str]]],
    watched: Callable[[], Iterable[tuple[str, float, str | None]]],
) -> Iterator[None]:
    """On a terminal (:func:`live_display_wanted`), ``status``' lines drawn in place
    under kiln's messages (which go through the display meanwhile); elsewhere,
    unless quiet, a :class:`kiln.progress.Heartbeat` over ``watched``."""
    from kiln.progress import Heartbeat

    if live_display_wanted(verbosity):
        from kiln.live import LiveScreen

        kiln_logger = logging.getLogger("kiln")
        printing = kiln_logger.handlers[0]  # configure_logging's
        screen = LiveScreen(status)
        kiln_logger.handlers[0] = screen.handler(_ProgressFormatter())
        try:
            with screen:
                yield
        finally:
            kiln_logger.handlers[0] = printing
    elif verbosity >= 0:
        with Heartbeat(watched, say_on_stderr):
            yield
    else:
        yield


def say_on_stderr(line: str) -> None:
    """One line of progress on stderr, at once (it may come from another thread)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def configure_logging(verbosity: int) -> None:
    """Route the library's logging to stderr at a level set by -v/-q."""
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(_ProgressFormatter())
    kiln_logger = logging.getLogger("kiln")
    kiln_logger.handlers[:] = [progress]
    kiln_logger.propagate = False
    kiln_logger.setLevel(
        logging.DEBUG
        if verbosity >= 2
        else logging.INFO
        if verbosity >= 0
        else logging.WARNING
        if verbosity == -1
        else logging.ERROR
    )
    # Backend and installer output, verbatim, only when asked for.
    raw = logging.StreamHandler(sys.stderr)
    raw.setFormatter(logging.Formatter("%(message)s"))
    raw.setLevel(logging.INFO if verbosity >= 1 else logging.WARNING)
    output_logger = logging.getLogger("kiln.output")
    output_logger.handlers[:] = [raw]
    output_logger.propagate = False
    # Every line is a record: the progress display shows the latest (kiln.progress).
    output_logger.setLevel(logging.INFO)
