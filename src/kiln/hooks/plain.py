"""The plain hook runner: one fresh interpreter per hook call."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Protocol

from kiln.process import BuildLog, ProcessOutcome, run_logged


class SubprocessRunner(Protocol):
    """Starts one hook process: pyproject-hooks' ``SubprocessRunner`` signature."""

    def __call__(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None: ...


class HookProcessError(subprocess.CalledProcessError):
    """A hook process exited with an error; ``tail`` holds its last output lines."""

    def __init__(self, returncode: int, cmd: Sequence[str], tail: Sequence[str]) -> None:
        super().__init__(returncode, list(cmd))
        self.tail = list(tail)


class PlainHookRunner:
    """The plain runner: pyproject-hooks' in-process script in a new interpreter per
    hook, output to the log."""

    def __init__(self, environ: Mapping[str, str], log: BuildLog) -> None:
        self.environ = dict(environ)
        self.log = log

    def __call__(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = {**self.environ, **(extra_environ or {})}
        outcome = self.run(cmd, cwd, environ)
        if outcome.returncode != 0:
            raise HookProcessError(outcome.returncode, cmd, outcome.tail)

    def run(
        self, cmd: Sequence[str], cwd: str | None, environ: Mapping[str, str]
    ) -> ProcessOutcome:
        """Run one hook process to completion; a faster runner overrides this."""
        return run_logged(cmd, cwd=cwd, log=self.log, env=environ)
