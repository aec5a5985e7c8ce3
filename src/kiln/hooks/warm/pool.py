"""The warm runners: hand out a runner per backend, own one worker per
interpreter and backend, and fall back to the plain way per hook.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln.environments import BuildEnvironment
from kiln.fingerprint import generation
from kiln.headstart import HeadStart, WorkerPlan
from kiln.hooks.plain import PlainHookRunner, SubprocessRunner
from kiln.hooks.warm.ahead import WorkerAhead
from kiln.hooks.warm.notes import WARM_IMPORTS_NAME, WarmImports
from kiln.hooks.warm.worker import Worker, plain_reason, start_worker
from kiln.process import BuildLog, ProcessOutcome
from kiln.project import BuildSystem

logger = logging.getLogger("kiln.hooks.warm")

WorkerKey = tuple[str, str]  # (interpreter, build-backend)


class WarmRunnerPool:
    """Hands out warm runners; owns one worker per interpreter and backend."""

    name = "warm"

    def __init__(self) -> None:
        self._workers: dict[WorkerKey, Worker] = {}
        # Why a worker could not serve (interpreter, backend): its hooks run plain.
        self._cold: dict[WorkerKey, str] = {}
        # Notes on what hooks import, per interpreter of an environment that keeps them.
        self._notes: dict[str, WarmImports] = {}
        self._generations: dict[str, str | None] = {}
        self._ahead: WorkerAhead | None = None

    def head_start(self, plans: Path, source: Path, started: HeadStart | None = None) -> None:
        """Take the worker ``started`` ahead by the plan kept in ``plans`` for
        ``source``, or start it now, before a hook asks for it; at close, keep the
        plan of this run's first worker there (see :mod:`kiln.hooks.warm.ahead`)."""
        if self._ahead is not None:
            self._ahead.kill()
        self._ahead = WorkerAhead(plans, source, started)

    def runner(
        self, environment: BuildEnvironment, build_system: BuildSystem, log: BuildLog
    ) -> SubprocessRunner:
        environ = environment.hook_environ()
        if build_system.backend_path:
            logger.debug("hook runner: plain (backend-path)")
            return PlainHookRunner(environ, log)
        python = str(environment.python)
        state_dir = environment.state_dir
        if state_dir is not None and python not in self._notes:
            self._notes[python] = WarmImports(state_dir / WARM_IMPORTS_NAME)
        # Read now, while this run holds the environment: it is not replaced meanwhile.
        self._generations[python] = generation(str(state_dir)) if state_dir else None
        return WarmHookRunner(self, build_system.build_backend, environ, log)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.kill()
        workers, self._workers = list(self._workers.items()), {}
        for key, worker in workers:
            self._retire(key, worker)
        if self._ahead is not None:
            self._ahead.keep(self._notes)

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
        reason = self._cold.get(key) or plain_reason(environ)
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
        if self._ahead is not None:
            self._ahead.started(plan)
        return worker

    def _start(self, plan: WorkerPlan) -> tuple[Worker | None, str]:
        """A ready worker for ``plan``: the one started ahead if it serves, else a new one."""
        worker = self._ahead.take(plan) if self._ahead is not None else None
        return (worker, "") if worker is not None else start_worker(plan)

    def _retire(self, key: WorkerKey, worker: Worker) -> None:
        """Stop a worker that may not serve, keeping what its hooks imported."""
        worker.stop()
        notes = self._notes.get(key[0])
        if notes is not None:
            notes.learn(key[1], worker.imported)


class WarmHookRunner(PlainHookRunner):
    """A pyproject-hooks runner that hands hook commands to a warm worker.

    Where the worker cannot take a hook, it runs the plain way.
    """

    def __init__(
        self, runners: WarmRunnerPool, backend: str, environ: Mapping[str, str], log: BuildLog
    ) -> None:
        super().__init__(environ, log)
        self.runners = runners
        self.backend = backend

    def run(
        self, cmd: Sequence[str], cwd: str | None, environ: Mapping[str, str]
    ) -> ProcessOutcome:
        outcome = self.runners.run(cmd, cwd, dict(environ), self.backend, self.log)
        return outcome if outcome is not None else super().run(cmd, cwd, environ)
