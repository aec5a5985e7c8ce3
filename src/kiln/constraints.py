"""Constraints files, read as the installer reads them, once.

A constraints file may include others (``-c inner.txt``, ``-r more.txt``,
``--constraint=...``, ``--requirement ...``; a relative path is taken from the
including file's directory, as pip and uv do), and its lines may name local
artifacts (``name @ file:///...``, ``./wheels/x.whl``; relative to the current
directory, as pip and uv take them). A cached environment is keyed on all of
that content (:func:`constraint_inputs`, :func:`local_input`), so a changed
pin in an included file, or a rebuilt local wheel, is a new environment.

The user's files are read exactly once (:func:`read_constraints`): a pipe
(``-c <(...)``) can only be read once, and a file edited during the build
must not give the installer other content than the key was made from. The
run then works from copies (:meth:`ConstraintFiles.write`), includes
rewritten to point at the copies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kiln.errors import UsageError

# The options that make pip and uv read another file, with the value separate or
# after "=" (long) or attached (short).
_INCLUDE_OPTIONS = ("-c", "--constraint", "-r", "--requirement")
# pip's comment rule: "#" at the start of a line or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")
# Not worth reading for a digest: version control data and bytecode.
_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz")


@dataclass(frozen=True)
class ConstraintFile:
    """One file as read: where it was, its bytes, and the files it includes (by index)."""

    path: Path
    data: bytes
    includes: tuple[tuple[int, str, int], ...]  # (line number, option, index of the file)


@dataclass(frozen=True)
class ConstraintFiles:
    """The constraints files named on the command line and everything they include."""

    files: tuple[ConstraintFile, ...]
    top: tuple[int, ...]  # the indexes of the files named on the command line

    def write(self, directory: Path) -> list[Path]:
        """Write the files into ``directory`` (includes pointing at the copies);
        return the copies of the top-level ones, in order."""
        if not self.files:
            return []
        directory.mkdir(parents=True, exist_ok=True)
        names = [_copy_name(index, file.path) for index, file in enumerate(self.files)]
        for index, file in enumerate(self.files):
            (directory / names[index]).write_bytes(_rewrite(file, names))
        return [directory / names[index] for index in self.top]


def read_constraints(paths: Sequence[Path]) -> ConstraintFiles:
    """Read each constraints file and each file it includes, once; a file that
    cannot be read is a UsageError naming it."""
    files: list[ConstraintFile] = []
    seen: dict[Path, int] = {}

    def read(path: Path, included_by: Path | None) -> int:
        key = Path(os.path.abspath(path))  # noqa: PTH100 (a /dev/fd path must stay itself)
        if key in seen:
            return seen[key]
        data = _read_once(path, included_by)
        index = len(files)
        seen[key] = index
        files.append(ConstraintFile(path, data, ()))
        includes = []
        for number, option, target in _includes(data):
            if _is_url(target):
                continue  # read by the installer itself; keyed by the line's text
            includes.append((number, option, read(_included_path(path, target), path)))
        files[index] = ConstraintFile(path, data, tuple(includes))
        return index

    top = tuple(read(Path(path), None) for path in paths)
    return ConstraintFiles(tuple(files), top)


def constraint_inputs(paths: Sequence[Path]) -> tuple[list[bytes], list[str]]:
    """The content of every file the installer reads for ``paths`` (includes
    followed), and the local artifacts their lines name."""
    found = read_constraints(paths)
    local: list[str] = []
    for file in found.files:
        local += [
            target for line in _lines(file.data) if (target := local_target(line)) is not None
        ]
    return [file.data for file in found.files], local


def local_target(requirement: str) -> str | None:
    """The local file or directory a requirement or constraints line names, or None.

    ``name @ file:///path``, ``name @ ./path`` and a bare path (``./x.whl``,
    ``/abs/dir``); relative paths from the current directory, as installers take them.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    # Per-requirement options (--hash=...) follow the requirement in a file.
    text = requirement.split(" --", maxsplit=1)[0].strip()
    if not text or text.startswith("-"):
        return None
    try:
        url = Requirement(text).url
    except InvalidRequirement:
        # A bare path: the installer reads it when it looks like one.
        looks_like_path = text.startswith((".", "/", "~")) or text.endswith(_ARCHIVE_SUFFIXES)
        url = text.split(";")[0].strip() if looks_like_path else None
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme and len(parts.scheme) > 1:
        return None  # https://, git+https://: not on this machine
    return os.path.abspath(Path(url).expanduser())  # noqa: PTH100


