"""The head start, as the warm runners see it.

The command line (or, failing that, the library once it holds the project's
place) starts the worker the last build of this source kept a plan for
(:mod:`kiln.headstart`). A hook takes that worker only if the plan it would
start its own worker by is the same in every part but the directory; otherwise
the worker is killed unused. At close, the plan of this run's first worker in
an environment that lasts is kept for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from kiln.headstart import HeadStart, WorkerPlan, keep_plan, start
from kiln.hooks.warm.notes import WarmImports
from kiln.hooks.warm.worker import Worker, plain_reason

logger = logging.getLogger("kiln.hooks.warm")


class WorkerAhead:
    """The worker started ahead for builds of ``source``, by the plan kept in ``plans``."""

    def __init__(self, plans: Path, source: Path, started: HeadStart | None = None) -> None:
        """Take the worker ``started`` ahead by the plan kept in ``plans`` for
        ``source``, or start it now, before a hook asks for it."""
        self.plans = plans
        self.source = source
        self._early: tuple[WorkerPlan, Worker] | None = None
        self._first: WorkerPlan | None = None
        if started is None or (started.plans, started.source) != (plans, source):
            if started is not None:
                started.discard()
            started = start(plans, source)
        if started is None:
            return
        plan = started.plan
        if plan.generation is None or plain_reason(plan.environ):
            started.discard()
            return
        launched = started.take()
        if launched is not None:
            self._early = (plan, Worker(launched, plan.environ))

    def take(self, plan: WorkerPlan) -> Worker | None:
        """The worker started ahead, ready, if it serves ``plan``; else None, and the
        worker started ahead (if any) is stopped: no later plan wants it either."""
        if self._early is not None and self._early[0].serves(plan):
            worker = self._early[1]
            self._early = None
            if worker.ready() is None:
                logger.debug(
                    "hook runner: warm (worker %d, %s, started ahead)",
                    worker.process.pid,
                    plan.backend,
                )
                return worker
        self.kill()
        return None

    def started(self, plan: WorkerPlan) -> None:
        """A worker was started by ``plan``: the first in an environment that lasts
        is the one the next run starts ahead."""
        if self._first is None and plan.generation is not None:
            self._first = plan

    def kill(self) -> None:
        """Stop the worker started ahead, unless a hook took it."""
        if self._early is not None:
            worker = self._early[1]
            self._early = None
            logger.debug(
                "hook runner: stopping the worker started ahead (%d): not the one needed",
                worker.process.pid,
            )
            worker.kill()

    def keep(self, notes: Mapping[str, WarmImports]) -> None:
        """Keep this run's first plan for the next run (``notes``: per interpreter)."""
        plan = self._first
        if plan is None:
            return
        kept = notes.get(plan.python)
        if kept is not None:
            # As the next run will want it: with what this run's hooks imported, if usable.
            plan = plan.but(warm_imports=str(kept.path) if kept.usable(plan.backend) else None)
        try:
            keep_plan(self.plans, self.source, plan.to_json())
        except OSError as error:
            logger.debug("cannot keep the worker's plan in %s: %s", self.plans, error)
