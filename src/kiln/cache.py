"""kiln's cache directory: where it resolves to, and its named buckets.

Everything kiln writes outside the output directory lives here, so a user who
can write to one place (a CI cache, a container's one writable volume) can
run kiln. Each bucket carries a layout version in its name, so a later kiln
can change a bucket's layout without misreading an older one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import KilnError, UsageError, disk_full_error, is_disk_full
from kiln.layout import (
    ENVS,
    FAILED_RECORD,
    LOCK_SUFFIX,
    LOGS,
    PROJECTS,
    RUN_LOCK,
    RUNS,
    WHEELHOUSE_BUCKETS,
    WORKER_PLANS_SUFFIX,
    lock_beside,
    resolve_cache_dir,
)
from kiln.options import CACHE_DIR_ENV
from kiln.trust import enterable_by_others, entry_problem, root_problem

TAG_NAME = "CACHEDIR.TAG"
# Written into CACHEDIR.TAG; backup tools skip directories holding it
# (https://bford.info/cachedir/). Its second line is how kiln knows a cache it made.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by kiln.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
# Made with the cache; the wheelhouse's buckets are made when a wheelhouse run needs them.
BUCKETS = (ENVS, PROJECTS, RUNS, LOGS)
KNOWN_BUCKETS = BUCKETS + WHEELHOUSE_BUCKETS
# A bucket of any kiln version: what `kiln cache clean` finds beside this version's.
_ANY_VERSION_BUCKET = re.compile(
    r"(?:envs|projects|runs|logs|wheels|sdists|resolutions|wheelhouse)-v[0-9]+"
)
# A tag being written (see _write_tag), or left by a run killed meanwhile.
_PARTIAL_TAG = re.compile(re.escape(TAG_NAME) + r"\.[0-9]+\.partial")

# Logs kept from earlier runs; older ones are removed when a run starts.
KEPT_LOGS = 50
# `kiln --timings` without a path: the page goes beside the build's log, named so.
TIMINGS_SUFFIX = ".timings.html"
# Failed runs kept for `kiln debug`: the newest few, and none older than a week.
KEPT_FAILED_RUNS = 5
FAILED_RUN_MAX_AGE = 7 * 24 * 3600
# A run directory nobody holds, not marked failed, is a crashed run's leftovers;
# a day's grace covers clocks and slow machines.
STALE_RUN_AGE = 24 * 3600
# But one holding a lock file nobody holds is a killed run's (SIGKILL, the OOM
# killer): a run locks the file the moment it creates it, so a minute's grace is
# plenty, and what it left (a --fresh-env environment, say) is freed at once.
KILLED_RUN_AGE = 60
_IN_USE = "a kiln run is using it"


@dataclass(frozen=True)
class Cache:
    """An existing, tagged cache directory that only its owner can change."""

    root: Path

    @classmethod
    def open(cls, explicit: Path | None = None) -> Cache:
        """The cache a build uses: created owner-only if missing, else checked.

        An existing directory is taken only when it is a kiln cache (kiln's
        CACHEDIR.TAG) or empty: a cache is emptied bit by bit, so kiln never
        moves into a directory of the user's. Raises UsageError.
        """
        root = resolve_cache_dir(explicit)
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                root.mkdir(mode=0o700)
                root.chmod(0o700)  # exactly, whatever the umask took away
        except OSError as error:
            raise _unusable(root, error) from error
        cache = cls(root)
        cache._check(claim=True, write=True)
        return cache

    @classmethod
    def existing(cls, explicit: Path | None = None, *, write: bool = False) -> Cache | None:
        """The cache, checked as :meth:`open` does but never created nor changed;
        None when there is none. ``write``: the caller means to remove things."""
        root = resolve_cache_dir(explicit)
        if not os.path.lexists(root):
            return None
        cache = cls(root)
        cache._check(claim=False, write=write)
        return cache

    def _check(self, *, claim: bool, write: bool) -> None:
        """Refuse a directory another user can change, or one that is not kiln's;
        ``claim``: make an empty one a cache, and keep the cache owner-only."""
        root = self.root
        problem = root_problem(root)
        if problem is not None:
            raise UsageError(problem)
        try:
            if not _is_kiln_cache(root, claim=claim):
                raise UsageError(
                    f"{root} is not a kiln cache directory: it is not empty and has no "
                    f"{TAG_NAME} written by kiln, and kiln only uses an empty directory or "
                    f"one it made; choose another with --cache-dir or {CACHE_DIR_ENV}"
                )
            # An existing directory on a read-only mount passes the lines above.
            if write and not os.access(root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EROFS, "not writable")
            for name in KNOWN_BUCKETS:
                problem = entry_problem(root / name, directory=True)
                if problem is not None:
                    raise UsageError(problem)
            problem = _environments_problem(root / ENVS)
            if problem is not None:
                raise UsageError(problem)
            if claim:
                if stat.S_IMODE(root.stat().st_mode) != 0o700:
                    root.chmod(0o700)  # an older kiln's cache, or one made by hand
                for name in BUCKETS:
                    self.bucket(name)
        except OSError as error:
            raise _unusable(root, error) from error

    def refuse_foreign_entries(self, command: str) -> None:
        """Refuse (UsageError) a cache holding a top-level entry kiln did not make,
        before ``command`` removes anything."""
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if (
                name != TAG_NAME
                and not _ANY_VERSION_BUCKET.fullmatch(name)
                and not _PARTIAL_TAG.fullmatch(name)
            ):
                raise UsageError(
                    f"{self.root} holds {entry.name}, which kiln did not make, so it may not "
                    f"be a kiln cache; {command} only works on a directory that holds what "
                    f"kiln made: move {entry} out of it, or name the right one with "
                    f"--cache-dir or {CACHE_DIR_ENV}"
                )

    def bucket(self, name: str) -> Path:
        """The bucket ``name``, made owner-only if missing. Raises UsageError for one
        kiln may not trust (a link, another user's)."""
        path = self.root / name
        problem = entry_problem(path, directory=True)
        if problem is not None:
            raise UsageError(problem)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        return path

    def prune_logs(self, keep: int = KEPT_LOGS) -> None:
        """Remove all but the newest ``keep`` logs (and the timings page beside each)."""
        logs = sorted(self.bucket(LOGS).glob("*.log"), key=_modified, reverse=True)
        for old in logs[keep:]:
            old.unlink(missing_ok=True)
            old.with_suffix(TIMINGS_SUFFIX).unlink(missing_ok=True)

    def failed_runs(self) -> list[Path]:
        """Kept failed runs, newest first."""
        runs = self.root / RUNS
        if not runs.is_dir():
            return []
        failed = [run for run in runs.iterdir() if (run / FAILED_RECORD).is_file()]
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
        readable = [run for run in failed if _readable_record(run / FAILED_RECORD)]
        failed_kept = {
            run for run in readable[:keep_failed] if now - _modified(run) < failed_max_age
        }
        for run in sorted(runs.iterdir()) if runs.is_dir() else []:
            if run == keep_running or run in failed_kept:
                continue
            is_failed = run in failed
            grace = min(KILLED_RUN_AGE, stale_after) if (run / RUN_LOCK).exists() else stale_after
            if not is_failed and now - _modified(run) < grace:
                continue  # probably a run that has only just started
            if is_locked(run / RUN_LOCK):
                continue
            report.freed += _size(run)
            _remove(run)
            (report.failed_runs if is_failed else report.stale_runs).append(run)
        from kiln.environments.cached import prune_environments

        def count(path: Path) -> None:
            report.freed += _size(path)

        report.environments = prune_environments(self.root / ENVS, before_removal=count)
        for name in WHEELHOUSE_BUCKETS:
            for partial in _leftover_partials(self.root / name, now):
                report.freed += _size(partial)
                _remove(partial)
                report.partials.append(partial)
        if (self.root / LOGS).is_dir():
            before = set(self.bucket(LOGS).glob("*.log"))
            self.prune_logs()
            report.logs = len(before - set(self.bucket(LOGS).glob("*.log")))
        return report

    def sizes(self) -> dict[str, int]:
        """Bytes used by each bucket."""
        if not self.root.is_dir():
            return {}
        return {
            entry.name: _size(entry)
            for entry in sorted(self.root.iterdir())
            if entry.is_dir() and not entry.is_symlink()
        }

    def clean(self) -> list[tuple[Path, str]]:
        """Remove what kiln made, but what live kiln runs are using; returns what
        stayed, and why. Only kiln's own buckets are looked into."""
        from kiln.environments.cached import prune_environments
        from kiln.locks import is_locked

        kept: list[tuple[Path, str]] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name == TAG_NAME or not entry.is_dir() or entry.is_symlink():
                continue  # refuse_foreign_entries named anything else
            if entry.name == ENVS:
                prune_environments(entry, max_age=0, keep=0, half_made_grace=0)
                kept += [(p, _IN_USE) for p in sorted(entry.iterdir()) if p.is_dir()]
            elif entry.name == RUNS:
                for item in sorted(entry.iterdir()):
                    if is_locked(item / RUN_LOCK):
                        kept.append((item, _IN_USE))
                    else:
                        _remove(item)
            elif entry.name == PROJECTS:
                for item in sorted(entry.iterdir()):
                    if item.suffix == LOCK_SUFFIX:
                        continue  # lock files stay: see prune_environments
                    # A place, or its plans file (or one being written): the place's lock.
                    label = item.name.partition(WORKER_PLANS_SUFFIX)[0]
                    if not is_locked(lock_beside(entry / label)):
                        _remove(item)
                    elif item.name == label:
                        kept.append((item, _IN_USE))
            elif entry.name == LOGS:
                _remove(entry)
            elif entry.name in WHEELHOUSE_BUCKETS:
                kept += _clean_labelled_bucket(entry)
            else:
                kept.append((entry, "another kiln version's; its own kiln cache clean removes it"))
        return kept


@dataclass
class PruneReport:
    """What :meth:`Cache.prune` removed."""

    stale_runs: list[Path] = field(default_factory=list)
    failed_runs: list[Path] = field(default_factory=list)
    environments: list[Path] = field(default_factory=list)
    logs: int = 0
    freed: int = 0
    # Half-written entries of the wheelhouse's buckets, left by killed runs.
    partials: list[Path] = field(default_factory=list)


def _label(entry: Path) -> str:
    """The label of an entry of a wheelhouse bucket: its name up to the first dot."""
    return entry.name.partition(".")[0]


def _clean_labelled_bucket(bucket: Path) -> list[tuple[Path, str]]:
    """Remove every entry of a wheelhouse bucket but those whose label's lock a
    live run holds (see kiln.layout); lock files stay, as for environments."""
    from kiln.locks import is_locked

    kept: list[tuple[Path, str]] = []
    for item in sorted(bucket.iterdir()):
        if item.suffix == LOCK_SUFFIX:
            continue
        if is_locked(bucket / f"{_label(item)}{LOCK_SUFFIX}"):
            kept.append((item, _IN_USE))
        else:
            _remove(item)
    return kept


def _leftover_partials(bucket: Path, now: float) -> list[Path]:
    """``*.partial`` entries of ``bucket`` that no live run is writing: a killed run's.

    One whose label has a lock file was written under that lock, so a minute's
    grace is plenty once nobody holds it; one without may be a long download
    still going, so it gets a day, as a run directory does."""
    from kiln.locks import is_locked

    if not bucket.is_dir():
        return []
    leftovers = []
    for item in sorted(bucket.glob("*.partial")):
        lock = bucket / f"{_label(item)}{LOCK_SUFFIX}"
        grace = KILLED_RUN_AGE if _label(item) and lock.exists() else STALE_RUN_AGE
        if now - _modified(item) >= grace and not is_locked(lock):
            leftovers.append(item)
    return leftovers


def _readable_record(path: Path) -> bool:
    from kiln.records import FailedRun

    return FailedRun.read(path) is not None


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by a concurrent run
        return 0.0


def _environments_problem(environments: Path) -> str | None:
    """What makes an entry of the environments' bucket untrustworthy, if anything:
    checked before any environment is reused. Where no one else can enter the
    bucket, a mode that would let them write inside does no harm (an environment
    made under umask 000)."""
    if not environments.is_dir():
        return None
    exposed = enterable_by_others(environments)
    for entry in environments.iterdir():
        problem = entry_problem(entry, directory=None, exposed=exposed)
        if problem is not None:
            return problem
    return None


def _remove(path: Path) -> None:
    """Remove ``path``: a directory with what it holds (read-only trees a backend
    left too), anything else (a link too) by itself. Never follows a link."""
    from kiln.removal import remove_tree

    remove_tree(path)


def _is_kiln_cache(root: Path, *, claim: bool) -> bool:
    """Whether ``root`` holds kiln's CACHEDIR.TAG, or nothing (``claim``: then it
    gets one). Raises OSError."""
    tag = root / TAG_NAME
    for _ in range(100):
        text = _read_tag(tag)
        if text is not None and _is_kiln_tag_text(text):
            return True
        entries = [entry.name for entry in root.iterdir()]
        if text is None and TAG_NAME in entries and _read_tag(tag) is not None:
            continue  # another run linked its tag (and made buckets) since the read
        if all(_PARTIAL_TAG.fullmatch(name) for name in entries):
            # Empty, or other runs are writing their tags: the first link wins.
            if not claim:
                return True  # an empty directory is an empty cache
            if _write_tag(tag):
                return True
            continue  # another run was quicker
        if entries != [TAG_NAME] or text is None or not CACHEDIR_TAG.startswith(text):
            return False
        time.sleep(0.01)  # an older kiln writing its tag in place
    # An empty tag alone in the directory, still empty a second later: an older
    # kiln was killed before it wrote it. Without this, the directory kiln made
    # would be refused from then on.
    if _read_tag(tag) != "" or [entry.name for entry in root.iterdir()] != [TAG_NAME]:
        return False
    if not claim:
        return True
    tag.unlink(missing_ok=True)
    return _write_tag(tag) or _is_kiln_tag_text(_read_tag(tag) or "")


def _write_tag(tag: Path) -> bool:
    """Create kiln's tag at ``tag``, whole or not at all; False if it exists.

    Written beside it under a name of this process's, then linked into place:
    another run never reads half a tag. Raises OSError.
    """
    partial = tag.with_name(f"{TAG_NAME}.{os.getpid()}.partial")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(CACHEDIR_TAG)
        os.link(partial, tag)
    except FileExistsError:
        return False
    finally:
        partial.unlink(missing_ok=True)
    return True


def _read_tag(tag: Path) -> str | None:
    """The start of ``tag`` if it is a regular file, else None."""
    try:
        if not stat.S_ISREG(tag.lstat().st_mode):
            return None
        with tag.open(encoding="utf-8", errors="replace") as stream:
            return stream.read(4096)
    except OSError:
        return None


def _is_kiln_tag_text(text: str) -> bool:
    # The signature, then the line saying kiln wrote it (later lines may change).
    return text.splitlines()[:2] == CACHEDIR_TAG.splitlines()[:2]


def _unusable(root: Path, error: OSError) -> KilnError:
    if is_disk_full(error):
        return disk_full_error(error, [root])
    return UsageError(
        f"cannot use cache directory {root}: {error.strerror or error}; "
        f"choose another with --cache-dir or {CACHE_DIR_ENV}, or build with --env-dir"
    )


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total
