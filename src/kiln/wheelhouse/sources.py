"""Sdists on the local disk, checked, and what they need to build.

:func:`fetch` brings a distribution file (https://, http:// or file://) into a
content-addressed bucket of the kiln cache, ``sdists-v1/<sha256>/<filename>``,
streamed and hashed on the way; a file whose hash is not the one the lock, the
index or a ``--hash`` gave is an error naming both, and nothing of it is kept.

:func:`build_requirements` reads an sdist's static ``[build-system].requires``
from the archive, without unpacking the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import sys
import tarfile
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from kiln.errors import EXIT_ENVIRONMENT, ConfigError, KilnError, SdistError, UsageError
from kiln.layout import SDISTS
from kiln.wheelhouse.model import FileRef

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
# Seconds a download may stall before it fails.
_TIMEOUT = 60


class FetchError(KilnError):
    """A distribution file could not be read or downloaded."""

    exit_code = EXIT_ENVIRONMENT


class HashMismatchError(UsageError):
    """A file's sha256 is not the one it was promised to have."""


def fetch(ref: FileRef, cache: Path, *, allowed: Collection[str] = ()) -> Path:
    """The file ``ref`` names, in ``cache``'s ``sdists-v1`` bucket.

    ``cache``: the kiln cache directory. ``allowed``: sha256 values the file may
    have (the inputs' ``--hash``); the file must also match ``ref.sha256`` when
    it is given. A file already in the bucket is not read again.
    """
    bucket = cache / SDISTS
    if ref.sha256 is not None:
        _check_allowed(ref, ref.sha256, allowed)
        kept = bucket / ref.sha256 / _safe_name(ref.filename)
        if kept.is_file():
            return kept
    bucket.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Named after this process and a random part: concurrent fetches never share one.
    partial = bucket / f".{_safe_name(ref.filename)}.{os.getpid()}.{secrets.token_hex(4)}.partial"
    try:
        digest = _download(ref, partial)
        if ref.sha256 is not None and digest != ref.sha256.lower():
            raise HashMismatchError(
                f"{ref.filename} from {ref.url} has sha256 {digest}, "
                f"but {ref.sha256.lower()} was expected"
            )
        _check_allowed(ref, digest, allowed)
        directory = bucket / digest
        directory.mkdir(mode=0o700, exist_ok=True)
        kept = directory / _safe_name(ref.filename)
        partial.replace(kept)
    finally:
        partial.unlink(missing_ok=True)
    logger.debug("fetched %s into %s", ref.url, kept)
    return kept


def kept_sha256(kept: Path) -> str:
    """The sha256 of a file :func:`fetch` returned: its directory's name (the
    bucket is content-addressed, and checked on the way in)."""
    return kept.parent.name


# What an sdist's archive says about its build, kept beside it: reading it from a
# large tar.gz takes a tenth of a second, which a no-change run should not pay.
BUILD_FACTS = "build-facts.json"
_BUILD_FACTS_FORMAT = 2
# Sources a compiler turns into an extension: such a build is long, and starts first.
_COMPILED_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".rs", ".f90", ".f")


@dataclass(frozen=True)
class BuildFacts:
    """What a fetched sdist's archive says about building it."""

    # :func:`build_requirements`.
    requires: tuple[str, ...]
    # :func:`self_build_requirements`.
    self_requires: tuple[str, ...]
    # It holds C, C++, Cython, Rust or Fortran sources.
    compiled: bool


def build_facts(sdist: Path) -> BuildFacts:
    """The :class:`BuildFacts` of a fetched sdist, read from its archive once and
    then from the note kept beside it."""
    from kiln.jsonfiles import read_json_object, write_json

    note = sdist.parent / BUILD_FACTS
    kept = read_json_object(note)
    if kept.get("format") == _BUILD_FACTS_FORMAT and kept.get("sdist") == sdist.name:
        requires, self_requires = kept.get("requires"), kept.get("self_requires")
        if isinstance(requires, list) and isinstance(self_requires, list):
            return BuildFacts(
                tuple(str(r) for r in requires),
                tuple(str(r) for r in self_requires),
                kept.get("compiled") is True,
            )
    facts = BuildFacts(
        tuple(build_requirements(sdist)),
        tuple(self_build_requirements(sdist)),
        _has_compiled_sources(sdist),
    )
    record = {
        "format": _BUILD_FACTS_FORMAT,
        "sdist": sdist.name,
        "requires": list(facts.requires),
        "self_requires": list(facts.self_requires),
        "compiled": facts.compiled,
    }
    with contextlib.suppress(OSError):  # a read-only cache still builds
        write_json(note, record, private=True)
    return facts


