"""Getting artifacts into the output directory safely.

The backend writes into a staging directory inside the output directory, so
the final move is a rename on one filesystem: a reader of the output directory
sees a finished artifact or none, and an existing file is only ever replaced by
a complete one.

Each build step gets a staging directory of its own, with a new random name
(``.kiln-staging-XXXXXXXX``), so any number of runs can share an output
directory whatever caches they use. A run holds an exclusive lock on its
staging directory (``flock`` on the directory itself) for as long as it uses
it; the operating system drops the lock when the run dies. A staging directory
nobody holds is a dead run's leftover, and the next run of the same user removes
it. One that cannot be locked (or is not a directory, or is another user's) is
left alone: only what is provably dead is removed, and never through a symbolic
link.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kiln.errors import BadArtifactError, UsageError
from kiln.removal import allow_owner, remove_tree, user_id
from kiln.request import SDIST
from kiln.result import Artifact

logger = logging.getLogger("kiln")

STAGING_PREFIX = ".kiln-staging-"
# Opens a directory, never through a symlink in its last component.
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def refuse_outdir_in_cache(outdir: Path, cache_dir: Path) -> None:
    """Refuse an output directory inside kiln's cache, which kiln empties and prunes."""
    real_outdir = Path(os.path.realpath(outdir))
    real_cache = Path(os.path.realpath(cache_dir))
    if _is_wheelhouse_job_dir(real_outdir, real_cache):
        return
    if real_outdir.is_relative_to(real_cache) or _is_below(real_outdir, real_cache):
        raise UsageError(
            f"output directory {outdir} is inside kiln's cache directory {cache_dir}, whose "
            "contents kiln empties and prunes; choose an output directory outside it (-o)"
        )


def _is_wheelhouse_job_dir(outdir: Path, cache_dir: Path) -> bool:
    """Whether ``outdir`` is a wheelhouse job's own output, inside its run's directory
    in the cache: the run holds that directory's lock while it lives (so kiln cache
    clean spares it) and copies each wheel out before it removes it."""
    from kiln.layout import WHEELHOUSE_RUNS

    try:
        relative = outdir.relative_to(cache_dir / WHEELHOUSE_RUNS)
    except ValueError:
        return False
    parts = relative.parts
    return len(parts) == 4 and parts[0].startswith("run-") and parts[1] == "jobs"


def _is_below(path: Path, directory: Path) -> bool:
    """Whether ``path``, or a directory above it, is ``directory`` itself: the same
    directory may have two names (a bind mount) that no path comparison sees."""
    try:
        target = directory.stat()
    except OSError:
        return False  # not made yet: only its name can be compared
    for candidate in (path, *path.parents):
        try:
            status = candidate.stat()
        except OSError:
            continue  # an outdir not made yet
        if (status.st_dev, status.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


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
def staging_dir(outdir: Path) -> Iterator[Path]:
    """A new hidden directory in ``outdir`` for the backend to write into, held by
    this run and always removed; dead runs' leftovers are removed first."""
    remove_dead_staging(outdir)
    path, fd = _new_staging(outdir)
    try:
        yield path
    finally:
        try:
            error = remove_tree(path)
            if error is not None:
                logger.warning("could not remove the staging directory %s: %s", path, error)
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock, after the directory is gone


def remove_dead_staging(outdir: Path) -> None:
    """Remove the staging directories in ``outdir`` that no live run holds.

    Only real directories of this user's whose lock this process gets are removed;
    a symlink or a file with the name, a directory another user owns, or one that
    cannot be locked, is left as it is.
    """
    if sys.platform == "win32":  # pragma: no cover - no locks on directories: none is dead
        return
    try:
        with os.scandir(outdir) as scan:
            names = [entry.name for entry in scan if entry.name.startswith(STAGING_PREFIX)]
    except OSError:
        return
    for name in names:
        path = outdir / name
        fd = _open_directory(path, make_readable=True)
        if fd is None:
            continue
        try:
            # Another user's (a shared outdir such as /tmp/dist) is theirs to remove,
            # even for root: kiln only removes what its own runs left.
            if os.fstat(fd).st_uid != user_id():
                continue
            if _try_lock(fd) and _still_at(fd, path):
                error = remove_tree(path)
                if error is None:
                    logger.debug("removed %s, left by a kiln run that is gone", path)
                else:
                    logger.debug("could not remove %s, left by a kiln run: %s", path, error)
        finally:
            os.close(fd)


def _new_staging(outdir: Path) -> tuple[Path, int | None]:
    """A new staging directory and the descriptor holding its lock (None where
    directories cannot be locked: then it is unique, but never cleaned by others)."""
    for _ in range(100):
        path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=outdir))
        fd = _open_directory(path)
        if fd is None:
            if not os.path.lexists(path):
                continue  # another run took it for a leftover before this one locked it
            return path, None
        locked = _try_lock(fd)
        if locked is None:
            os.close(fd)
            return path, None
        if locked and _still_at(fd, path):
            return path, fd
        # Another run locked it first, taking it for a leftover, and is removing it.
        os.close(fd)
    raise UsageError(f"cannot create a staging directory in output directory {outdir}")


