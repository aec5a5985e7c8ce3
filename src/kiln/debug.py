"""Opening a failed build: where it was kept, and what the failing hook was.

The CLI's ``kiln debug`` uses this to start a shell in the failed hook's
directory with its environment variables, and to show the one command that
runs the hook again.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from kiln.cache import Cache
from kiln.environments.envdir import RUN_DIR_NAME
from kiln.errors import UsageError
from kiln.layout import BUILD_LOG, FAILED_RECORD, HOOK_RECORD
from kiln.records import FailedRun, HookCall
from kiln.trust import entry_problem


@dataclass(frozen=True)
class FailedBuild:
    """A kept failed run, with the hook that failed when there was one."""

    run_dir: Path
    reason: str
    source: str
    environment: Path | None
    log: Path
    when: float
    hook: HookCall | None

    @property
    def cwd(self) -> Path:
        """Where the failed hook ran; else the source (or the run dir)."""
        if self.hook is not None:
            return Path(self.hook.cwd)
        source = Path(self.source)
        return source if source.is_dir() else self.run_dir

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """The failed hook's environment variables; else ``base`` in the build env."""
        if self.hook is not None:
            return dict(self.hook.environ)
        environ = dict(base)
        if self.environment is not None:
            environ["VIRTUAL_ENV"] = str(self.environment)
            bin_dir = self.environment / ("Scripts" if os.name == "nt" else "bin")
            environ["PATH"] = os.pathsep.join([str(bin_dir), environ.get("PATH", "")])
        return environ

    def rerun_command(self) -> str | None:
        """A shell command that runs the failed hook again, outside kiln."""
        if self.hook is None:
            return None
        return rerun_command(self.hook, self.run_dir / "debug-output")


def find_failed_build(
    cache: Cache | None, env_dir: Path | None = None, name: str | None = None
) -> FailedBuild:
    """The failed build kept in ``env_dir``, else the newest one in ``cache``
    (of the package ``name``, when given: a wheelhouse run keeps one per package)."""
    if env_dir is not None:
        run_dir = Path(os.path.realpath(env_dir)) / RUN_DIR_NAME
        if not (run_dir / FAILED_RECORD).is_file():
            raise UsageError(f"no failed build is kept in --env-dir {env_dir}")
        return load_failed_build(
            run_dir, where=f"--env-dir {env_dir}", otherwise="choose another --env-dir"
        )
    runs = cache.failed_runs() if cache is not None else []
    if name is not None:
        runs = [run for run in runs if _built_package(run) == _canonical(name)]
        if not runs:
            raise UsageError(f"no failed build of {name} is kept in the cache; nothing to debug")
    if not runs:
        raise UsageError("no failed build is kept in the cache; nothing to debug")
    return load_failed_build(runs[0])


def _built_package(run_dir: Path) -> str | None:
    """The canonical name of the package a kept run built, from its source's name
    (``six-1.17.0.tar.gz``, a patched ``flit-core-3.9.0-<key>`` directory, ``proj/``)."""
    import re

    record = FailedRun.read(run_dir / FAILED_RECORD)
    if record is None:
        return None
    base = Path(record.source).name
    versioned = re.match(r"(.+?)-\d", base)
    return _canonical(versioned[1] if versioned else base)


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def load_failed_build(
    run_dir: Path, *, where: str = "kiln's cache", otherwise: str | None = None
) -> FailedBuild:
    """The failed build kept in ``run_dir``; UsageError if its records cannot be read,
    or may not be trusted: kiln debug starts a shell with the variables they hold.
    ``where`` and ``otherwise``: the place, and the way out, for that message."""
    for path, directory in (
        (run_dir, True),
        (run_dir / FAILED_RECORD, False),
        (run_dir / HOOK_RECORD, False),
    ):
        problem = entry_problem(path, directory=directory, where=where, otherwise=otherwise)
        if problem is not None:
            raise UsageError(problem)
    record = FailedRun.read(run_dir / FAILED_RECORD)
    if record is None:
        raise UsageError(
            f"cannot read the failed build record {run_dir / FAILED_RECORD}: it is missing, "
            "damaged or from another version of kiln; remove the run (kiln cache clean)"
        )
    # Without the hook's record (none, or damaged) the shell opens in the source.
    hook = HookCall.read(run_dir / HOOK_RECORD)
    return FailedBuild(
        run_dir=run_dir,
        reason=record.reason,
        source=record.source,
        environment=Path(record.environment) if record.environment else None,
        log=run_dir / BUILD_LOG,
        when=record.time,
        hook=hook,
    )


def rerun_command(hook: HookCall, output_dir: Path) -> str:
    """``python -c '...'``: import the backend as the hook process did and call the hook."""
    module, _, attribute = hook.backend.partition(":")
    name = hook.hook
    kwargs: dict[str, object] = dict(hook.kwargs)
    # The hook wrote into a staging directory that no longer exists.
    if name.startswith("prepare_metadata_for_build"):
        kwargs["metadata_directory"] = str(output_dir)
    else:
        for key in ("wheel_directory", "sdist_directory"):
            if key in kwargs:
                kwargs[key] = str(output_dir)
        if "metadata_directory" in kwargs:
            kwargs["metadata_directory"] = None
    kwargs.pop("_allow_fallback", None)
    lines = [
        "import functools, importlib, os, sys",
        f"sys.path[:0] = {[str(Path(hook.cwd) / p) for p in hook.backend_path]!r}",
        f"backend = importlib.import_module({module!r})",
    ]
    if attribute:
        lines.append(f"backend = functools.reduce(getattr, {attribute.split('.')!r}, backend)")
    lines.append(f"os.makedirs({str(output_dir)!r}, exist_ok=True)")
    arguments = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    lines.append(f"print(backend.{name}({arguments}))")
    return f"{shlex.quote(hook.python)} -c {shlex.quote('; '.join(lines))}"


def local_timestamp(when: float) -> str:
    """``when`` (seconds since the epoch) as local time, e.g. ``2026-01-31 14:05:09``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
