"""Choosing how hook processes start: the plain way, or forked from a warm worker.

PEP 517 asks for a fresh process per hook. A *runner* is the callable
pyproject-hooks calls to start one hook's process; a *runner pool* is the
per-build object that hands out a runner per backend and owns what they start.
The plain runner starts a new interpreter each time; the warm runner forks a
child per hook from a worker its pool keeps per build environment, with the
backend already imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

from kiln.environments import BuildEnvironment
from kiln.errors import UsageError
from kiln.headstart import HeadStart
from kiln.hooks.plain import PlainHookRunner, SubprocessRunner
from kiln.options import HOOK_RUNNER_CHOICES
from kiln.process import BuildLog
from kiln.project import BuildSystem


class RunnerPool(Protocol):
    """Hands out the runner for each backend; owns whatever those runners start.
    One per build, closed at its end."""

    name: str

    def runner(
        self, environment: BuildEnvironment, build_system: BuildSystem, log: BuildLog
    ) -> SubprocessRunner:
        """The runner for hooks of ``build_system``'s backend in ``environment``."""

    def close(self) -> None:
        """Stop everything the runners started (warm workers)."""


class PlainRunnerPool:
    """Every hook in a new interpreter: runners that keep nothing between hooks."""

    name = "plain"

    def runner(
        self, environment: BuildEnvironment, build_system: BuildSystem, log: BuildLog
    ) -> SubprocessRunner:
        return PlainHookRunner(environment.hook_environ(), log)

    def close(self) -> None:
        pass


def fork_is_safe(explicit: bool) -> bool:
    """Whether forking a warm worker is safe here; macOS only when asked for by name."""
    if not hasattr(os, "fork") or sys.platform == "win32":
        return False
    # macOS system frameworks are not fork-safe once initialised; opt-in only.
    return explicit or sys.platform != "darwin"


def select_runner_pool(choice: str = "auto") -> RunnerPool:
    """The runner pool for ``choice`` (the request's hook_runner: $KILN_HOOK_RUNNER was
    read at the edge, into the request)."""
    if choice not in HOOK_RUNNER_CHOICES:
        raise UsageError(
            f"unknown hook runner {choice!r}; choose one of {', '.join(HOOK_RUNNER_CHOICES)}"
        )
    if choice == "plain":
        return PlainRunnerPool()
    if not fork_is_safe(explicit=choice == "warm"):
        if choice == "warm":
            raise UsageError("--hook-runner warm needs fork(), which this platform lacks")
        return PlainRunnerPool()
    from kiln.hooks.warm import WarmRunnerPool

    return WarmRunnerPool()


# The names docs/api.md documents.
PlainHookRunners = PlainRunnerPool
select_hook_runners = select_runner_pool


@runtime_checkable
class TakesHeadStart(Protocol):
    """Runners that can take a worker started ahead: the warm ones. Not part of
    :class:`RunnerPool`: other runners need not know there is such a thing."""

    def head_start(self, plans: Path, source: Path, started: HeadStart | None = None) -> None:
        """Take the worker ``started`` ahead, or start ahead now the one whose plan
        the last build of ``source`` kept in ``plans``; keep this run's plan there
        at close."""


def hand_head_start(
    runners: RunnerPool, plans: Path, source: Path, started: HeadStart | None
) -> None:
    """Give ``runners`` the head start for builds of ``source`` (plans kept in
    ``plans``) if they take one; else the worker started ahead is discarded, as
    no hook of theirs takes a worker."""
    if isinstance(runners, TakesHeadStart):
        runners.head_start(plans, source, started)
    elif started is not None:
        started.discard()
