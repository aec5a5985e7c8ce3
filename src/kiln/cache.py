"""kiln's cache directory: where it resolves to, and its named buckets.

Everything kiln writes outside the output directory lives here, so a user who
can write to one place (a CI cache, a container's one writable volume) can
run kiln. Each bucket carries a layout version in its name, so a later kiln
can change a bucket's layout without misreading an older one.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import UsageError, disk_full_error, is_disk_full
from kiln.layout import CACHE_DIR_ENV, LOGS, PROJECTS, RUNS, resolve_cache_dir

# Written into CACHEDIR.TAG; backup tools skip directories holding it
# (https://bford.info/cachedir/).
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by kiln.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)

# Logs kept from earlier runs; older ones are removed when a run starts.
KEPT_LOGS = 50
# Failed runs kept for `kiln debug`: the newest few, and none older than a week.
KEPT_FAILED_RUNS = 5
FAILED_RUN_MAX_AGE = 7 * 24 * 3600
# A run directory nobody holds, not marked failed, is a crashed run's leftovers;
# a day's grace covers clocks and slow machines.
STALE_RUN_AGE = 24 * 3600
# Names from the run directory layout (see kiln.workspace), needed here to prune.
_RUN_LOCK = ".lock"
_RUN_FAILED = "failed.json"


@dataclass(frozen=True)
class Cache:
    """An existing, tagged cache directory."""

    root: Path

    @classmethod
    def open(cls, explicit: Path | None = None) -> Cache:
        root = resolve_cache_dir(explicit)
        try:
            root.mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(CACHEDIR_TAG, encoding="utf-8")
            # An existing directory on a read-only mount passes the lines above.
            if not os.access(root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EROFS, "not writable")
        except OSError as error:
            if is_disk_full(error):
                raise disk_full_error(error, [root]) from error
            raise UsageError(
                f"cannot use cache directory {root}: {error.strerror or error}; "
                f"choose another with --cache-dir or {CACHE_DIR_ENV}, or build with --env-dir"
            ) from error
        return cls(root)

    def bucket(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prune_logs(self, keep: int = KEPT_LOGS) -> None:
        """Remove all but the newest ``keep`` logs."""
        logs = sorted(self.bucket(LOGS).glob("*.log"), key=_modified, reverse=True)
        for old in logs[keep:]:
            old.unlink(missing_ok=True)

    def failed_runs(self) -> list[Path]:
        """Kept failed runs, newest first."""
        runs = self.root / RUNS
        if not runs.is_dir():
            return []
        failed = [run for run in runs.iterdir() if (run / _RUN_FAILED).is_file()]
        return sorted(failed, key=_modified, reverse=True)

    def prune(
        self,
        *,
        keep_running: Path | None = None,
        stale_after: float = STALE_RUN_AGE,
        keep_failed: int = KEPT_FAILED_RUNS,
        failed_max_age: float = FAILED_RUN_MAX_AGE,
    ) -> PruneReport:
        """Remove crashed runs' leftovers, old failed runs and old logs.

        A run directory whose lock a live process holds is never touched.
        """
        from kiln.locks import is_locked

        report = PruneReport()
        now = time.time()
        runs = self.root / RUNS
        failed = self.failed_runs()
        # A record that could not be written (a full disk) keeps nothing: that run's
        # files may be what filled the disk, and `kiln debug` cannot open it anyway.
        readable = [run for run in failed if _readable_record(run / _RUN_FAILED)]
        failed_kept = {
            run for run in readable[:keep_failed] if now - _modified(run) < failed_max_age
        }
        for run in sorted(runs.iterdir()) if runs.is_dir() else []:
            if run == keep_running or run in failed_kept:
                continue
            is_failed = run in failed
            if not is_failed and now - _modified(run) < stale_after:
                continue  # probably a run that has only just started
            if is_locked(run / _RUN_LOCK):
                continue
            report.freed += _size(run)
            shutil.rmtree(run, ignore_errors=True)
            (report.failed_runs if is_failed else report.stale_runs).append(run)
        from kiln.environments.cached import ENVS, prune_environments

        def count(path: Path) -> None:
            report.freed += _size(path)

        report.environments = prune_environments(self.root / ENVS, before_removal=count)
        before = set(self.bucket(LOGS).glob("*.log"))
        self.prune_logs()
        report.logs = len(before - set(self.bucket(LOGS).glob("*.log")))
        return report

    def sizes(self) -> dict[str, int]:
        """Bytes used by each bucket."""
        return {entry.name: _size(entry) for entry in sorted(self.root.iterdir()) if entry.is_dir()}

    def clean(self) -> list[Path]:
        """Remove everything but what live kiln runs are using; returns what stayed."""
        from kiln.environments.cached import ENVS, prune_environments
        from kiln.locks import is_locked

        kept: list[Path] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name == "CACHEDIR.TAG":
                continue
            if entry.name == ENVS and entry.is_dir():
                prune_environments(entry, max_age=0, keep=0, half_made_grace=0)
                kept += [p for p in entry.iterdir() if p.is_dir()]
                continue
            if entry.name in (RUNS, PROJECTS) and entry.is_dir():
                for item in entry.iterdir():
                    lock = item / _RUN_LOCK if entry.name == RUNS else Path(f"{item}.lock")
                    if item.suffix == ".lock":
                        continue  # lock files stay: see prune_environments
                    if is_locked(lock):
                        kept.append(item)
                    else:
                        shutil.rmtree(item, ignore_errors=True)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return kept


@dataclass
class PruneReport:
    """What :meth:`Cache.prune` removed."""

    stale_runs: list[Path] = field(default_factory=list)
    failed_runs: list[Path] = field(default_factory=list)
    environments: list[Path] = field(default_factory=list)
    logs: int = 0
    freed: int = 0


def _readable_record(path: Path) -> bool:
    import json

    try:
        return isinstance(json.loads(path.read_bytes()), dict)
    except (OSError, ValueError):
        return False


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by a concurrent run
        return 0.0


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total
