"""Running a child process whose output goes to the build log.

Installers and backend hooks both run this way: output is merged, written to
the log file as it arrives, passed line by line to the ``kiln.output`` logger
(the CLI shows it with ``-v``), and its last lines are kept for error messages.
Each child gets its own process group so that an interrupted kiln can stop the
whole tree it started, not just the direct child.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

output_logger = logging.getLogger("kiln.output")

TAIL_LINES = 30
# How long an interrupted child may take to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE_SECONDS = 5.0


class BuildLog:
    """The log file of one kiln run: every command and everything it printed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: on a full disk a write fails at once and nothing is left
        # pending for close() to fail on again.
        self._stream: IO[bytes] = path.open("ab", buffering=0)

    def section(self, title: str) -> None:
        # A path with a byte that is not UTF-8 comes back as that byte.
        self.write(f"\n=== {title}\n".encode("utf-8", "surrogateescape"))

    def write(self, data: bytes) -> None:
        """Append ``data``; raises OSError naming the log (a full disk: ENOSPC)."""
        view = memoryview(data)
        try:
            while view:
                written = self._stream.write(view)
                if not written:
                    break  # pragma: no cover - a regular file takes a byte or raises
                view = view[written:]
        except OSError as error:
            if error.filename is None:
                raise OSError(error.errno, error.strerror, str(self.path)) from error
            raise

    def close(self) -> None:
        self._stream.close()


@dataclass(frozen=True)
class ProcessOutcome:
    returncode: int
    tail: tuple[str, ...]


class OutputSink:
    """Where a child's output goes: the log file as it arrives, the ``kiln.output``
    logger line by line, and its last lines kept for error messages."""

    def __init__(self, log: BuildLog) -> None:
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def line(self, raw: bytes) -> None:
        """One line of output, with its line ending if it had one."""
        self.log.write(raw)
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        self.tail.append(line)
        output_logger.info("%s", line)

    def finish(self, returncode: int) -> ProcessOutcome:
        if returncode < 0:
            self.tail.append(f"(killed by signal {_signal_name(-returncode)})")
        self.log.write(f"=== exit status {returncode}\n".encode())
        return ProcessOutcome(returncode, tuple(self.tail))


def log_command(log: BuildLog, command: Sequence[str], cwd: Path | str | None) -> None:
    """The log's heading for one command."""
    log.section(f"$ {' '.join(command)}" + (f"  (in {cwd})" if cwd else ""))


def run_logged(
    command: Sequence[str],
    *,
    log: BuildLog,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
) -> ProcessOutcome:
    """Run ``command`` to completion with its output logged; never raises on failure."""
    log_command(log, command, cwd)
    sink = OutputSink(log)
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=os.name == "posix",
    )
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            sink.line(raw)
        returncode = process.wait()
    except BaseException:
        # KeyboardInterrupt (or anything else): take the child's whole tree down.
        stop_process_group(process)
        raise
    finally:
        process.stdout.close()
    return sink.finish(returncode)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started in a session of its own, and everything in its process
    group: SIGTERM, a grace period, then SIGKILL."""
    if process.poll() is not None:
        return
    if os.name == "posix":
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(TERMINATE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        # The leader is gone; stragglers in its group get no second chance.
        _signal_group(process.pid, signal.SIGKILL)
    else:
        process.kill()
        process.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
