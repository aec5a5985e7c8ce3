"""Getting artifacts into the output directory safely.

The backend writes into a staging directory inside the output directory, so
the final move is a rename on one filesystem: a reader of the output directory
sees a finished artifact or none, and an existing file is only ever replaced by
a complete one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kiln.errors import BadArtifactError, UsageError
from kiln.request import SDIST
from kiln.result import Artifact

STAGING_PREFIX = ".kiln-staging-"


def prepare_outdir(outdir: Path) -> Path:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"output directory {outdir} exists and is not a directory") from None
    except OSError as error:
        raise UsageError(
            f"cannot create output directory {outdir}: {error.strerror or error}"
        ) from error
    if not os.access(outdir, os.W_OK):
        raise UsageError(f"output directory {outdir} is not writable")
    return outdir


@contextlib.contextmanager
def staging_dir(outdir: Path, label: str | None = None) -> Iterator[Path]:
    """A hidden directory in ``outdir`` for the backend to write into; always removed.

    With ``label`` (the caller holds the project's lock) its name is the same
    every build, so no path a backend sees changes from one build to the next.
    """
    if label is None:
        path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=outdir))
    else:
        path = outdir / f"{STAGING_PREFIX}{label}"
        shutil.rmtree(path, ignore_errors=True)  # left by a crashed build
        path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def check_artifact(staging: Path, name: str, kind: str, hook: str, log_path: Path | None) -> Path:
    """The file ``hook`` said it wrote, if it exists and has the right kind of name."""
    expected = (".tar.gz", ".zip") if kind == SDIST else (".whl",)
    problem = None
    if not name or Path(name).name != name:
        problem = f"returned {name!r}, which is not a plain file name"
    elif not name.endswith(expected):
        problem = f"returned {name!r}, which is not a {kind} file name ({' or '.join(expected)})"
    elif kind != SDIST and not _valid_wheel_name(name):
        problem = f"returned {name!r}, which is not a valid wheel file name"
    elif not (staging / name).is_file():
        problem = f"returned {name!r}, but no such file was written"
    if problem is not None:
        raise BadArtifactError(
            f"the build backend's {hook} hook {problem}", hook=hook, log_path=log_path
        )
    return staging / name


def publish(staged: Path, outdir: Path, kind: str) -> Artifact:
    """Move a checked artifact from staging into ``outdir`` in one rename."""
    target = outdir / staged.name
    staged.replace(target)
    return Artifact.from_file(target, kind)


def _valid_wheel_name(name: str) -> bool:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        parse_wheel_filename(name)
    except InvalidWheelFilename:
        return False
    return True


def check_env_dir_left_out(staged: Path, env_dir: Path, source_dir: Path, hook: str) -> None:
    """Refuse an artifact that packed the user's --env-dir, which sits inside the project."""
    if not env_dir.is_relative_to(source_dir):
        return
    inside = env_dir.relative_to(source_dir).as_posix() + "/"
    names = _archive_names(staged)
    # sdists put everything under one top-level directory; wheels do not.
    packed = [n for n in names if n.startswith(inside) or n.partition("/")[2].startswith(inside)]
    if packed:
        raise UsageError(
            f"the build environment {env_dir} is inside the project and the backend's {hook} "
            f"hook packed it into {staged.name} (e.g. {packed[0]}); choose an --env-dir "
            f"outside {source_dir}, or exclude it in the project's build configuration"
        )


def _archive_names(archive: Path) -> list[str]:
    import tarfile
    import zipfile

    if archive.name.endswith(".zip") or archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as opened:
            return opened.namelist()
    with tarfile.open(archive) as opened:
        return opened.getnames()
