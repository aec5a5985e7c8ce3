"""Sdists on the local disk, checked, and what they need to build.

:func:`fetch` brings a distribution file (https://, http:// or file://) into a
content-addressed bucket of the kiln cache, ``sdists-v1/<sha256>/<filename>``,
streamed and hashed on the way; a file whose hash is not the one the lock, the
index or a ``--hash`` gave is an error naming both, and nothing of it is kept.

:func:`build_requirements` reads an sdist's static ``[build-system].requires``
from the archive, without unpacking the rest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
import tarfile
import zipfile
from collections.abc import Collection
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


def _pyproject_bytes(sdist: Path) -> bytes | None:
    """The top directory's pyproject.toml, or None when the sdist has none."""
    name = sdist.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as archive:
                member = _pyproject_member(archive.namelist())
                return archive.read(member) if member is not None else None
        with tarfile.open(sdist, "r:*") as tar:
            for info in tar:
                if info.isreg() and _is_top_pyproject(info.name):
                    stream = tar.extractfile(info)
                    return stream.read() if stream is not None else None
            return None
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise SdistError(f"sdist {sdist.name} cannot be read: {error}") from error


def _pyproject_member(names: list[str]) -> str | None:
    return next((name for name in names if _is_top_pyproject(name)), None)


def _is_top_pyproject(name: str) -> bool:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return len(parts) == 2 and parts[1] == "pyproject.toml"
