"""A project's build configuration: the ``[build-system]`` table, validated.

Everything here runs before any environment is made, so a mistake in
``pyproject.toml`` costs the user nothing but the error message.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import ConfigError, UsageError
from kiln.layout import absolute_source, source_label

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

logger = logging.getLogger(__name__)

# What pip and pypa/build assume for projects that predate PEP 517/518.
LEGACY_REQUIRES = ("setuptools>=40.8.0",)
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"

KNOWN_KEYS = frozenset({"requires", "build-backend", "backend-path"})
# Misspellings seen in the wild, and the key each one was meant to be.
LIKELY_TYPOS = {
    "build_backend": "build-backend",
    "buildbackend": "build-backend",
    "backend": "build-backend",
    "build-backends": "build-backend",
    "backend_path": "backend-path",
    "backend-paths": "backend-path",
    "requirements": "requires",
    "require": "requires",
    "requirement": "requires",
    "dependencies": "requires",
}

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_BACKEND_RE = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*(:{_IDENTIFIER}(\.{_IDENTIFIER})*)?$")


@dataclass(frozen=True)
class BuildSystem:
    """The validated ``[build-system]`` table of one project."""

    requires: tuple[str, ...]
    build_backend: str
    backend_path: tuple[str, ...] = ()
    # True when the project has no build-backend and gets setuptools' legacy one.
    legacy: bool = False


@dataclass(frozen=True)
class Project:
    """A source tree kiln can hand to a build backend."""

    source_dir: Path
    build_system: BuildSystem

    @classmethod
    def load(cls, source_dir: Path) -> Project:
        source_dir = source_dir.resolve()
        if not source_dir.is_dir():
            raise UsageError(f"source directory {source_dir} does not exist")
        return cls(source_dir, read_build_system(source_dir))


def read_build_system(source_dir: Path) -> BuildSystem:
    """Read and validate ``source_dir``'s build-system table (PEP 517/518)."""
    pyproject = source_dir / "pyproject.toml"
    if not pyproject.is_file():
        _require_legacy_entry_point(source_dir, pyproject)
        return BuildSystem(LEGACY_REQUIRES, LEGACY_BACKEND, legacy=True)
    data = _load_toml(pyproject)
    table = data.get("build-system")
    if table is None:
        _require_legacy_entry_point(source_dir, pyproject)
        return BuildSystem(LEGACY_REQUIRES, LEGACY_BACKEND, legacy=True)
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [build-system] must be a table")
    _warn_about_unknown_keys(pyproject, table)

    if "requires" not in table:
        # PEP 518 makes the key mandatory; pip and build refuse too.
        raise ConfigError(f"{pyproject}: [build-system] has no 'requires' key")
    requires = validate_requires(pyproject, table["requires"])

    backend = table.get("build-backend")
    if backend is None:
        # PEP 517: a table without build-backend means setuptools' legacy path,
        # with the project's own requirements.
        return BuildSystem(requires, LEGACY_BACKEND, legacy=True)
    if not isinstance(backend, str) or not _BACKEND_RE.match(backend):
        raise ConfigError(
            f"{pyproject}: build-system.build-backend must be a string of the form "
            f"'module' or 'module:object', got {backend!r}"
        )
    backend_path = _validate_backend_path(pyproject, source_dir, table.get("backend-path", []))
    return BuildSystem(requires, backend, backend_path)


def load_pyproject(source_dir: Path) -> dict[str, Any]:
    """The parsed pyproject.toml of ``source_dir``, or {} when it has none."""
    pyproject = source_dir / "pyproject.toml"
    return _load_toml(pyproject) if pyproject.is_file() else {}


def _load_toml(pyproject: Path) -> dict[str, Any]:
    try:
        with pyproject.open("rb") as stream:
            data: dict[str, Any] = tomllib.load(stream)
            return data
    except tomllib.TOMLDecodeError as error:
        # The parser's message already ends in "(at line L, column C)".
        raise ConfigError(f"{pyproject}: invalid TOML: {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{pyproject}: cannot be read: {error}") from error


def _require_legacy_entry_point(source_dir: Path, pyproject: Path) -> None:
    if not (source_dir / "setup.py").is_file() and not (source_dir / "setup.cfg").is_file():
        where = "has no [build-system] table" if pyproject.is_file() else "has no pyproject.toml"
        raise ConfigError(
            f"{source_dir} {where} and no setup.py or setup.cfg: "
            "it does not look like a Python project"
        )


def _warn_about_unknown_keys(pyproject: Path, table: dict[str, Any]) -> None:
    for key in table:
        if key in KNOWN_KEYS:
            continue
        meant = LIKELY_TYPOS.get(key.lower())
        if meant is not None:
            logger.warning(
                "%s: [build-system] key '%s' is unknown; did you mean '%s'?", pyproject, key, meant
            )
        else:
            logger.debug("%s: ignoring unknown [build-system] key '%s'", pyproject, key)


def validate_requires(pyproject: Path, requires: object) -> tuple[str, ...]:
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(requires, list) or not all(isinstance(item, str) for item in requires):
        raise ConfigError(
            f"{pyproject}: build-system.requires must be a list of strings, got {requires!r}"
        )
    for item in requires:
        try:
            Requirement(item)
        except InvalidRequirement as error:
            raise ConfigError(
                f"{pyproject}: build-system.requires holds an invalid requirement {item!r}: {error}"
            ) from error
    return tuple(requires)


def _validate_backend_path(
    pyproject: Path, source_dir: Path, backend_path: object
) -> tuple[str, ...]:
    if not isinstance(backend_path, list) or not all(isinstance(p, str) for p in backend_path):
        raise ConfigError(
            f"{pyproject}: build-system.backend-path must be a list of strings, "
            f"got {backend_path!r}"
        )
    for entry in backend_path:
        resolved = (source_dir / entry).resolve()
        if Path(entry).is_absolute() or not resolved.is_relative_to(source_dir):
            raise ConfigError(
                f"{pyproject}: build-system.backend-path entry {entry!r} is outside the project"
            )
        if not resolved.is_dir():
            raise ConfigError(
                f"{pyproject}: build-system.backend-path entry {entry!r} does not exist"
            )
    return tuple(backend_path)


@dataclass(frozen=True)
class SourceInput:
    """What the user named as SRC: a project directory or an sdist archive."""

    path: Path
    is_archive: bool

    @classmethod
    def resolve(cls, path: Path) -> SourceInput:
        from kiln.sdist import is_sdist_archive

        path = absolute_source(path)
        if not path.exists():
            raise UsageError(f"source {path} does not exist")
        if path.is_dir():
            return cls(path, is_archive=False)
        if is_sdist_archive(path):
            return cls(path, is_archive=True)
        raise UsageError(
            f"source {path} is neither a project directory nor an sdist archive (.tar.gz or .zip)"
        )

    @property
    def default_outdir(self) -> Path:
        return self.path.parent if self.is_archive else self.path / "dist"

    @property
    def label(self) -> str:
        """A short name for logs: the directory's name or the archive's stem."""
        return source_label(self.path)

    def project_dir(self, unpack_into: Path) -> Path:
        """The directory to build from, unpacking an archive into ``unpack_into``."""
        if not self.is_archive:
            return self.path
        from kiln.sdist import unpack_sdist

        return unpack_sdist(self.path, unpack_into)