def local_input(target: str) -> bytes:
    """What the key records for a local artifact: a regular file's content; for a
    directory, the names, sizes and modification times of the files in it
    (version control data and bytecode left out); a marker when it is missing."""
    path = Path(target)
    try:
        if path.is_dir():
            return b"dir\0" + b"".join(_tree_stat(path))
        return b"file\0" + path.read_bytes()
    except OSError:
        return b"missing"


def _tree_stat(root: Path) -> Iterator[bytes]:
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIPPED_DIRS:
                    stack.append(Path(entry.path))
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            relative = os.path.relpath(entry.path, root)
            yield f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode()


def _read_once(path: Path, included_by: Path | None) -> bytes:
    where = f"constraint file {path}" + (f" (included by {included_by})" if included_by else "")
    if path.is_dir():
        raise UsageError(f"{where} is a directory, not a constraints file")
    try:
        with path.open("rb") as stream:  # a pipe works too: read whole, once
            return stream.read()
    except FileNotFoundError:
        raise UsageError(f"{where} does not exist") from None
    except OSError as error:
        raise UsageError(f"{where} cannot be read: {error.strerror or error}") from error


def _lines(data: bytes) -> Iterator[str]:
    for raw in data.splitlines():
        line = _COMMENT.sub("", raw.decode("utf-8", "replace")).strip()
        if line:
            yield line


def _includes(data: bytes) -> Iterator[tuple[int, str, str]]:
    """(line number, option, target) for each line that includes another file."""
    # Split as bytes, as _rewrite does, so that line numbers agree.
    for number, raw in enumerate(data.splitlines()):
        found = _include(_COMMENT.sub("", raw.decode("utf-8", "replace")).strip())
        if found is not None:
            yield number, *found


def _include(line: str) -> tuple[str, str] | None:
    words = line.split()
    if not words:
        return None
    first = words[0]
    if first in _INCLUDE_OPTIONS:
        return (first, words[1]) if len(words) > 1 else None
    for option in ("--constraint", "--requirement"):
        if first.startswith(option + "="):
            return option, first[len(option) + 1 :]
    if first[:2] in ("-c", "-r") and len(first) > 2 and not first.startswith("--"):
        # pip takes the rest as the path; uv also skips an "=" ("-c=inner.txt").
        return first[:2], first[2:].removeprefix("=")
    return None


def _included_path(including: Path, target: str) -> Path:
    if urlsplit(target).scheme == "file":
        return Path(unquote(urlsplit(target).path))
    return including.parent / target


def _is_url(target: str) -> bool:
    scheme = urlsplit(target).scheme
    return len(scheme) > 1 and scheme != "file"


def _copy_name(index: int, path: Path) -> str:
    # Short and without spaces: installers split an include line at whitespace.
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)[:40] or "constraints"
    return f"{index}-{stem}"


def _rewrite(file: ConstraintFile, names: Sequence[str]) -> bytes:
    """The file's bytes, each include line now naming the copy (beside it)."""
    if not file.includes:
        return file.data
    lines = file.data.splitlines(keepends=True)
    for number, option, target in file.includes:
        ending = b"\r\n" if lines[number].endswith(b"\r\n") else b"\n"
        lines[number] = f"{option} {names[target]}".encode() + ending
    return b"".join(lines)
