"""What the command line shows on the terminal: the progress log, errors, a kept
failed build, the success line."""

from __future__ import annotations

import logging
import sys

from kiln.environments.envdir import RUN_DIR_NAME
from kiln.errors import BackendError, DiskFullError, Interrupted, KilnError, Terminated
from kiln.result import BuildResult


def success_line(result: BuildResult) -> str:
    names = [artifact.name for artifact in result.artifacts]
    listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    return f"Successfully built {listed} in {result.outdir}"


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
    output_logger = logging.getLogger("kiln.output")
    output_logger.handlers[:] = [raw]
    output_logger.propagate = False
    output_logger.setLevel(logging.INFO if verbosity >= 1 else logging.WARNING)
