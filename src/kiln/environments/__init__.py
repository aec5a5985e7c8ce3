"""Build environments: where hooks run and build requirements are installed.

A provider decides where an environment lives and what happens to it after the
build; the environment itself knows its interpreter, how to satisfy
requirements, and which variables its hooks see.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from kiln.process import BuildLog


class BuildEnvironment(Protocol):
    """An interpreter that can run backend hooks with the requirements they need."""

    @property
    def python(self) -> Path:
        """The interpreter that runs the hooks."""

    @property
    def isolated(self) -> bool:
        """Whether this environment is separate from the interpreter running kiln."""

    def satisfy(self, requirements: Sequence[str], log: BuildLog) -> BuildEnvironment:
        """Make sure ``requirements`` are met; return the environment that meets them.

        That is this environment, with anything missing installed where kiln may,
        or (for cached environments, which never change) another one holding the
        full set. Raises InstallerError when installing fails and
        MissingRequirementsError when requirements are unmet where kiln may not
        install.
        """

    def hook_environ(self) -> dict[str, str]:
        """The complete set of environment variables for a hook process."""

    @property
    def state_dir(self) -> Path | None:
        """This environment's own directory, lasting from run to run, where a hook
        runner may keep notes for later runs in it (the warm runners keep what
        hooks import). It holds the environment's record (:mod:`kiln.fingerprint`),
        whose generation names its contents as made. None: it does not last."""


class EnvironmentProvider(Protocol):
    """Hands out a build environment for the duration of one build."""

    # Where the environment lives on disk, if it is kiln's (None: the running Python).
    location: Path | None

    def open(self, log: BuildLog) -> AbstractContextManager[BuildEnvironment]:
        """Create or reuse an environment; clean up after it as this provider does."""
