"""The directory of one kiln run: scratch space, the build log, and, after a
failure, everything needed to look at what went wrong.

A run directory lives in the cache's ``runs`` bucket, or inside the user's
``--env-dir`` (so a read-only machine with one writable directory works). It
holds::

    .lock         held while the run is alive; prune never touches a locked run
    build.log     every command kiln ran and everything it printed
    hooks/        the JSON handoff files of each hook call
    env/          the throwaway build environment (--fresh-env)
    hook.json     the hook that is running (kept if it fails): for `kiln debug`
    failed.json   written when the run fails; marks the directory as kept

What can reach a compiler (``tmp/``, ``source/``, ``from-sdist/``, ``build/``)
lives in the project's stable place instead; see :class:`Workspace`. A failed
run moves those into its run directory.

After a successful run the directory is removed (its log moves to the cache's
``logs`` bucket). After a failed or interrupted one it stays, for ``kiln debug``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from kiln.cache import Cache
from kiln.errors import UsageError
from kiln.layout import (
    BUILD_LOG,
    FAILED_RECORD,
    HOOK_RECORD,
    LOGS,
    PROJECTS,
    RUN_LOCK,
    RUNS,
    STABLE_NAMES,
    lock_beside,
    project_label,
    worker_plans,
)
from kiln.locks import FileLock
from kiln.process import BuildLog
from kiln.records import FailedRun, HookCall
from kiln.removal import empty_directory, remove_tree
from kiln.trust import entry_problem

logger = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


class Workspace:
    """One run's directory: created and locked by :meth:`open`, removed or kept at the end.

    What can reach a compiler's command line (the unpacked sources, backend
    build directories, TMPDIR) lives in ``place`` instead: a directory that is
    the same for every build of the project, so compiler caches hit. In the
    cache it is ``projects-v1/<label>/``, held by one run at a time and emptied
    before and after each; inside an --env-dir it is the run directory itself,
    which is stable already. A failed run takes its sources along to keep them.

    The constructor only names the places; :meth:`open` creates
    and locks them, may wait for another run of the same project, and empties
    the place. Leave it with :meth:`succeed` or :meth:`fail`.
    """

    def __init__(
        self,
        root: Path,
        *,
        cache: Cache | None,
        label: str,
        run_id: str,
        place: Path | None = None,
    ) -> None:
        self.root = root
        self.cache = cache
        self.label = project_label(label)
        self.run_id = run_id
        self.place = place or root
        self._lock = FileLock(root / RUN_LOCK)
        self._place_lock: FileLock | None = None
        self.tmp = self.place / "tmp"
        self.hooks = root / "hooks"
        self._log: BuildLog | None = None

    @classmethod
    def in_cache(cls, cache: Cache, label: str) -> Workspace:
        """The names of a new run in ``cache``; nothing is made until :meth:`open`."""
        run_id = new_run_id()
        place = cache.bucket(PROJECTS) / project_label(label)
        return cls(
            cache.bucket(RUNS) / run_id, cache=cache, label=label, run_id=run_id, place=place
        )

    @property
    def log(self) -> BuildLog:
        if self._log is None:
            raise RuntimeError(f"the run directory {self.root} is not open yet")
        return self._log

    def open(self) -> Workspace:
        """Create and lock the run directory, claim (and empty) the place, open the log."""
        root = self.root
        _refuse_untrusted(root, directory=True)
        # Owner-only, whatever the umask: the cache's rule (see kiln.trust).
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        taken = self._lock.acquire_exclusive(blocking=False, note_holder=True)
        if not taken:  # pragma: no cover - run ids are unique per process
            raise RuntimeError(f"run directory {root} is already in use")
        if self.place != root:
            try:
                self._claim_place(self.place)
            except BaseException:
                self._lock.release()
                shutil.rmtree(root, ignore_errors=True)
                raise
        self.tmp.mkdir(mode=0o700, exist_ok=True)
        self.hooks.mkdir(mode=0o700, exist_ok=True)
        _create_private(root / BUILD_LOG)
        self._log = BuildLog(root / BUILD_LOG)
        return self

    def _claim_place(self, place: Path) -> None:
        lock_path = lock_beside(place)
        _refuse_untrusted(lock_path, directory=False)
        lock = FileLock(lock_path)
        if not lock.acquire_exclusive(blocking=False):
            logger.info("Waiting for another kiln run building %s", self.label)
            lock.acquire_exclusive()
        try:
            # Emptied below: never through a link, nor another user's directory.
            _refuse_untrusted(place, directory=True)
            place.mkdir(mode=0o700, exist_ok=True)
        except BaseException:
            lock.release()
            raise
        self._place_lock = lock
        # Whatever an earlier run left (a crash, or a build of another checkout with
        # the same name) must not reach this build's artifacts.
        empty_directory(place)  # read-only trees too: what stays reaches the next build

    def _release_place(self) -> None:
        if self._place_lock is not None:
            empty_directory(self.place)
            self._place_lock.release()
            self._place_lock = None

    def stable_dir(self, name: str) -> Path:
        """A directory under the stable place, for unpacked sources or build output."""
        return self.place / name

    @property
    def worker_plans(self) -> Path | None:
        """Beside the stable place: the plans of the last runs' first warm workers,
        for a head start (None without a stable place)."""
        if self.place == self.root:
            return None
        return worker_plans(self.place)

    @property
    def hook_record(self) -> Path:
        return self.root / HOOK_RECORD

    def subprocess_environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (the user's environment), with temporary files redirected into this run."""
        environ = dict(base)
        for name in ("TMPDIR", "TEMP", "TMP"):
            environ[name] = str(self.tmp)
        return environ

    def succeed(self) -> None:
        """Keep the log in the cache (when there is one) and remove everything else."""
        self.log.close()
        if self.cache is not None:
            target = self.cache.bucket(LOGS) / f"{self.label}-{self.run_id}.log"
            try:
                shutil.move(self.root / BUILD_LOG, target)
            except OSError:
                pass  # a log is worth keeping, not worth failing a good build for
            else:
                self.log.path = target
        self._release_place()
        self._lock.release()
        remove_tree(self.root)  # with --env-dir, the place: read-only trees too

    def fail(
        self,
        reason: str,
        *,
        source: Path,
        environment: Path | None,
        keep_sources: bool = True,
    ) -> Path:
        """Mark the run as failed and keep it; returns its directory.

        ``keep_sources=False`` (the disk is full): the files the build worked on
        are removed rather than kept, to give the space back; the log and the
        record stay. Never raises OSError: a failure to keep something (a full
        disk) must not hide the error that ended the run.
        """
        if not keep_sources:
            self._discard_sources()  # first: the space comes back before anything is written
            reason += "; its files were removed to free the space"
        with contextlib.suppress(OSError):
            self.log.section(f"kiln: {reason}")
        self.log.close()
        record = FailedRun(
            reason=reason,
            time=time.time(),
            source=str(source),
            environment=str(environment) if environment else None,
            log=str(self.root / BUILD_LOG),
        )
        # The run is kept either way; the marker only helps `kiln debug` find it.
        with contextlib.suppress(OSError):
            record.write(self.root / FAILED_RECORD)
        self._keep_sources()
        self._lock.release()
        # Scratch files and the hooks' handoff files are of no use once the run is
        # over; tmp/ stays, empty, as the TMPDIR of a `kiln debug` shell.
        shutil.rmtree(self.hooks, ignore_errors=True)
        self.tmp = self.root / "tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.tmp.mkdir(mode=0o700, exist_ok=True)
        return self.root

    def _discard_sources(self) -> None:
        if self.place != self.root:
            self._release_place()  # empties it
            return
        for name in STABLE_NAMES:  # in an --env-dir the place is the run directory
            remove_tree(self.root / name)

    def _keep_sources(self) -> None:
        """Move what the failed build worked on from the stable place into the run.

        The next build of the project needs the place; the record of the failed
        hook is rewritten to point at the moved files.
        """
        if self.place == self.root or self._place_lock is None:
            return  # no place, or its files were removed already
        for entry in list(self.place.iterdir()):
            if entry.name != "tmp":
                with contextlib.suppress(OSError):
                    entry.rename(self.root / entry.name)
        call = HookCall.read(self.hook_record)
        if call is not None:  # none, or damaged: `kiln debug` does without
            with contextlib.suppress(OSError):
                call.moved(self.place, self.root).write(self.hook_record)
        self._release_place()


def _refuse_untrusted(path: Path, *, directory: bool) -> None:
    """Raise UsageError for an existing ``path`` kiln may not trust (see kiln.trust)."""
    problem = entry_problem(path, directory=directory)
    if problem is not None:
        raise UsageError(problem)


def _create_private(path: Path) -> None:
    """Create the file ``path``, readable by its owner alone, if it is missing."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o600))