def _has_compiled_sources(sdist: Path) -> bool:
    try:
        if sdist.name.lower().endswith(".zip"):
            with zipfile.ZipFile(sdist) as archive:
                names = archive.namelist()
        else:
            with tarfile.open(sdist, "r:*") as tar:
                names = tar.getnames()
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile):
        return False  # build_requirements has said what is wrong with it
    return any(name.lower().endswith(_COMPILED_SUFFIXES) for name in names)


def _check_allowed(ref: FileRef, digest: str, allowed: Collection[str]) -> None:
    wanted = {value.lower() for value in allowed}
    if wanted and digest.lower() not in wanted:
        raise HashMismatchError(
            f"{ref.filename} has sha256 {digest.lower()}, which is not among the "
            f"--hash values given for it ({', '.join(sorted(wanted))})"
        )


def _download(ref: FileRef, partial: Path) -> str:
    """Copy the file to ``partial`` (owner-only); return its sha256."""
    digest = hashlib.sha256()
    with _open(ref) as source, _create(partial) as target:
        try:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                target.write(chunk)
        except OSError as error:
            raise FetchError(f"cannot read {ref.url}: {error}") from error
    return digest.hexdigest()


def _open(ref: FileRef) -> IO[bytes]:
    parts = urlsplit(ref.url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        try:
            return path.open("rb")
        except OSError as error:
            raise FetchError(f"cannot read {ref.filename} at {path}: {error}") from error
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"cannot fetch {ref.url}: only https://, http:// and file:// are read")
    import urllib.error
    import urllib.request

    try:
        response: IO[bytes] = urllib.request.urlopen(ref.url, timeout=_TIMEOUT)
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"cannot download {ref.filename} from {ref.url}: {error}") from error
    return response


def _create(path: Path) -> IO[bytes]:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _safe_name(filename: str) -> str:
    name = filename.replace("/", "_").replace("\\", "_")
    if name in ("", ".", ".."):
        raise UsageError(f"distribution file name {filename!r} is not a file name")
    return name


def build_requirements(sdist: Path) -> list[str]:
    """The sdist's ``[build-system].requires`` (validated as for a project
    directory), or setuptools' legacy default when it has no such table."""
    from kiln.project import LEGACY_REQUIRES, validate_requires

    label = Path(f"{sdist.name}/pyproject.toml")
    data = _pyproject_bytes(sdist)
    if data is None:
        return list(LEGACY_REQUIRES)
    try:
        table = tomllib.loads(data.decode("utf-8")).get("build-system")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{label}: invalid TOML: {error}") from error
    if table is None:
        return list(LEGACY_REQUIRES)
    if not isinstance(table, dict):
        raise ConfigError(f"{label}: [build-system] must be a table")
    if "requires" not in table:
        raise ConfigError(f"{label}: [build-system] has no 'requires' key")
    return list(validate_requires(label, table["requires"]))


def self_build_requirements(sdist: Path) -> list[str]:
    """What a self-hosting backend (``backend-path``: the project builds itself, as
    flit-core, hatchling and setuptools do) imports besides itself: the project's
    own runtime requirements, from PKG-INFO (extras left out). Empty for the rest.

    A backend asks for these through ``get_requires_for_build_wheel``, which only
    a build can answer; read here, they are built first with ``--build-deps source``.
    """
    data = _pyproject_bytes(sdist)
    try:
        table = tomllib.loads(data.decode("utf-8")).get("build-system") if data else None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []  # build_requirements reports it
    if not isinstance(table, dict) or not table.get("backend-path"):
        return []
    info = _top_file_bytes(sdist, "PKG-INFO")
    if info is None:
        return []
    from email.parser import BytesParser

    message = BytesParser().parsebytes(info, headersonly=True)
    return [
        requirement
        for requirement in message.get_all("Requires-Dist") or []
        if "extra" not in requirement.partition(";")[2]
    ]


def _pyproject_bytes(sdist: Path) -> bytes | None:
    """The top directory's pyproject.toml, or None when the sdist has none."""
    return _top_file_bytes(sdist, "pyproject.toml")


def _top_file_bytes(sdist: Path, filename: str) -> bytes | None:
    """The top directory's ``filename``, or None when the sdist has none."""
    name = sdist.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as archive:
                member = next((n for n in archive.namelist() if _is_top(n, filename)), None)
                return archive.read(member) if member is not None else None
        with tarfile.open(sdist, "r:*") as tar:
            for info in tar:
                if info.isreg() and _is_top(info.name, filename):
                    stream = tar.extractfile(info)
                    return stream.read() if stream is not None else None
            return None
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise SdistError(f"sdist {sdist.name} cannot be read: {error}") from error


def _is_top(name: str, filename: str) -> bool:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return len(parts) == 2 and parts[1] == filename
