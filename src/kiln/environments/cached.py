"""Reusable build environments, kept in the cache and keyed by what they hold.

The same interpreter, platform, installer, requirements and constraints give
the same key, and so the same, stable path: ``<cache>/envs-v1/<key>/``. An
environment is reused only when it is complete, unexpired and unchanged since
it was made. Each environment has a lock file beside it: builds using it hold
it shared, the one run creating or replacing it holds it exclusively.

Environments are made in place rather than in scratch and renamed: installers
write absolute paths into them (script shebangs), so a renamed environment
would be subtly broken. Completeness is marked instead by a record written
last, atomically; a crash mid-creation leaves no record, and the next run
rebuilds. An environment being replaced is first renamed out of the way (a
process still writing into it then writes into the discarded copy), then
removed.

A cached environment is shared by every build with the same key, whatever the
project: its record's fingerprint covers every file in it, bytecode included,
so that what one build writes into it (a backend installing something, a hook
writing a ``.pyc``) makes it unfit for the next instead of running there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.environments import BuildEnvironment
from kiln.environments.virtual import (
    VirtualEnvironment,
    create_virtualenv,
    describe_python,
    interpreter_path,
)
from kiln.errors import EnvironmentSetupError
from kiln.fingerprint import LAST_USED_NAME, RECORD_NAME, checksum, fingerprint
from kiln.installers import Installer
from kiln.layout import lock_beside
from kiln.locks import FileLock
from kiln.process import BuildLog
from kiln.records import EnvRecord

if TYPE_CHECKING:
    from kiln.interpreters import Interpreter

logger = logging.getLogger(__name__)

DEFAULT_TTL = 24 * 3600
# An environment being replaced is renamed to this prefix and its name, then removed.
TRASH_PREFIX = ".discarded-"


@dataclass(frozen=True)
class EnvironmentKey:
    """Everything that decides what an environment holds."""

    python: str
    python_version: str
    platform: str
    installer: str
    requirements: tuple[str, ...]
    # A checksum of the content of each constraints file, and of each file they include.
    constraints: tuple[str, ...]
    # Each local file or directory a requirement or constraints line names, with a
    # checksum of its content (see kiln.constraints.local_input).
    local: tuple[str, ...] = ()

    @classmethod
    def for_requirements(
        cls,
        requirements: Sequence[str],
        installer: str,
        constraints: Sequence[Path],
        interpreter: Interpreter | None = None,
    ) -> EnvironmentKey:
        """The key for these contents, made from ``interpreter`` (default: the one
        running kiln; the same interpreter named by --python gives the same key)."""
        from packaging.requirements import Requirement

        from kiln.constraints import constraint_inputs, local_input, local_target

        normalized = sorted({str(Requirement(r)) for r in requirements})
        files, local = constraint_inputs(constraints) if constraints else ([], [])
        local += [t for r in normalized if (t := local_target(r)) is not None]
        if interpreter is not None:
            python, version, platform = (
                str(interpreter.path),
                interpreter.sys_version,
                interpreter.platform,
            )
        else:
            # The interpreter environments are made from, whichever link or venv ran kiln.
            python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
            version, platform = sys.version, sysconfig.get_platform()
        return cls(
            python=python,
            python_version=version,
            platform=platform,
            installer=installer,
            requirements=tuple(normalized),
            constraints=tuple(checksum(data) for data in files),
            local=tuple(f"{t}\0{checksum(local_input(t))}" for t in sorted(set(local))),
        )

    @property
    def digest(self) -> str:
        return checksum(json.dumps(asdict(self), sort_keys=True).encode())

    @property
    def pinned(self) -> bool:
        """Every requirement names one exact version, so re-resolving cannot change it."""
        from packaging.requirements import Requirement

        for text in self.requirements:
            requirement = Requirement(text)
            specifiers = list(requirement.specifier)
            if requirement.url or len(specifiers) != 1:
                return False
            if specifiers[0].operator not in ("==", "===") or "*" in specifiers[0].version:
                return False
        return True


class CachedEnvironment(VirtualEnvironment):
    """A cached environment: requirements beyond its key go to another cached one."""

    def __init__(self, path: Path, provider: CachedEnvProvider, key: EnvironmentKey) -> None:
        super().__init__(
            path,
            installer=provider.installer,
            constraints=provider.constraints,
            base_environ=provider.base_environ,
            interpreter=provider.interpreter,
        )
        self.provider = provider
        self.key = key
        # It lasts: the warm runners keep notes in it (kiln.hooks.warm).
        self.state_dir = path

    def satisfy(self, requirements: Sequence[str], log: BuildLog) -> BuildEnvironment:
        from kiln.environments.virtual import site_packages
        from kiln.requirements import unmet_requirements

        if not requirements or self._promised(requirements):
            return self  # the common case, decided without reading any metadata
        if not unmet_requirements(
            requirements, site_packages(self.path, self.interpreter), self.marker_environment
        ):
            return self
        # Installing here would change what the key promises: use the environment
        # for the full requirement set instead (made, or reused, like this one).
        return self.provider.environment_for((*self.key.requirements, *requirements), log)

    def _promised(self, requirements: Sequence[str]) -> bool:
        """Whether the key already names every one of ``requirements``."""
        if set(requirements) <= set(self.key.requirements):
            return True
        from packaging.requirements import Requirement

        return {str(Requirement(r)) for r in requirements} <= set(self.key.requirements)


class CachedEnvProvider:
    """Reusable environments under ``<cache>/envs-v1``, for the duration of one build."""

    def __init__(
        self,
        root: Path,
        requirements: Sequence[str],
        *,
        installer: Installer,
        constraints: Sequence[Path],
        base_environ: Mapping[str, str],
        refresh: bool = False,
        ttl: float | None = None,
        interpreter: Interpreter | None = None,
    ) -> None:
        self.root = root
        # None: the running interpreter.
        self.interpreter = interpreter
        self.requirements = tuple(requirements)
        self.installer = installer
        self.constraints = tuple(constraints)
        self.base_environ = dict(base_environ)
        self.refresh = refresh
        # The request's env_ttl ($KILN_ENV_TTL, read at the edge), else a day.
        self.ttl = DEFAULT_TTL if ttl is None else ttl
        self._open: dict[str, tuple[CachedEnvironment, FileLock, str]] = {}
        self._refreshed: set[str] = set()
        self.location: Path | None = None

    @contextlib.contextmanager
    def open(self, log: BuildLog) -> Iterator[BuildEnvironment]:
        try:
            yield self.environment_for(self.requirements, log)
        finally:
            self._close_all(log)

    def environment_for(self, requirements: Sequence[str], log: BuildLog) -> CachedEnvironment:
        """The cached environment holding exactly ``requirements``, made if need be."""
        key = EnvironmentKey.for_requirements(
            requirements, self.installer.name, self.constraints, self.interpreter
        )
        if key.digest in self._open:
            environment = self._open[key.digest][0]
        else:
            environment = self._acquire(key, log)
        self.location = environment.path
        return environment

    def _acquire(self, key: EnvironmentKey, log: BuildLog) -> CachedEnvironment:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / key.digest
        lock = FileLock(lock_beside(path))
        if not lock.acquire_shared(blocking=False):
            logger.info("Waiting for the kiln run that is making the build environment %s", path)
            lock.acquire_shared()
        refresh = self.refresh and key.digest not in self._refreshed
        problem = "refresh requested" if refresh else self._unfit(path, key)
        if problem is not None:
            if not lock.acquire_exclusive(blocking=False):
                logger.info("Waiting for other kiln runs using the build environment %s", path)
                lock.acquire_exclusive()
            # Another run may have rebuilt it while this one waited.
            problem = "refresh requested" if refresh else self._unfit(path, key)
            if problem is not None:
                try:
                    self._create(path, key, problem, log)
                except BaseException:
                    lock.release()  # else held until the process ends: nobody could prune it
                    raise
                self._refreshed.add(key.digest)
            lock.acquire_shared()  # downgrade: others may use it alongside
        else:
            logger.info("Reusing build environment %s", path)
            log.section(f"reusing build environment at {path}")
        (path / LAST_USED_NAME).touch(mode=0o600)
        record = _read_record(path)
        environment = CachedEnvironment(path, self, key)
        self._open[key.digest] = (environment, lock, record.fingerprint if record else "")
        return environment

    def _unfit(self, path: Path, key: EnvironmentKey) -> str | None:
        """Why the environment at ``path`` cannot be reused, or None if it can."""
        record = _read_record(path)
        if record is None:
            if (path / RECORD_NAME).exists():
                return "its record is damaged or from another version of kiln"
            return "half made (no record)" if path.exists() else "not made yet"
        if record.unfit:
            return record.unfit
        # Compared as JSON, the form the record was stored in.
        if record.key != json.loads(json.dumps(asdict(key))):
            return "made for a different key"
        if not interpreter_path(path).exists():
            return "its interpreter is gone"
        age = time.time() - record.created
        if age < 0:
            # The clock went back, or the record was forged: its age means nothing.
            return "its record is dated in the future"
        if not key.pinned and age > self.ttl:
            return f"resolved more than {self.ttl:.0f} s ago from unpinned requirements"
        if fingerprint(path) != record.fingerprint:
            return "its files changed since it was made"
        return None

    def _create(self, path: Path, key: EnvironmentKey, reason: str, log: BuildLog) -> None:
        if path.exists():
            logger.info("Replacing build environment %s: %s", path, reason)
            log.section(f"replacing build environment at {path}: {reason}")
            _discard(path)
        logger.info(
            "Creating build environment %s (%s, %s)",
            path,
            self.installer.name,
            describe_python(self.interpreter),
        )
        log.section(f"creating build environment at {path}")
        create_virtualenv(path, self.interpreter)
        if key.requirements:
            # Reused by many builds: compile bytecode once, now, not on every import.
            VirtualEnvironment(
                path,
                installer=self.installer,
                constraints=self.constraints,
                base_environ=self.base_environ,
                compile_bytecode=True,
                interpreter=self.interpreter,
            ).satisfy(key.requirements, log)
        record = EnvRecord(key=asdict(key), created=time.time(), fingerprint=fingerprint(path))
        record.write(path / RECORD_NAME)  # last: complete

    def _close_all(self, log: BuildLog) -> None:
        for environment, lock, recorded in self._open.values():
            if recorded and fingerprint(environment.path) != recorded:
                # The build changed its environment (some backends install things):
                # no later build may trust it.
                message = f"build changed environment {environment.path}; it will be rebuilt"
                logger.info("The %s", message)
                log.section(f"the {message} next time")
                _mark_unfit(environment.path, "a build changed its files")
            lock.release()
        self._open.clear()


def _discard(path: Path) -> None:
    """Remove the environment at ``path``, leaving the path free at once.

    Renamed first: whatever still writes into it (a process that outlived its run)
    then writes into the discarded copy, and cannot make removing it fail or leave
    files in the new environment. What cannot be removed now is pruned later.
    """
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return
    except OSError as error:
        raise EnvironmentSetupError(
            f"cannot replace the build environment {path}: {error.strerror or error}; "
            "remove it (kiln cache clean) and build again"
        ) from error
    shutil.rmtree(trash, ignore_errors=True)


def _mark_unfit(path: Path, reason: str) -> None:
    """Record why no later build may reuse the environment (atomically)."""
    record = _read_record(path)
    if record is None:
        return  # no record: rebuilt anyway
    record.unfit = reason
    with contextlib.suppress(OSError):
        record.write(path / RECORD_NAME)


def _read_record(path: Path) -> EnvRecord | None:
    return EnvRecord.read(path / RECORD_NAME)


# Environments unused this long are pruned; beyond this many, the least recently used go.
ENV_MAX_AGE = 14 * 24 * 3600
KEPT_ENVS = 20
# A half-made environment nobody is working on is a crashed run's; give it an hour.
HALF_MADE_GRACE = 3600


def prune_environments(
    root: Path,
    *,
    max_age: float = ENV_MAX_AGE,
    keep: int = KEPT_ENVS,
    half_made_grace: float = HALF_MADE_GRACE,
    before_removal: Callable[[Path], object] = lambda path: None,
) -> list[Path]:
    """Remove environments unused for ``max_age`` or beyond the ``keep`` most
    recently used, and half-made ones; never one a live process holds. Lock
    files stay: removing one could let two runs each believe they hold it."""
    if not root.is_dir():
        return []
    now = time.time()
    environments = []
    for path in root.iterdir():
        if path.name.startswith(TRASH_PREFIX):
            # Discarded when replaced; what its remover could not remove then.
            before_removal(path)
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir():
            environments.append(path)

    def last_used(path: Path) -> float:
        for marker in (path / LAST_USED_NAME, path):
            with contextlib.suppress(OSError):
                return marker.stat().st_mtime
        return 0.0

    environments.sort(key=last_used, reverse=True)
    removed = []
    for rank, path in enumerate(environments):
        complete = (path / RECORD_NAME).is_file()
        if complete and rank < keep and now - last_used(path) < max_age:
            continue
        if not complete and now - last_used(path) < half_made_grace:
            continue
        lock = FileLock(lock_beside(path))
        try:
            if not lock.acquire_exclusive(blocking=False):
                continue  # in use
            before_removal(path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            lock.release()
    return removed
