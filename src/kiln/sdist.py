"""Safe unpacking of source distributions (a ``.tar.gz``, or a legacy ``.zip``).

kiln applies the rules of the PEP 706 ``data`` filter itself, to every member and
before anything is written, so an sdist is judged the same way on every Python
kiln supports, including patch releases that predate ``tarfile.data_filter``.
Where tarfile has the filter it is used as well, as a second line of defence.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiln.errors import SdistError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["SDIST_SUFFIXES", "is_sdist_archive", "unpack_sdist"]

SDIST_SUFFIXES: tuple[str, ...] = (".tar.gz", ".zip")

logger = logging.getLogger(__name__)

# Extraction filters (PEP 706) came in 3.12, backported to 3.10.12 and 3.11.4.
_HAS_FILTERS = hasattr(tarfile, "data_filter")
_USE_DATA_FILTER = _HAS_FILTERS
# A chain of symlinks this long is treated as a loop, and so as unsafe.
_MAX_LINK_HOPS = 40
# Zip symlinks keep their target as content; nothing sane is longer than PATH_MAX.
_MAX_LINK_LENGTH = 4096
_DRIVE = re.compile(r"[A-Za-z]:")
# What reading a corrupt archive can raise (zipfile: RuntimeError when encrypted).
_ARCHIVE_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    tarfile.TarError,
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
)
_SPECIAL_TAR = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}
_SPECIAL_ZIP = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}
# tarfile chowns members only when run as root: make that a no-op (keep our owner).
_OWNER = (os.geteuid(), os.getegid()) if hasattr(os, "geteuid") else (0, 0)

Parts = tuple[str, ...]


@dataclass(frozen=True)
class _Member:
    name: str  # as stored in the archive
    kind: str  # "file", "dir", "symlink" or "hardlink"
    target: str = ""  # link target, as stored


def is_sdist_archive(path: Path) -> bool:
    """Whether ``path`` is a file named like an sdist (``.tar.gz`` or ``.zip``)."""
    return path.name.lower().endswith(SDIST_SUFFIXES) and path.is_file()


def unpack_sdist(archive: Path, destination: Path, *, needs_pkg_info: bool = True) -> Path:
    """Extract ``archive`` into ``destination``; return its top-level directory.

    ``destination`` must not exist or be an empty directory. Every member is checked
    first; on any problem :class:`SdistError` is raised and nothing is left behind.
    ``needs_pkg_info=False``: the same checks for an archive of a project
    directory, which has no PKG-INFO.
    """
    label = f"sdist {archive.name}"
    name = archive.name.lower()
    if not name.endswith(SDIST_SUFFIXES):
        raise SdistError(f"{label} is not a .tar.gz or .zip archive")
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise SdistError(f"cannot unpack {label}: {destination} is not an empty directory")
    unpack = _unpack_zip if name.endswith(".zip") else _unpack_tar
    top = unpack(archive, destination, label, needs_pkg_info)
    logger.debug("unpacked %s into %s", archive, destination)
    return destination / top


def _unpack_tar(archive: Path, destination: Path, label: str, needs_pkg_info: bool) -> str:
    with contextlib.ExitStack() as stack:
        with _reading(label, ".tar.gz"):
            tar = stack.enter_context(tarfile.open(archive, "r:gz"))
            infos = tar.getmembers()
        top, paths = _validate(label, [_tar_member(label, info) for info in infos], needs_pkg_info)
        # An empty path is "." (the destination itself): nothing to extract.
        members = [_sanitized(info) for info, parts in zip(infos, paths, strict=True) if parts]
        with _extracting(label, destination):
            if _USE_DATA_FILTER:
                tar.extractall(destination, members, filter="data")
            elif _HAS_FILTERS:
                # Already checked; naming a filter only avoids 3.12+'s warning.
                tar.extractall(destination, members, filter="fully_trusted")
            else:
                tar.extractall(destination, members)
            # The data filter leaves directory modes to the umask; apply ours.
            for info in members:
                if info.isdir():
                    destination.joinpath(info.name).chmod(info.mode)
    return top


def _unpack_zip(archive: Path, destination: Path, label: str, needs_pkg_info: bool) -> str:
    with contextlib.ExitStack() as stack:
        with _reading(label, ".zip"):
            zf = stack.enter_context(zipfile.ZipFile(archive))
            infos = zf.infolist()
            members = [_zip_member(label, zf, info) for info in infos]
        top, paths = _validate(label, members, needs_pkg_info)
        with _extracting(label, destination):
            for info, member, parts in zip(infos, members, paths, strict=True):
                if parts:
                    _write_zip_member(zf, info, member, destination.joinpath(*parts))
    return top


def _tar_member(label: str, info: tarfile.TarInfo) -> _Member:
    if info.isreg():
        return _Member(info.name, "file")
    if info.isdir():
        return _Member(info.name, "dir")
    if info.issym():
        return _Member(info.name, "symlink", info.linkname)
    if info.islnk():
        return _Member(info.name, "hardlink", info.linkname)
    what = _SPECIAL_TAR.get(info.type, f"a special member (type {info.type!r})")
    raise SdistError(f"{label}: member {info.name!r} is {what}; only files, dirs and links allowed")


def _zip_member(label: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        if info.file_size > _MAX_LINK_LENGTH:
            raise SdistError(f"{label}: symlink member {info.filename!r} has an oversized target")
        target = zf.read(info).decode("utf-8", "surrogateescape")
        return _Member(info.filename, "symlink", target)
    if info.is_dir() or kind == stat.S_IFDIR:
        return _Member(info.filename, "dir")
    if kind in (0, stat.S_IFREG):
        return _Member(info.filename, "file")
    what = _SPECIAL_ZIP.get(kind, f"a special member (mode {kind:o})")
    raise SdistError(
        f"{label}: member {info.filename!r} is {what}; only files, dirs and links allowed"
    )


def _validate(label: str, members: list[_Member], needs_pkg_info: bool) -> tuple[str, list[Parts]]:
    """Apply the rules to every member; return the top-level name and members' paths."""
    lexical: list[tuple[Parts, list[Parts]]] = []
    for member in members:
        where = f"{label}: member {member.name!r}"
        if "\0" in member.name or "\0" in member.target:
            raise SdistError(f"{where} contains a NUL character")
        if _is_absolute(member.name):
            raise SdistError(f"{where} has an absolute path")
        walk = _walk(member.name)
        if walk is None:
            raise SdistError(f"{where} would be written outside the extraction directory")
        lexical.append(walk)
    tops = sorted({parts[0] for parts, _ in lexical if parts})
    if len(tops) != 1:
        found = ", ".join(repr(top) for top in tops) or "none"
        raise SdistError(f"{label}: expected one top-level directory, found {found}")
    top = tops[0]
    links = {w[0]: m.target for m, w in zip(members, lexical, strict=True) if m.kind == "symlink"}
    seen: dict[Parts, str] = {}
    for member, (parts, walked) in zip(members, lexical, strict=True):
        where = f"{label}: member {member.name!r}"
        if not parts and member.kind != "dir":
            raise SdistError(f"{where} has an empty path")
        # Writing through an archive's own symlink is how most tar attacks work.
        through = next((w for w in walked if w in links), None)
        if through is not None:
            raise SdistError(f"{where} would be written through symlink {'/'.join(through)!r}")
        if parts in seen and "symlink" in (member.kind, seen[parts]):
            raise SdistError(f"{where} occurs more than once and one copy is a symlink")
        if parts == (top,) and member.kind != "dir":
            raise SdistError(f"{label}: top-level entry {top!r} is not a directory")
        if member.kind == "symlink":
            resolved = _resolve(parts[:-1], member.target, links) if member.target else None
            if resolved is None or resolved[:1] != (top,):
                raise SdistError(
                    f"{where} is a symlink to {member.target!r}, which is outside {top}/"
                )
        elif member.kind == "hardlink":
            walk = None if _is_absolute(member.target) else _walk(member.target)
            if walk is None or walk[0][:1] != (top,):
                raise SdistError(f"{where} is a hard link to {member.target!r}, outside {top}/")
            if seen.get(walk[0]) not in ("file", "hardlink") or any(w in links for w in walk[1]):
                raise SdistError(
                    f"{where} is a hard link to {member.target!r}, not an earlier file"
                )
        if parts:
            seen[parts] = member.kind
    if needs_pkg_info and seen.get((top, "PKG-INFO")) != "file":
        raise SdistError(f"{label} has no PKG-INFO in {top}/; is it an sdist?")
    return top, [parts for parts, _ in lexical]


