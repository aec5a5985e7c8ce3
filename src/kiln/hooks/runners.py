"""Choosing how hook processes start: the plain way, or forked from a warm worker.

PEP 517 asks for a fresh process per hook. The plain runner starts a new
interpreter each time; the warm runner keeps one interpreter per build
environment with the backend already imported, and forks a child per hook.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

from kiln.environments import BuildEnvironment
from kiln.errors import UsageError
from kiln.headstart import HeadStart
from kiln.hooks.plain import SubprocessHookRunner, SubprocessRunner
from kiln.options import HOOK_RUNNER_CHOICES
from kiln.process import BuildLog
from kiln.project import BuildSystem


class HookRunners(Protocol):
    """Hands out the runner for each backend; owns whatever those runners start."""

    name: str

    def runner(
        self, environment: BuildEnvironment, build_system: BuildSystem, log: BuildLog
    ) -> SubprocessRunner:
        """The runner for hooks of ``build_system``'s backend in ``environment``."""

    def close(self) -> None:
        """Stop everything the runners started (warm workers)."""


class PlainHookRunners:
    """Every hook in a new interpreter."""

    name = "plain"

    def runner(
        self, environment: BuildEnvironment, build_system: BuildSystem, log: BuildLog
    ) -> SubprocessRunner:
        return SubprocessHookRunner(environment.hook_environ(), log)

    def close(self) -> None:
        pass


def fork_is_safe(explicit: bool) -> bool:
    """Whether forking a warm worker is safe here; macOS only when asked for by name."""
    if not hasattr(os, "fork") or sys.platform == "win32":
        return False
    # macOS system frameworks are not fork-safe once initialised; opt-in only.
    return explicit or sys.platform != "darwin"


def select_hook_runners(choice: str = "auto") -> HookRunners:
    """The runners for ``choice`` (the request's hook_runner: $KILN_HOOK_RUNNER was
    read at the edge, into the request)."""
    if choice not in HOOK_RUNNER_CHOICES:
        raise UsageError(
            f"unknown hook runner {choice!r}; choose one of {', '.join(HOOK_RUNNER_CHOICES)}"
        )
    if choice == "plain":
        return PlainHookRunners()
    if not fork_is_safe(explicit=choice == "warm"):
        if choice == "warm":
            raise UsageError("--hook-runner warm needs fork(), which this platform lacks")
        return PlainHookRunners()
    from kiln.hooks.warm import WarmHookRunners

    return WarmHookRunners()


@runtime_checkable
class TakesHeadStart(Protocol):
    """Runners that can take a worker started ahead: the warm ones. Not part of
    :class:`HookRunners`: other runners need not know there is such a thing."""

    def head_start(self, plans: Path, source: Path, started: HeadStart | None = None) -> None:
        """Take the worker ``started`` ahead, or start ahead now the one whose plan
        the last build of ``source`` kept in ``plans``; keep this run's plan there
        at close."""


def hand_head_start(
    runners: HookRunners, plans: Path, source: Path, started: HeadStart | None
) -> None:
    """Give ``runners`` the head start for builds of ``source`` (plans kept in
    ``plans``) if they take one; else the worker started ahead is discarded, as
    no hook of theirs takes a worker."""
    if isinstance(runners, TakesHeadStart):
        runners.head_start(plans, source, started)
    elif started is not None:
        started.discard()
