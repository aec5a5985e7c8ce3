"""Patches applied to an unpacked sdist before it is built.

An sdist to patch is unpacked afresh into a directory of the run's (kiln's
safe extraction, :func:`kiln.sdist.unpack_sdist`), then each patch is applied in
order with ``patch -p1`` (``git apply`` where there is no ``patch``). Each patch
is tried first (a dry run), so a patch that does not apply changes nothing and
the error names it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kiln.errors import ConfigError

logger = logging.getLogger(__name__)


class PatchError(ConfigError):
    """A patch does not apply to the source it is meant for."""

    def __init__(self, message: str, patch: Path) -> None:
        super().__init__(message)
        self.patch = patch


def patched_source(sdist: Path, patches: Sequence[Path], destination: Path) -> Path:
    """Unpack ``sdist`` into ``destination`` (a directory of kiln's, emptied first),
    apply ``patches`` in order, and return the source tree (the archive's top directory).

    Raises SdistError for an unsafe or broken archive and PatchError naming the
    patch that does not apply; on error ``destination`` is removed.
    """
    from kiln.removal import remove_tree
    from kiln.sdist import unpack_sdist

    if destination.exists():
        remove_tree(destination)
    source = unpack_sdist(sdist, destination)
    try:
        apply_patches(source, patches)
    except BaseException:
        remove_tree(destination)
        raise
    return source


def apply_patches(source_dir: Path, patches: Sequence[Path]) -> None:
    """Apply ``patches`` to ``source_dir`` in order (``-p1``: paths start with a
    directory, as ``git diff`` and ``diff -ru a/ b/`` write them).

    Raises PatchError naming the first patch that does not apply (that patch
    changed nothing; the ones before it stay applied).
    """
    tool = _tool()
    for patch in patches:
        if not patch.is_file():
            raise PatchError(f"patch {patch} does not exist", patch)
        for dry_run in (True, False):
            command = _command(tool, patch, dry_run=dry_run)
            completed = subprocess.run(
                command,
                cwd=source_dir,
                stdin=subprocess.DEVNULL,
                # git: never find a repository above the tree (the cache may sit in one).
                env={**os.environ, "GIT_CEILING_DIRECTORIES": str(source_dir.parent)},
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
            if completed.returncode != 0:
                detail = (completed.stdout + completed.stderr).strip().splitlines()
                reason = detail[-1] if detail else f"{tool} exited with {completed.returncode}"
                raise PatchError(
                    f"patch {patch} does not apply to {source_dir.name}: {reason}", patch
                )
        logger.info("applied %s to %s", patch.name, source_dir.name)


def _tool() -> str:
    for tool in ("patch", "git"):
        found = shutil.which(tool)
        if found:
            return found
    raise ConfigError("applying patches needs `patch` or `git` on PATH; install one of them")


def _command(tool: str, patch: Path, *, dry_run: bool) -> list[str]:
    if Path(tool).name.startswith("git"):
        # --unsafe-paths is not given: a patch may only change files inside the tree.
        check = ["--check"] if dry_run else []
        return [tool, "apply", "-p1", *check, str(patch.absolute())]
    dry = ["--dry-run"] if dry_run else []
    return [
        tool,
        "-p1",
        "--batch",
        "--forward",
        "--no-backup-if-mismatch",
        "--reject-file=-",
        *dry,
        "--input",
        str(patch.absolute()),
    ]