def _components(path: str) -> list[str]:
    # Backslashes count as separators: they are on Windows, and on POSIX
    # judging a name by the stricter reading is harmless.
    return [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]


def _is_absolute(path: str) -> bool:
    path = path.replace("\\", "/")
    return path.startswith("/") or _DRIVE.match(path) is not None


def _walk(path: str) -> tuple[Parts, list[Parts]] | None:
    """Normalise a relative path without touching the disk.

    Returns its parts and every directory passed through on the way, or None if
    it climbs above the extraction directory.
    """
    parts: list[str] = []
    walked: list[Parts] = []
    for part in _components(path):
        if parts:
            walked.append(tuple(parts))
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            return None
    return tuple(parts), walked


def _resolve(start: Parts, target: str, links: dict[Parts, str]) -> Parts | None:
    """Where a link to ``target`` in directory ``start`` leads once all is extracted.

    Follows the archive's own symlinks as the OS would; None if the result is
    outside the extraction directory (absolute targets included) or loops.
    """
    if _is_absolute(target):
        return None
    parts = list(start)
    pending = _components(target)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
        link = links.get(tuple(parts))
        if link is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS or _is_absolute(link):
                return None
            parts.pop()
            pending[:0] = _components(link)
    return tuple(parts)


def _file_mode(mode: int) -> int:
    # The data filter's rule: no setuid/setgid/sticky or group/other write; the
    # owner can read and write; only owner-executable files stay executable.
    mode &= 0o755
    if not mode & stat.S_IXUSR:
        mode &= 0o644
    return mode | 0o600


