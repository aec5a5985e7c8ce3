"""Calling a project's build backend (PEP 517 and PEP 660 hooks).

:class:`Backend` wraps pyproject-hooks' caller and turns what can go wrong into
kiln's errors. How a hook process is started is the runner's business: the
runner has pyproject-hooks' signature, so a faster runner drops in here.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kiln.environments import BuildEnvironment
from kiln.errors import (
    DISK_FULL_WORDS,
    BackendUnavailableError,
    HookFailedError,
    HookUnsupportedError,
    disk_full_error,
)
from kiln.hooks.plain import HookProcessError, PlainHookRunner, SubprocessRunner
from kiln.process import BuildLog
from kiln.project import Project

logger = logging.getLogger(__name__)

ConfigSettings = Mapping[str, Any]
T = TypeVar("T")


class Backend:
    """One project's build backend, running in one build environment."""

    def __init__(
        self,
        project: Project,
        environment: BuildEnvironment,
        log: BuildLog,
        *,
        handoff_root: Path,
        record_path: Path | None = None,
        runner: SubprocessRunner | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        from kiln.hooks.caller import KilnHookCaller

        self.project = project
        self.log = log
        # Seconds per hook name, added to as hooks run (the build's timings).
        self.timings = timings if timings is not None else {}
        build_system = project.build_system
        environ = environment.hook_environ()
        self._caller = KilnHookCaller(
            str(project.source_dir),
            build_system.build_backend,
            build_system.backend_path,
            runner=runner or PlainHookRunner(environ, log),
            python_executable=str(environment.python),
            handoff_root=handoff_root,
            environ=environ,
            record_path=record_path,
        )

    @property
    def name(self) -> str:
        return self.project.build_system.build_backend

    def get_requires(self, distribution: str, config_settings: ConfigSettings) -> list[str]:
        """The backend's dynamic requirements for building ``distribution``."""
        hook = getattr(self._caller, f"get_requires_for_build_{distribution}")
        requires: list[str] = self._call(
            f"get_requires_for_build_{distribution}", lambda: hook(config_settings)
        )
        return list(requires)

    def build(
        self,
        distribution: str,
        output_dir: Path,
        config_settings: ConfigSettings,
        metadata_directory: Path | None = None,
    ) -> str:
        """Build ``distribution`` into ``output_dir``; return the file name the hook gave."""
        hook_name = f"build_{distribution}"
        hook = getattr(self._caller, hook_name)
        if distribution == "sdist":
            return str(
                self._call(hook_name, lambda: hook(str(output_dir), config_settings), output_dir)
            )
        metadata = str(metadata_directory) if metadata_directory else None
        return str(
            self._call(
                hook_name, lambda: hook(str(output_dir), config_settings, metadata), output_dir
            )
        )

    def prepare_metadata(
        self, distribution: str, output_dir: Path, config_settings: ConfigSettings
    ) -> str:
        """Write a ``.dist-info`` directory into ``output_dir`` and return its name.

        Backends without ``prepare_metadata_for_build_*`` get pyproject-hooks'
        fallback: a full build whose wheel the metadata is taken from.
        """
        hook_name = f"prepare_metadata_for_build_{distribution}"
        hook = getattr(self._caller, hook_name)
        return str(
            self._call(
                hook_name,
                lambda: hook(str(output_dir), config_settings, _allow_fallback=True),
                output_dir,
            )
        )

    def _call(self, hook_name: str, call: Callable[[], T], output_dir: Path | None = None) -> T:
        from pyproject_hooks import BackendUnavailable, HookMissing, UnsupportedOperation

        from kiln.hooks.caller import HookResultMissingError

        self.log.section(f"hook {hook_name} (backend {self.name}) in {self.project.source_dir}")
        logger.debug("calling %s of %s", hook_name, self.name)
        started = time.monotonic()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    result = call()
                finally:
                    self.timings[hook_name] = (
                        self.timings.get(hook_name, 0.0) + time.monotonic() - started
                    )
        except HookProcessError as error:
            if any(word in line for line in error.tail for word in DISK_FULL_WORDS):
                # The hook's own error says the disk is full: name the fullest place
                # it writes to (its tree, the output, its TMPDIR).
                places = [self.project.source_dir, *([output_dir] if output_dir else [])]
                if self._caller.environ.get("TMPDIR"):
                    places.append(Path(self._caller.environ["TMPDIR"]))
                raise disk_full_error(
                    None, places, hook=hook_name, output_tail=error.tail
                ) from None
            raise HookFailedError(
                f"the build backend's {hook_name} hook failed "
                f"({_exit_description(error.returncode)})",
                hook=hook_name,
                log_path=self.log.path,
                output_tail=error.tail,
            ) from None
        except HookResultMissingError as error:
            raise HookFailedError(
                f"the build backend's {hook_name} hook exited with status 0 but "
                f"{error.detail}: the backend ended the hook's process early "
                "(os._exit() or sys.exit(0) inside the hook?)",
                hook=hook_name,
                log_path=self.log.path,
            ) from None
        except BackendUnavailable as error:
            detail = (error.traceback or "").strip().splitlines()
            raise BackendUnavailableError(
                f"the build backend {self.name!r} could not be imported"
                + (f" ({detail[-1]})" if detail else "")
                + "; check build-system.build-backend and build-system.requires "
                f"in {self.project.source_dir / 'pyproject.toml'}"
            ) from None
        except HookMissing as error:
            raise HookUnsupportedError(_missing_hook_message(self.name, str(error))) from None
        except UnsupportedOperation:
            raise HookUnsupportedError(
                f"the build backend {self.name!r} cannot run {hook_name} for this project"
            ) from None
        for warning in caught:
            logger.warning("%s", warning.message)
        return result


def _missing_hook_message(backend: str, hook: str) -> str:
    if hook.endswith("_editable"):
        return (
            f"the build backend {backend!r} does not support editable builds "
            f"(PEP 660): it has no {hook} hook"
        )
    return f"the build backend {backend!r} has no {hook} hook"


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
