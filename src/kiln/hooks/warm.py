"""The warm hook runner: each hook in a fresh child forked from a worker that has
the backend imported already.

PEP 517 asks for a fresh process per hook, so that what a backend does to its
process never reaches the next hook. A fresh process need not start cold: one
worker per build environment and backend (``_worker/kiln_worker.py``, run by
the environment's interpreter) imports the backend once and forks a child per
hook call. The child runs pyproject-hooks' in-process script exactly as the
plain runner's ``python SCRIPT HOOK DIR`` would; its output, the log, the exit
status and the errors kiln reports are the plain runner's.

The warm path is only taken where a forked child is indistinguishable from a
fresh interpreter; otherwise the hook runs the plain way:

- an in-tree backend (``backend-path``): it must be imported from the tree being
  built, and kiln builds the wheel from an unpacked sdist, another tree;
- a relative ``PYTHONPATH`` entry: it means something else in another directory;
- a backend whose import fails, prints, warns or starts threads (the worker
  reports it "cold" and exits).

A worker is restarted when what it was started with has changed: the hook
environment's variables, or the contents of a directory on its ``sys.path``
(requirements installed after the import).

Hooks import most of what they use inside the hook, and a fresh process pays
for it every time. For environments that keep notes (cached ones, see
``BuildEnvironment.warm_imports``), kiln remembers per backend which modules
the hooks imported from the environment and the standard library, and the next
worker imports them once, up front. Should that import change anything a forked
hook would inherit, the worker reports it cold; kiln then starts one without
those imports and stops taking them ahead for that environment and backend.

A worker takes a while to start (an interpreter, the backend, the imports
ahead), and so does kiln itself before the first hook. So that the two
overlap, kiln keeps, beside the project's place, the plan of the first worker
the last build of the source started: its interpreter, backend, variables and
environment generation. The next run starts that worker early (the command
line before it imports the rest of kiln, see :mod:`kiln.headstart`; the
library once it holds the place), and a hook takes it only if its own plan is
the same in every part and the environment was not replaced since; otherwise
it is killed unused.

Workers never outlive kiln: they exit at the end of their input, which comes
when kiln closes it or dies, and on Linux also when kiln's thread is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kiln.environments import BuildEnvironment
from kiln.headstart import HeadStart, Launched, keep_plan, launch, start
from kiln.hooks.plain import SubprocessHookRunner, SubprocessRunner
from kiln.jsonfiles import read_json_object, write_json
from kiln.process import (
    DRAIN_SECONDS,
    BuildLog,
    OutputPipe,
    OutputSink,
    ProcessOutcome,
    end_process_group,
    log_command,
    stop_process_group,
)
from kiln.project import BuildSystem

logger = logging.getLogger(__name__)

# How long a worker may take to exit once its input is closed, before SIGKILL.
CLOSE_GRACE_SECONDS = 5.0
# How often a read from a worker checks that the worker is still there.
LIVENESS_SECONDS = 1.0

WorkerKey = tuple[str, str]  # (interpreter, build-backend)


@dataclass(frozen=True)
class WorkerPlan:
    """What a worker is started with; kept for the next run's head start."""

    python: str
    backend: str
    environ: dict[str, str]
    cwd: str
    warm_imports: str | None
    # The environment's generation: None where it does not last (no head start).
    generation: str | None

    def serves(self, wanted: WorkerPlan) -> bool:
        """Whether a worker started by this plan may serve ``wanted``: the same in
        every part but the directory (module-level code sees the first hook's,
        whichever that was), in an environment that lasts."""
        same = asdict(self) | {"cwd": None} == asdict(wanted) | {"cwd": None}
        return same and self.generation is not None

    def start(self) -> tuple[Worker | None, str]:
        """A ready worker, or None and why the hooks must run plain."""
        started = time.monotonic()
        worker = Worker.spawn(self)
        if not isinstance(worker, Worker):
            return None, worker
        reason = worker.ready()
        if reason is not None:
            return None, reason
        logger.debug(
            "hook runner: warm (worker %d, %s, ready in %.0f ms)",
            worker.process.pid,
            self.backend,
            (time.monotonic() - started) * 1000,
        )
        return worker, ""

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> WorkerPlan | None:
        try:
            return cls(**fields)  # type: ignore[arg-type]
        except TypeError:
            return None  # another version's plan


