"""The wheel cache: built wheels by wheel key, so nothing is built twice.

Layout, in the kiln cache's ``wheels-v1`` bucket::

    <key>/<wheel file name>   the wheel
    <key>/entry.json          what built it (see :meth:`WheelCache.store`)
    <key>.lock                held while a run builds or stores that key
    <key>.<pid>.partial/      an entry being written; renamed to <key>/ whole

An entry appears in one rename, so a reader sees it whole or not at all; a run
killed mid-store leaves only a partial, which ``kiln cache prune`` removes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kiln.jsonfiles import read_json_object, write_json
from kiln.layout import LOCK_SUFFIX, WHEELS
from kiln.locks import FileLock

logger = logging.getLogger(__name__)

ENTRY = "entry.json"
_KEY = re.compile(r"[0-9a-f]{64}")


class WheelCache:
    """The wheels-v1 bucket of the kiln cache at ``cache_dir`` (both made if missing;
    Cache.open checks them as for a build: UsageError when kiln may not trust them)."""

    def __init__(self, cache_dir: Path) -> None:
        from kiln.cache import Cache

        self.root = Cache.open(Path(cache_dir)).bucket(WHEELS)
        self._held: dict[str, FileLock] = {}

    def lookup(self, key: str) -> Path | None:
        """The cached wheel for ``key``, or None."""
        entry = self.root / _checked(key)
        record = read_json_object(entry / ENTRY)
        filename = record.get("wheel")
        if not isinstance(filename, str) or "/" in filename or os.sep in filename:
            return None
        wheel = entry / filename
        size = record.get("size")
        try:
            # The size is a cheap check that the wheel is the one recorded; hashing
            # every wheel on every run would cost the no-change run its speed.
            if not wheel.is_file() or (isinstance(size, int) and wheel.stat().st_size != size):
                return None
        except OSError:
            return None
        return wheel

    def entry(self, key: str) -> dict[str, Any]:
        """The record stored with ``key``'s wheel ({} when there is none)."""
        return read_json_object(self.root / _checked(key) / ENTRY)

    @contextlib.contextmanager
    def lock(self, key: str, *, blocking: bool = True) -> Iterator[bool]:
        """Hold ``key``'s lock (the only holder across processes) while the block runs.

        Yields whether it is held: always True when ``blocking`` (it waits for
        another run to finish that key), else False when another run holds it.
        A run checks :meth:`lookup` again once it holds the lock: the other run
        may have stored the wheel meanwhile.
        """
        _checked(key)
        if key in self._held:
            raise RuntimeError(f"wheel key {key} is already locked by this cache")
        lock = FileLock(self.root / f"{key}{LOCK_SUFFIX}")
        if not lock.acquire_exclusive(blocking=blocking, note_holder=True):
            yield False
            return
        self._held[key] = lock
        try:
            yield True
        finally:
            del self._held[key]
            lock.release()

    def store(self, key: str, wheel: Path, entry: dict[str, Any]) -> Path:
        """Copy ``wheel`` into the cache under ``key`` with ``entry`` (plain JSON data:
        the key's inputs, the build's time...); return the cached wheel.

        Atomic: written under a name of this process's, then renamed into place.
        When ``key`` is stored already (another run was first), that wheel stays
        and is returned. Takes ``key``'s lock unless this cache holds it.
        """
        _checked(key)
        if key in self._held:
            return self._store(key, wheel, entry)
        with self.lock(key):
            return self._store(key, wheel, entry)

    def _store(self, key: str, wheel: Path, entry: dict[str, Any]) -> Path:
        existing = self.lookup(key)
        if existing is not None:
            return existing
        final = self.root / key
        partial = self.root / f"{key}.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # this pid's, from a killed run
        try:
            partial.mkdir(mode=0o700)
            shutil.copyfile(wheel, partial / wheel.name)
            record = dict(entry, wheel=wheel.name, size=(partial / wheel.name).stat().st_size)
            write_json(partial / ENTRY, record, indent=2)
            if final.exists():
                # A broken entry (its wheel gone): replaced, as nobody can use it.
                shutil.rmtree(final)
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        logger.debug("stored %s as wheel key %s", wheel.name, key)
        return final / wheel.name


def _checked(key: str) -> str:
    """``key`` if it looks like a wheel key (it becomes a file name), else ValueError."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a wheel key (64 lower-case hex digits): {key!r}")
    return key
