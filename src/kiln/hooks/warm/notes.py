"""The warm runners' notes in an environment that lasts: what its hooks import.

Kept in the environment's state directory (``BuildEnvironment.state_dir``), so
that the next worker there imports those modules once, ahead of the hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln.records import WarmNotes

logger = logging.getLogger("kiln.hooks.warm")

# The notes' file in an environment's state directory.
WARM_IMPORTS_NAME = "kiln-warm-imports.json"


class WarmImports:
    """An environment's notes: per backend, the modules its hooks imported.

    A :class:`kiln.records.WarmNotes` in the environment: ``{backend: [module, ...]}``,
    or ``{backend: false}`` once importing them ahead proved unsafe. Runs sharing
    the environment may write it at once: each replaces it whole, atomically,
    and a lost update only costs a module imported in the hook instead. It is
    written only under the environment's lock (``<env>.lock``, shared), never
    while another run holds it to make or replace the environment.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, list[str] | bool] | None = None

    def usable(self, backend: str) -> bool:
        return isinstance(self._read().get(backend), list)

    def learn(self, backend: str, modules: Mapping[str, None] | Sequence[str]) -> None:
        """Add ``modules`` to ``backend``'s list (unless it was refused)."""
        known = self._read().get(backend, [])
        if not isinstance(known, list):
            return
        merged = list(dict.fromkeys([*known, *modules]))
        if len(merged) > len(known):
            self._write(backend, merged)

    def refuse(self, backend: str, reason: str) -> None:
        logger.debug("hook runner: no longer importing ahead for %s (%s)", backend, reason)
        self._write(backend, False)

    def _read(self) -> dict[str, list[str] | bool]:
        if self._data is None:
            # Damaged notes are started afresh: they only save imports.
            notes = WarmNotes.read(self.path)
            self._data = notes.backends if notes is not None else {}
        return self._data

    def _write(self, backend: str, value: list[str] | bool) -> None:
        from kiln.layout import lock_beside
        from kiln.locks import FileLock

        environment = self.path.parent
        lock = FileLock(lock_beside(environment))
        try:
            if not lock.acquire_shared(blocking=False):
                logger.debug("not keeping notes on warm imports: %s is being replaced", environment)
                return
            self._data = None  # merge with what other runs wrote meanwhile
            data = {**self._read(), backend: value}
            WarmNotes(data).write(self.path)
            self._data = data
        except OSError as error:
            logger.debug("cannot keep notes on warm imports in %s: %s", self.path, error)
        finally:
            lock.release()
