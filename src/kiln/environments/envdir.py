"""The user's ``--env-dir``: a place kiln may build in, but must not harm.

kiln takes the directory only when it is absent or empty, or holds nothing but
an environment an earlier kiln run left there. It locks it for the run, removes
what it made after a success, and keeps everything after a failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from kiln.errors import UsageError
from kiln.jsonfiles import write_json
from kiln.locks import FileLock

logger = logging.getLogger(__name__)

MARKER_NAME = ".kiln-env"
LOCK_NAME = ".kiln-lock"
RUN_DIR_NAME = ".kiln-run"
# What a virtual environment made by kiln holds at its top level, on any platform.
_ENVIRONMENT_ENTRIES = frozenset(
    {
        "bin",
        "Scripts",
        "lib",
        "lib64",
        "Lib",
        "include",
        "Include",
        "share",
        "etc",
        "pyvenv.cfg",
        ".gitignore",
        ".lock",  # uv's lock on the environment
        MARKER_NAME,
        LOCK_NAME,
        RUN_DIR_NAME,
    }
)
# Written into the env dir so that VCS-aware backends leave it out of an sdist.
_GITIGNORE = "# Created by kiln: a build environment, never part of a project.\n*\n"


class EnvDir:
    """A claimed, locked ``--env-dir``; see :meth:`claim`."""

    def __init__(self, path: Path, *, created: bool, lock: FileLock) -> None:
        self.path = path
        self.created = created
        self._lock = lock

    @property
    def run_dir(self) -> Path:
        """Where this run's scratch space lives: inside the env dir."""
        return self.path / RUN_DIR_NAME

    @classmethod
    def claim(cls, requested: Path, *, must_not_contain: Iterable[Path]) -> EnvDir:
        """Validate ``requested`` and lock it, touching nothing if it is refused.

        A symlink is followed: kiln works inside its target. ``must_not_contain``
        are paths the env dir may neither be nor contain (the project, the output
        directory, the cache directory), since cleaning it would delete them.
        """
        shown = requested
        path = Path(os.path.realpath(Path(requested).expanduser().absolute()))
        for protected in must_not_contain:
            real = Path(os.path.realpath(protected))
            if real == path or real.is_relative_to(path):
                raise UsageError(
                    f"--env-dir {shown} contains {protected}; kiln empties the env dir "
                    "after a build, so it must be a directory of its own"
                )
        if path.exists() and not path.is_dir():
            raise UsageError(f"--env-dir {shown} exists and is not a directory")
        created = not path.exists()
        if created:
            try:
                path.mkdir(parents=True)
            except OSError as error:
                raise UsageError(
                    f"--env-dir {shown} cannot be created: {error.strerror or error}"
                ) from error
        elif not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"--env-dir {shown} is not writable")
        else:
            _refuse_foreign_contents(path, shown)
        lock = FileLock(path / LOCK_NAME)
        try:
            acquired = lock.acquire_exclusive(blocking=False, note_holder=True)
        except OSError as error:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise UsageError(f"--env-dir {shown} is not writable: {error.strerror}") from error
        if not acquired:
            raise UsageError(
                f"--env-dir {shown} is in use by another kiln run (pid {lock.holder()}); "
                "wait for it, or choose another directory"
            )
        env_dir = cls(path, created=created, lock=lock)
        env_dir._replace_earlier_environment()
        return env_dir

    def _replace_earlier_environment(self) -> None:
        leftovers = [p for p in self.path.iterdir() if p.name != LOCK_NAME]
        if leftovers:
            logger.warning(
                "--env-dir %s holds a build environment an earlier kiln run left there; "
                "replacing it",
                self.path,
            )
        _remove_entries(leftovers)
        # Only its presence is read (see _refuse_foreign_contents); written whole all the same.
        write_json(
            self.path / MARKER_NAME, {"made_by": "kiln", "pid": os.getpid(), "time": time.time()}
        )
        (self.path / ".gitignore").write_text(_GITIGNORE, encoding="utf-8")

    def clean(self) -> None:
        """After success: remove the directory if kiln made it, else only its contents."""
        self._lock.release()
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            # It may be a mount point: keep the directory itself.
            _remove_entries(self.path.iterdir())

    def keep(self) -> None:
        """After failure: leave everything, stop holding the lock."""
        self._lock.release()


def _refuse_foreign_contents(path: Path, shown: Path) -> None:
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return
    if MARKER_NAME in entries and entries <= _ENVIRONMENT_ENTRIES:
        return
    if LOCK_NAME in entries and entries <= _ENVIRONMENT_ENTRIES:
        return  # a kiln env being made (or interrupted before its marker): lock decides
    foreign = sorted(entries - _ENVIRONMENT_ENTRIES) or sorted(entries)
    raise UsageError(
        f"--env-dir {shown} is not empty (it holds {', '.join(foreign[:3])}"
        f"{', …' if len(foreign) > 3 else ''}); kiln only uses an empty directory "
        "or one holding an environment kiln made"
    )


def _remove_entries(entries: Iterable[Path]) -> None:
    from kiln.removal import remove_tree

    for entry in entries:
        remove_tree(entry)