def _open_directory(path: Path, *, make_readable: bool = False) -> int | None:
    """A descriptor for the directory ``path`` itself (not a link), or None."""
    try:
        return os.open(path, _DIRECTORY_FLAGS)
    except PermissionError:
        if not make_readable or not allow_owner(path):
            return None
    except OSError:
        return None
    try:
        return os.open(path, _DIRECTORY_FLAGS)
    except OSError:
        return None


def _try_lock(fd: int) -> bool | None:
    """Lock ``fd`` exclusively without waiting: False if a live process holds it,
    None where this system or file system cannot lock a directory."""
    if sys.platform == "win32":  # pragma: no cover - no directory descriptors there
        return None
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None  # e.g. NFS, which cannot lock a directory opened read-only
    return True


def _still_at(fd: int, path: Path) -> bool:
    """Whether ``path`` is still the directory open at ``fd`` (not removed or replaced)."""
    try:
        held, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(there.st_mode) and (held.st_dev, held.st_ino) == (
        there.st_dev,
        there.st_ino,
    )


def check_artifact(
    staging: Path, name: str, distribution: str, hook: str, log_path: Path | None
) -> Path:
    """The file ``hook`` said it wrote, if it is a regular file in ``staging`` (not a
    link to one anywhere) and has the right kind of name."""
    expected = (".tar.gz", ".zip") if distribution == SDIST else (".whl",)
    problem = None
    if not name or Path(name).name != name:
        problem = f"returned {name!r}, which is not a plain file name"
    elif not name.endswith(expected):
        problem = (
            f"returned {name!r}, which is not a {distribution} file name ({' or '.join(expected)})"
        )
    elif distribution != SDIST and not _valid_wheel_name(name):
        problem = f"returned {name!r}, which is not a valid wheel file name"
    elif not _is_real_directory(staging):
        problem = f"replaced the directory it was to write into ({staging})"
    else:
        problem = _not_a_written_file(staging / name, name)
    if problem is not None:
        raise BadArtifactError(
            f"the build backend's {hook} hook {problem}", hook=hook, log_path=log_path
        )
    return staging / name


def _not_a_written_file(path: Path, name: str) -> str | None:
    """Why ``path`` is not a file the hook wrote, or None if it is one."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return f"returned {name!r}, but no such file was written"
    except OSError as error:
        return f"returned {name!r}, which cannot be read: {error.strerror or error}"
    if stat.S_ISLNK(status.st_mode):
        # Publishing it would publish a link: dangling once staging goes, or to a file
        # outside staging that the artifact would then not be.
        with contextlib.suppress(OSError):
            return f"returned {name!r}, which is a symbolic link to {path.readlink()}"
        return f"returned {name!r}, which is a symbolic link"
    if not stat.S_ISREG(status.st_mode):
        return f"returned {name!r}, which is not a regular file"
    return None


def _is_real_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def publish(staged: Path, outdir: Path, distribution: str) -> Artifact:
    """Move a checked artifact from staging into ``outdir`` in one rename."""
    target = outdir / staged.name
    try:
        staged.replace(target)
    except OSError as error:
        raise UsageError(
            f"cannot move {staged.name} into output directory {outdir}: "
            f"{target}: {error.strerror or error}"
        ) from error
    return Artifact.from_file(target, distribution)


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