def _dir_mode(mode: int) -> int:
    return (mode & 0o755) | 0o700


def _sanitized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    clean = copy.copy(info)
    clean.mode = _dir_mode(info.mode) if info.isdir() else _file_mode(info.mode)
    clean.uid, clean.gid = _OWNER
    clean.uname = clean.gname = ""
    return clean


def _write_zip_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: _Member, path: Path
) -> None:
    mode = info.external_attr >> 16
    if member.kind == "dir":
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(_dir_mode(mode or 0o755))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if member.kind == "symlink":
        path.symlink_to(member.target)
        return
    with zf.open(info) as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    path.chmod(_file_mode(mode or 0o644))


@contextlib.contextmanager
def _reading(label: str, kind: str) -> Iterator[None]:
    try:
        yield
    except _ARCHIVE_ERRORS as exc:
        reason = str(exc) or type(exc).__name__
        raise SdistError(f"{label} is not a readable {kind} archive: {reason}") from exc


@contextlib.contextmanager
def _extracting(label: str, destination: Path) -> Iterator[None]:
    created = not destination.exists()
    try:
        destination.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException as exc:
        # Interrupted or failed: leave nothing half-extracted behind.
        _remove_extracted(destination, created)
        if isinstance(exc, _ARCHIVE_ERRORS):
            reason = str(exc) or type(exc).__name__
            raise SdistError(f"{label}: extracting into {destination} failed: {reason}") from exc
        raise


def _remove_extracted(destination: Path, created: bool) -> None:
    if created:
        shutil.rmtree(destination, ignore_errors=True)
        return
    for child in destination.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
