"""Running a child process whose output goes to the build log.

Installers and backend hooks both run this way: output is merged, written to
the log file as it arrives, passed line by line to the ``kiln.output`` logger
(the CLI shows it with ``-v``), and its last lines are kept for error messages.

Each child gets its own process group, and no member of it outlives the child's
turn: whatever the child leaves running when it exits is ended with it
(:func:`end_process_group`), an interrupted kiln (Ctrl-C, SIGTERM, SIGHUP) stops
the whole group (:func:`stop_process_group`), and should kiln itself be killed
(SIGKILL, the OOM killer), a small watcher it started ends the groups it left
(:class:`GroupReaper`). A process that leaves the group on purpose (``setsid``,
a daemon a hook starts) is beyond all of these. Signalling a group is
:mod:`kiln.process_group`'s.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kiln.process_group import TERMINATE_GRACE_SECONDS, end_process_group, stop_process_group

output_logger = logging.getLogger("kiln.output")

TAIL_LINES = 30
# After a child exits, how long its output is still read: what it wrote last may
# still be on its way, and something it left running may hold the pipe open.
DRAIN_SECONDS = 0.5
# How often a read from a child checks whether it has exited.
POLL_SECONDS = 0.25
_READ_SIZE = 65536


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


class OutputPipe:
    """A child's output pipe, read as it arrives, never waiting longer than asked.

    Reading to the end of the pipe is not enough: the end comes when every process
    holding it has exited, which a child's background process may never do.
    So readers wait for output a while at a time, and look at the child in between.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buffer = b""

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for output and take what came; False if none did."""
        if self.eof:
            return True
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        data = os.read(self.fd, _READ_SIZE)
        if data:
            self._buffer += data
        else:
            self.eof = True
        return True

    def lines(self) -> Iterator[bytes]:
        """The complete lines read so far, each with its line end; at the end of
        the pipe, the unfinished last line too."""
        while True:
            line = self.line()
            if line is None:
                return
            yield line

    def line(self) -> bytes | None:
        """The next complete line read (the unfinished last one at the end), if any."""
        end = self._buffer.find(b"\n")
        if end < 0:
            if not (self.eof and self._buffer):
                return None
            end = len(self._buffer) - 1
        line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
        return line


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
    """Run ``command`` to completion with its output logged; never raises on failure.

    The output is read until the child exits, then for :data:`DRAIN_SECONDS` at
    most; anything left in its process group is ended then.
    """
    log_command(log, command, cwd)
    sink = OutputSink(log)
    reaper = GroupReaper.get()  # before the child: it is listed the moment it exists
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
        if reaper is not None:
            reaper.watch(process.pid)
        _read_until_exit(process, OutputPipe(process.stdout.fileno()), sink)
        returncode = process.wait()
        end_process_group(process.pid)
    except BaseException:
        # KeyboardInterrupt, Terminated (or anything else): take the child's whole tree down.
        stop_process_group(process)
        raise
    finally:
        process.stdout.close()
        if reaper is not None:
            reaper.forget(process.pid)
    return sink.finish(returncode)


def _read_until_exit(process: subprocess.Popen[bytes], pipe: OutputPipe, sink: OutputSink) -> None:
    exited: float | None = None
    while not pipe.eof:
        if exited is None:
            pipe.wait(POLL_SECONDS)
        else:
            left = exited + DRAIN_SECONDS - time.monotonic()
            if left <= 0 or not pipe.wait(left):
                break  # something the child left running holds the pipe
        for line in pipe.lines():
            sink.line(line)
        if exited is None and process.poll() is not None:
            exited = time.monotonic()
    for line in pipe.lines():
        sink.line(line)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


# Reads "+GROUP" and "-GROUP" lines; at the end of its input, kills the groups listed.
_REAPER_SCRIPT = """\
groups=' '
while IFS= read -r line; do
  g=${line#?}
  case $line in
    +*) groups="$groups$g " ;;
    -*) case $groups in *" $g "*) groups="${groups%% $g *} ${groups#* $g }" ;; esac ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
"""


class GroupReaper:
    """Ends the process groups of kiln's children should kiln die without ending them.

    A parent-death signal (Linux's prctl) reaches only the direct child: not what
    it started (pip ``--python`` installs from a second pip, its child; uv and pip
    build sdists in children of their own), and not on other systems. So kiln
    starts, once, a small shell in a session of its own that reads the children's
    group numbers from a pipe only kiln holds. When kiln exits, however it exits,
    the pipe ends, and the shell kills the groups still listed. kiln lists a group
    when it starts the child and takes it off once it has ended the group itself.
    """

    _current: GroupReaper | None = None

    def __init__(self, process: subprocess.Popen[bytes], fd: int) -> None:
        self.process = process
        self.fd = fd
        self.pid = os.getpid()

    def watch(self, pgid: int) -> None:
        """List ``pgid``: the watcher kills that group if kiln exits before :meth:`forget`."""
        self._tell(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        """Take ``pgid`` off the list, once kiln has ended the group itself."""
        self._tell(f"-{pgid}")

    @classmethod
    def get(cls) -> GroupReaper | None:
        """This process's watcher, started if need be; None where there can be none."""
        current = cls._current
        if current is not None:
            if current.pid == os.getpid() and current.process.poll() is None:
                return current
            # Gone, or a forked copy of kiln's: that copy must not keep the other open.
            with contextlib.suppress(OSError):
                os.close(current.fd)
            cls._current = None
        if os.name != "posix" or not Path("/bin/sh").exists():
            return None
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", _REAPER_SCRIPT],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a signal to kiln's group does not end it early
            )
        except OSError:
            os.close(write_end)
            return None
        finally:
            os.close(read_end)
        cls._current = cls(process, write_end)
        atexit.register(cls._close)
        return cls._current

    @classmethod
    def _close(cls) -> None:
        """At exit, with every group ended: let the watcher go now, not at teardown."""
        current, cls._current = cls._current, None
        if current is None or current.pid != os.getpid():
            return
        with contextlib.suppress(OSError):
            os.close(current.fd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            current.process.wait(TERMINATE_GRACE_SECONDS)

    def _tell(self, line: str) -> None:
        # A line is far below PIPE_BUF: written whole, at once, or not at all.
        with contextlib.suppress(OSError):  # the watcher is gone: the next child starts another
            os.write(self.fd, f"{line}\n".encode())