class WarmHookRunners:
    """Hands out warm runners; owns one worker per interpreter and backend."""

    name = "warm"

    def __init__(self) -> None:
        self._workers: dict[WorkerKey, Worker] = {}
        # Why a worker could not serve (interpreter, backend): its hooks run plain.
        self._cold: dict[WorkerKey, str] = {}
        # Where each environment keeps its notes on what hooks import, if it does.
        self._notes: dict[str, WarmImports] = {}
        self._generations: dict[str, str | None] = {}
        # The head start: where plans are kept, the last run's worker started early,
        # and the plan of this run's first worker.
        self._plans: tuple[Path, Path] | None = None
        self._early: tuple[WorkerPlan, Worker] | None = None
        self._first_plan: WorkerPlan | None = None

    def head_start(self, plans: Path, source: Path, started: HeadStart | None = None) -> None:
        """Take the worker ``started`` ahead by the plan kept in ``plans`` for
        ``source``, or start it now, before a hook asks for it; at close, keep the
        plan of this run's first worker there."""
        self._plans = (plans, source)
        if started is None or (started.plans, started.source) != self._plans:
            if started is not None:
                started.discard()
            started = start(plans, source)
        if started is None:
            return
        plan = WorkerPlan.from_fields(started.fields)
        if plan is None or plan.generation is None or _plain_reason(plan.environ):
            started.discard()
            return
        launched = started.take()
        if launched is not None:
            self._early = (plan, Worker(launched, plan.environ))

    def runner(
        self, environment: BuildEnvironment, build_system: BuildSystem, log: BuildLog
    ) -> SubprocessRunner:
        environ = environment.hook_environ()
        if build_system.backend_path:
            logger.debug("hook runner: plain (backend-path)")
            return SubprocessHookRunner(environ, log)
        python = str(environment.python)
        if environment.warm_imports is not None and python not in self._notes:
            self._notes[python] = WarmImports(environment.warm_imports)
        self._generations[python] = environment.generation
        return WarmHookRunner(self, build_system.build_backend, environ, log)

    def close(self) -> None:
        self._kill_early()
        workers, self._workers = list(self._workers.items()), {}
        for key, worker in workers:
            self._retire(key, worker)
        plan = self._first_plan
        if plan is None or self._plans is None:
            return
        notes = self._notes.get(plan.python)
        if notes is not None:
            # As the next run will want it: with what this run's hooks imported, if usable.
            usable = notes.usable(plan.backend)
            plan = replace(plan, warm_imports=str(notes.path) if usable else None)
        try:
            keep_plan(*self._plans, asdict(plan))
        except OSError as error:
            logger.debug("cannot keep the worker's plan in %s: %s", self._plans[0], error)

    def run(
        self,
        cmd: Sequence[str],
        cwd: str | None,
        environ: dict[str, str],
        backend: str,
        log: BuildLog,
    ) -> ProcessOutcome | None:
        """Run one hook command in a forked child; None: run it the plain way."""
        key = (cmd[0], backend)
        reason = self._cold.get(key) or _plain_reason(environ)
        if reason is not None:
            logger.debug("hook runner: plain (%s)", reason)
            return None
        cwd = cwd if cwd is not None else str(Path.cwd())
        for _ in range(2):
            worker = self._worker(key, environ, cwd)
            if worker is None:
                return None
            outcome = worker.call(cmd, cwd, log)
            if not worker.alive:
                # It died, before the hook or while running it: the next hook gets a new one.
                del self._workers[key]
                self._retire(key, worker)
            if outcome is not None:
                return outcome
        return None

    def _worker(self, key: WorkerKey, environ: dict[str, str], cwd: str) -> Worker | None:
        """The worker for ``key``, ready to serve ``environ``; None: run plain."""
        worker = self._workers.get(key)
        if worker is not None:
            changed = worker.changed(environ)
            if changed is None:
                return worker
            logger.debug("hook runner: restarting the warm worker (%s)", changed)
            del self._workers[key]
            self._retire(key, worker)
        python, backend = key
        notes = self._notes.get(python)
        warm_imports = notes.path if notes is not None and notes.usable(backend) else None
        plan = WorkerPlan(
            python,
            backend,
            environ,
            cwd,
            str(warm_imports) if warm_imports else None,
            self._generations.get(python),
        )
        worker, reason = self._start(plan)
        if worker is None and warm_imports is not None:
            # Perhaps what earlier hooks imported is to blame: try without it.
            plan = WorkerPlan(python, backend, environ, cwd, None, plan.generation)
            worker, _ = self._start(plan)
            if worker is not None and notes is not None:
                notes.refuse(backend, reason)
        if worker is None:
            self._cold[key] = reason
            logger.debug("hook runner: plain (%s)", reason)
            return None
        self._workers[key] = worker
        if self._first_plan is None and plan.generation is not None:
            self._first_plan = plan
        return worker

    def _start(self, plan: WorkerPlan) -> tuple[Worker | None, str]:
        """A ready worker for ``plan``: the one started ahead if it serves, else a new one."""
        if self._early is not None and self._early[0].serves(plan):
            worker = self._early[1]
            self._early = None
            reason = worker.ready()
            if reason is None:
                logger.debug(
                    "hook runner: warm (worker %d, %s, started ahead)",
                    worker.process.pid,
                    plan.backend,
                )
                return worker, ""
        self._kill_early()
        return plan.start()

    def _kill_early(self) -> None:
        if self._early is not None:
            worker = self._early[1]
            self._early = None
            logger.debug(
                "hook runner: stopping the worker started ahead (%d): not the one needed",
                worker.process.pid,
            )
            worker.kill()

    def _retire(self, key: WorkerKey, worker: Worker) -> None:
        """Stop a worker that may not serve, keeping what its hooks imported."""
        worker.stop()
        notes = self._notes.get(key[0])
        if notes is not None:
            notes.learn(key[1], worker.imported)


