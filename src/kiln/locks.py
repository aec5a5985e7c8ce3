"""Advisory file locks: who is using an environment or a run directory right now.

A lock is held for as long as its file descriptor is open, and the operating
system drops it when the holder dies, however it dies. So a lock file left on
disk by a crashed run never blocks anyone: only a live holder does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import TracebackType

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int, *, shared: bool, blocking: bool) -> bool:
        # Windows byte-range locks have no shared mode: every holder is exclusive.
        mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
        try:
            msvcrt.locking(fd, mode, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _lock(fd: int, *, shared: bool, blocking: bool) -> bool:
        operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            operation |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            return False
        return True


class FileLock:
    """An advisory lock on ``path`` (created if missing), held shared or exclusively."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire_shared(self, *, blocking: bool = True) -> bool:
        """Take the lock shared with other readers (waiting for an exclusive holder,
        unless not ``blocking``); False if it was not taken."""
        return self._take(shared=True, blocking=blocking)

    def acquire_exclusive(self, *, blocking: bool = True, note_holder: bool = False) -> bool:
        """Take the lock for this process alone (converting a shared hold), waiting
        unless not ``blocking``; False if it was not taken. With ``note_holder``, write
        this process's pid into the file, for :meth:`holder`."""
        if not self._take(shared=False, blocking=blocking):
            return False
        if note_holder:
            # Only for messages; the lock itself is what counts.
            assert self._fd is not None
            os.ftruncate(self._fd, 0)
            os.write(self._fd, str(os.getpid()).encode())
        return True

    def _take(self, *, shared: bool, blocking: bool) -> bool:
        held = self._fd is not None
        # Owner-only, and never through a link: a lock file's content is overwritten.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = self._fd if self._fd is not None else os.open(self.path, flags, 0o600)
        if not _lock(fd, shared=shared, blocking=blocking):
            if not held:
                os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        """The pid written by the holder, or '?' when it cannot be read."""
        with contextlib.suppress(OSError):
            return self.path.read_text().strip() or "?"
        return "?"

    def __enter__(self) -> FileLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def is_locked(path: Path) -> bool:
    """Whether a live process holds the lock at ``path`` (a missing file is unlocked)."""
    if not path.exists():
        return False
    probe = FileLock(path)
    try:
        if probe.acquire_exclusive(blocking=False, note_holder=True):
            return False
    except OSError:
        return True  # cannot even open it: treat it as in use, never delete
    finally:
        probe.release()
    return True
