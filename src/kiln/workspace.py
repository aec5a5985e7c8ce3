"""The directory of one kiln run: scratch space, the build log, and, after a
failure, everything needed to look at what went wrong.

A run directory lives in the cache's ``runs`` bucket, or inside the user's
``--env-dir`` (so a read-only machine with one writable directory works). It
holds::

    .lock         held while the run is alive; prune never touches a locked run
    build.log     every command kiln ran and everything it printed
    tmp/          TMPDIR/TEMP/TMP of installers and hooks
    hooks/        the JSON handoff files of each hook call
    env/          the throwaway build environment (without --env-dir)
    source/       an sdist given as SRC, unpacked
    from-sdist/   the sdist just built, unpacked to build the wheel from
    hook.json     the hook that is running (kept if it fails): for `kiln debug`
    failed.json   written when the run fails; marks the directory as kept

After a successful run the directory is removed (its log moves to the cache's
``logs`` bucket). After a failed or interrupted one it stays, for ``kiln debug``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from kiln.cache import LOGS, RUNS, Cache
from kiln.locks import FileLock
from kiln.process import BuildLog

LOCK_NAME = ".lock"
FAILED_NAME = "failed.json"
HOOK_RECORD_NAME = "hook.json"
LOG_NAME = "build.log"


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


class Workspace:
    """One run's directory: created and locked on entry, removed or kept on exit."""

    def __init__(self, root: Path, *, cache: Cache | None, label: str, run_id: str) -> None:
        self.root = root
        self.cache = cache
        self.label = re.sub(r"[^A-Za-z0-9._-]+", "_", label) or "build"
        self.run_id = run_id
        root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(root / LOCK_NAME)
        if not self._lock.acquire():  # pragma: no cover - run ids are unique per process
            raise RuntimeError(f"run directory {root} is already in use")
        self.tmp = root / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.hooks = root / "hooks"
        self.hooks.mkdir(exist_ok=True)
        self.log = BuildLog(root / LOG_NAME)

    @classmethod
    def in_cache(cls, cache: Cache, label: str) -> Workspace:
        run_id = new_run_id()
        return cls(cache.bucket(RUNS) / run_id, cache=cache, label=label, run_id=run_id)

    @property
    def hook_record(self) -> Path:
        return self.root / HOOK_RECORD_NAME

    def subprocess_environ(self) -> dict[str, str]:
        """The user's environment, with temporary files redirected into this run."""
        environ = dict(os.environ)
        for name in ("TMPDIR", "TEMP", "TMP"):
            environ[name] = str(self.tmp)
        return environ

    def succeed(self) -> None:
        """Keep the log in the cache (when there is one) and remove everything else."""
        self.log.close()
        if self.cache is not None:
            target = self.cache.bucket(LOGS) / f"{self.label}-{self.run_id}.log"
            try:
                shutil.move(self.root / LOG_NAME, target)
            except OSError:
                pass  # a log is worth keeping, not worth failing a good build for
            else:
                self.log.path = target
        self._lock.release()
        shutil.rmtree(self.root, ignore_errors=True)

    def fail(self, reason: str, *, source: Path, environment: Path | None) -> Path:
        """Mark the run as failed and keep it; returns its directory."""
        self.log.section(f"kiln: {reason}")
        self.log.close()
        record = {
            "reason": reason,
            "time": time.time(),
            "source": str(source),
            "environment": str(environment) if environment else None,
            "log": str(self.root / LOG_NAME),
        }
        # The run is kept either way; the marker only helps `kiln debug` find it.
        with contextlib.suppress(OSError):
            (self.root / FAILED_NAME).write_text(json.dumps(record, indent=2), encoding="utf-8")
        self._lock.release()
        # Scratch files and the hooks' handoff files are of no use once the run is
        # over; tmp/ stays, empty, as the TMPDIR of a `kiln debug` shell.
        shutil.rmtree(self.hooks, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(exist_ok=True)
        return self.root
