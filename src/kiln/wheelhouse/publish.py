"""The wheelhouse directory: claimed by one run at a time, wheels copied in whole.

kiln never removes or overwrites a file it did not put there: a manifest
(``.kiln-wheelhouse.json``) lists the wheels kiln wrote, and a wheel of the
same name that is not in it, with other content, is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from kiln.errors import UsageError

logger = logging.getLogger(__name__)

MANIFEST_NAME = ".kiln-wheelhouse.json"
LOCK_NAME = ".kiln-wheelhouse.lock"


@contextlib.contextmanager
def claimed_outdir(outdir: Path, cache_root: Path) -> Iterator[Path]:
    """``outdir`` made if needed and held by this run alone (a second run waits)."""
    from kiln.locks import FileLock
    from kiln.output import refuse_outdir_in_cache

    outdir = outdir.absolute()
    refuse_outdir_in_cache(outdir, cache_root)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"the wheelhouse {outdir} is a file, not a directory")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot make the wheelhouse directory {outdir}: {error}") from error
    lock = FileLock(outdir / LOCK_NAME)
    if not lock.acquire_exclusive(blocking=False):
        logger.warning("waiting for another kiln wheelhouse run writing to %s", outdir)
        lock.acquire_exclusive()
    try:
        yield outdir
    finally:
        lock.release()


def place_wheel(wheel: Path, outdir: Path, written: set[str]) -> Path:
    """Copy ``wheel`` into ``outdir`` whole (a partial file, then a rename)."""
    target = outdir / wheel.name
    if target.exists() and target.name not in written and not _same_file(target, wheel):
        raise UsageError(
            f"{target} is already there and kiln did not write it; "
            "move it away or choose another -o/--outdir"
        )
    partial = outdir / f".{wheel.name}.partial-{os.getpid()}"
    try:
        shutil.copyfile(wheel, partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    written.add(target.name)
    return target


# What kiln writes near the top of its own report and pins files.
REPORT_MARK = b'"kiln_version"'
PINS_MARK = b'created-by = "kiln"'


def refuse_foreign(path: Path, mark: bytes) -> None:
    """UsageError when ``path`` is there and is not kiln's (its start lacks ``mark``):
    the report and the pins file are rewritten each run, a user's file never."""
    try:
        with path.open("rb") as stream:
            start = stream.read(4096)
    except FileNotFoundError:
        return
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error}") from error
    if mark not in start:
        raise UsageError(
            f"{path} is already there and kiln did not write it; "
            "move it away or choose another -o/--outdir"
        )


def read_manifest(outdir: Path) -> set[str]:
    """The wheel names kiln wrote into ``outdir`` in earlier runs."""
    import json

    try:
        data = json.loads((outdir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    wheels = data.get("wheels") if isinstance(data, dict) else None
    return {w for w in wheels if isinstance(w, str)} if isinstance(wheels, list) else set()


def write_manifest(outdir: Path, written: set[str]) -> None:
    from kiln.jsonfiles import write_json

    present = sorted(name for name in written if (outdir / name).is_file())
    write_json(outdir / MANIFEST_NAME, {"format": 1, "wheels": present})


def _same_file(a: Path, b: Path) -> bool:
    import filecmp

    return filecmp.cmp(a, b, shallow=False)
