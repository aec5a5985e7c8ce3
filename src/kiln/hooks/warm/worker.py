"""kiln's side of the warm worker protocol: start a worker, hand it hook calls,
read its status lines, stop it.

The protocol itself is documented at the top of the worker script,
``_worker/kiln_worker.py``, which runs in the build environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kiln.headstart import Launched, WorkerPlan, launch
from kiln.process import (
    DRAIN_SECONDS,
    BuildLog,
    OutputPipe,
    OutputSink,
    ProcessOutcome,
    log_command,
)
from kiln.process_group import end_process_group, stop_process_group

logger = logging.getLogger("kiln.hooks.warm")

# How long a worker may take to exit once its input is closed, before SIGKILL.
CLOSE_GRACE_SECONDS = 5.0
# How often a read from a worker checks that the worker is still there.
LIVENESS_SECONDS = 1.0


def start_worker(plan: WorkerPlan) -> tuple[Worker | None, str]:
    """A ready worker started by ``plan``, or None and why the hooks must run plain."""
    started = time.monotonic()
    worker = Worker.spawn(plan)
    if not isinstance(worker, Worker):
        return None, worker
    reason = worker.ready()
    if reason is not None:
        return None, reason
    logger.debug(
        "hook runner: warm (worker %d, %s, ready in %.0f ms)",
        worker.process.pid,
        plan.backend,
        (time.monotonic() - started) * 1000,
    )
    return worker, ""


def plain_reason(environ: Mapping[str, str]) -> str | None:
    """Why this hook environment rules a warm worker out, if it does."""
    entries = environ.get("PYTHONPATH", "").split(os.pathsep)
    if any(entry != "" and not Path(entry).is_absolute() for entry in entries) or (
        len(entries) > 1 and "" in entries
    ):
        return "relative PYTHONPATH entry"
    return None


class Worker:
    """One worker process: an interpreter with a backend imported, forking a child per hook."""

    def __init__(self, launched: Launched, environ: dict[str, str]) -> None:
        self.process = process = launched.process
        self.environ = dict(environ)
        self.marker = b"\0" + launched.token.encode() + b" "
        assert process.stdout is not None and process.stdin is not None
        self._pipe = OutputPipe(process.stdout.fileno())
        self._in = process.stdin.fileno()
        self._calls = 0
        self._paths: list[_PathEntry] = []
        self.alive = True
        # Modules this worker's hooks imported, for the next worker to import ahead.
        self.imported: dict[str, None] = {}

    @classmethod
    def spawn(cls, plan: WorkerPlan) -> Worker | str:
        """Start a worker by ``plan`` without waiting for it (see :meth:`ready`); or
        why it did not start. With ``plan.warm_imports``, the worker imports that
        file's modules for the backend ahead of the hooks."""
        launched = launch(plan)
        return launched if isinstance(launched, str) else cls(launched, plan.environ)

    def ready(self) -> str | None:
        """Wait until the worker is ready; why it cannot serve (it is stopped then), if so."""
        try:
            reason = self._handshake()
        except BaseException:
            self.kill()
            raise
        if reason is not None:
            self.stop()
        return reason

    def _handshake(self) -> str | None:
        """Wait for the worker's first status line; why it cannot serve, if it cannot."""
        early: list[bytes] = []
        status = self._read_status(early.append)
        if early:
            # A fresh interpreter would print this in every hook; a forked child would not.
            return "the interpreter or the backend prints at startup"
        if status is None:
            return f"the worker exited at startup ({self.process.wait()})"
        if status[0] == b"cold":
            return b" ".join(status[1:]).decode("utf-8", "replace")
        if status[0] != b"ready" or len(status) < 2:
            return f"the worker said {b' '.join(status)!r}"
        self._paths = [_PathEntry.of(entry) for entry in json.loads(b" ".join(status[1:]))]
        return None

    def changed(self, environ: Mapping[str, str]) -> str | None:
        """What changed since the worker started, if anything: then it must not serve."""
        if not self.alive or self.process.poll() is not None:
            return "it exited"
        if environ != self.environ:
            return "the hook environment changed"
        for entry in self._paths:
            if entry.changed():
                return f"{entry.path} changed"
        return None

    def call(self, cmd: Sequence[str], cwd: str, log: BuildLog) -> ProcessOutcome | None:
        """Run one hook command in a child; its output goes to ``log``.

        None when the worker was gone before it could take the call.
        """
        self._calls += 1
        request = {"id": self._calls, "argv": list(cmd[1:]), "cwd": cwd}
        try:
            self._send(json.dumps(request).encode() + b"\n")
        except BrokenPipeError:
            self.kill()
            return None
        except BaseException:
            self.kill()
            raise
        log_command(log, cmd, cwd)
        sink = OutputSink(log)
        try:
            status = self._read_status(sink.line)
            while status is not None and status[:1] == [b"imported"]:
                self._note_imports(b" ".join(status[1:]))
                status = self._read_status(sink.line)
        except BaseException:
            # KeyboardInterrupt (or anything else): the hook and its worker go, as
            # run_logged takes a plain hook's tree down.
            self.kill()
            raise
        if status is None:
            return self._died(sink, log)
        if status[:2] != [b"done", str(self._calls).encode()] or len(status) != 3:
            self.kill()
            log.write(f"(unexpected status from kiln's hook worker: {status!r})\n".encode())
            return sink.finish(1)
        return sink.finish(int(status[2]))

    def _note_imports(self, names: bytes) -> None:
        with contextlib.suppress(ValueError):
            for name in json.loads(names):
                if isinstance(name, str):
                    self.imported[name] = None

    def _died(self, sink: OutputSink, log: BuildLog) -> ProcessOutcome:
        """The worker died during the call: fail the hook with what it printed."""
        self.kill()
        returncode = self.process.returncode or 1
        log.write(f"(kiln's hook worker {self.process.pid} exited: {returncode})\n".encode())
        return sink.finish(returncode)

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._in, view) :]

    def _read_status(self, output: Callable[[bytes], None]) -> list[bytes] | None:
        """Pass output lines on until the next status line; its words, or None at the end."""
        while True:
            for line in self._pipe.lines():
                at = line.find(self.marker)
                if at < 0:
                    output(line)
                    continue
                if at > 0:
                    output(line[:at])  # the hook's last line, without a line end
                return line[at + len(self.marker) :].split()
            if self._pipe.eof:
                return None
            if not self._pipe.wait(LIVENESS_SECONDS) and self.process.poll() is not None:
                # The worker is gone but something it started holds the pipe.
                end_process_group(self.process.pid)
                if not self._pipe.wait(DRAIN_SECONDS):
                    self._pipe.eof = True

    def kill(self) -> None:
        """Stop the worker and its process group now (SIGTERM, grace, SIGKILL)."""
        self.alive = False
        try:
            stop_process_group(self.process)
        finally:
            self._close_pipes()

    def stop(self) -> None:
        """Let the worker exit at the end of its input; stop it if it does not. What
        its hooks left running in its process group (a background process) ends too."""
        self.alive = False
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(CLOSE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        finally:
            # Also when the wait is interrupted: SIGTERM, grace, SIGKILL (or the stragglers).
            stop_process_group(self.process)
            self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class _PathEntry:
    """A directory on the worker's ``sys.path``, as it was when the worker imported."""

    def __init__(self, path: str, mtime: int | None, names: frozenset[str] | None) -> None:
        self.path = path
        self.mtime = mtime
        self.names = names

    @classmethod
    def of(cls, path: str) -> _PathEntry:
        mtime = _mtime(path)
        return cls(path, mtime, _names(path) if mtime is not None else None)

    def changed(self) -> bool:
        """Whether something was installed or removed here: a stat, and a listing if
        the directory's time changed (running code may add a ``__pycache__`` there)."""
        mtime = _mtime(self.path)
        if mtime == self.mtime:
            return False
        if mtime is None or self.names is None or _names(self.path) != self.names:
            return True
        self.mtime = mtime
        return False


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns  # noqa: PTH116
    except OSError:
        return None


def _names(path: str) -> frozenset[str] | None:
    try:
        with os.scandir(path) as entries:
            return frozenset(e.name for e in entries if e.name != "__pycache__")
    except OSError:
        return None  # not a directory (a zip file): its time alone decides