class WarmHookRunner(SubprocessHookRunner):
    """A pyproject-hooks runner that hands hook commands to a warm worker.

    Where the worker cannot take a hook, it runs the plain way.
    """

    def __init__(
        self, runners: WarmHookRunners, backend: str, environ: Mapping[str, str], log: BuildLog
    ) -> None:
        super().__init__(environ, log)
        self.runners = runners
        self.backend = backend

    def run(
        self, cmd: Sequence[str], cwd: str | None, environ: Mapping[str, str]
    ) -> ProcessOutcome:
        outcome = self.runners.run(cmd, cwd, dict(environ), self.backend, self.log)
        return outcome if outcome is not None else super().run(cmd, cwd, environ)


def _plain_reason(environ: Mapping[str, str]) -> str | None:
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
        launched = launch(plan.python, plan.backend, plan.environ, plan.cwd, plan.warm_imports)
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


class WarmImports:
    """An environment's notes: per backend, the modules its hooks imported.

    A JSON object in the environment, ``{backend: [module, ...]}``, or
    ``{backend: false}`` once importing them ahead proved unsafe. Runs sharing
    the environment may write it at once: each replaces it whole, atomically,
    and a lost update only costs a module imported in the hook instead. It is
    written only under the environment's lock (``<env>.lock``, shared), never
    while another run holds it to make or replace the environment.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, object] | None = None

    def usable(self, backend: str) -> bool:
        return isinstance(self._read().get(backend), list)

    def learn(self, backend: str, modules: Mapping[str, None] | Sequence[str]) -> None:
        """Add ``modules`` to ``backend``'s list (unless it was refused)."""
        known = self._read().get(backend, [])
        if not isinstance(known, list):
            return
        merged = list(dict.fromkeys([*known, *modules]))
        if len(merged) > len(known):
            self._write(backend, merged)

    def refuse(self, backend: str, reason: str) -> None:
        logger.debug("hook runner: no longer importing ahead for %s (%s)", backend, reason)
        self._write(backend, False)

    def _read(self) -> dict[str, object]:
        if self._data is None:
            self._data = read_json_object(self.path)
        return self._data

    def _write(self, backend: str, value: object) -> None:
        from kiln.locks import FileLock

        environment = self.path.parent
        lock = FileLock(environment.with_name(f"{environment.name}.lock"))
        try:
            if not lock.acquire_shared(blocking=False):
                logger.debug("not keeping notes on warm imports: %s is being replaced", environment)
                return
            self._data = None  # merge with what other runs wrote meanwhile
            data = {**self._read(), backend: value}
            write_json(self.path, data, private=True)
            self._data = data
        except OSError as error:
            logger.debug("cannot keep notes on warm imports in %s: %s", self.path, error)
        finally:
            lock.release()


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
