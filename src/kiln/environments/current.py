"""The running interpreter as the build environment (``--no-isolation``)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from kiln.environments import BuildEnvironment
from kiln.errors import MissingRequirementsError
from kiln.process import BuildLog
from kiln.requirements import unmet_requirements

logger = logging.getLogger(__name__)


class CurrentEnvironment:
    """Hooks run with kiln's own interpreter; requirements are checked, never installed."""

    isolated = False
    # It does not last, or kiln keeps no notes in it.
    state_dir: Path | None = None

    def __init__(self, base_environ: Mapping[str, str], *, check_requirements: bool = True):
        self.python = Path(sys.executable)
        self._environ = dict(base_environ)
        self._check = check_requirements

    def satisfy(self, requirements: Sequence[str], log: BuildLog) -> BuildEnvironment:
        if not self._check or not requirements:
            return self
        unmet = unmet_requirements(requirements)
        if unmet:
            listing = "\n".join(f"  - {item}" for item in unmet)
            raise MissingRequirementsError(
                f"the build requirements are not met by {self.python} (--no-isolation):\n"
                f"{listing}\n"
                "install them, or pass -x/--skip-dependency-check to build anyway",
                [str(item) for item in unmet],
            )
        logger.debug("build requirements met: %s", ", ".join(requirements))
        return self

    def hook_environ(self) -> dict[str, str]:
        return dict(self._environ)


class CurrentInterpreterProvider:
    """Provides :class:`CurrentEnvironment`; there is nothing to create or remove."""

    location: Path | None = None

    def __init__(self, base_environ: Mapping[str, str], *, check_requirements: bool = True):
        self._environ = base_environ
        self._check = check_requirements

    @contextlib.contextmanager
    def open(self, log: BuildLog) -> Iterator[BuildEnvironment]:
        yield CurrentEnvironment(self._environ, check_requirements=self._check)
