"""Installers: pip and uv, each installing requirements into a given interpreter.

Neither installer is configured by kiln beyond naming the target interpreter
and the user's constraints: index URLs, find-links, certificates and the rest
come from the user's own pip or uv configuration, unchanged.
"""

from __future__ import annotations

import configparser
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kiln.errors import EnvironmentSetupError, InstallerError, UsageError
from kiln.options import INSTALLER_CHOICES
from kiln.process import BuildLog, run_logged

logger = logging.getLogger(__name__)

# pip learned --python (install into another interpreter) in 22.3.
MINIMUM_PIP = (22, 3)

# Settings that would send pip's install somewhere other than the build
# environment; they are about location, not about where packages come from.
_PIP_LOCATION_VARIABLES = ("PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT")


class Installer(Protocol):
    """Installs requirements into the environment of a given Python interpreter."""

    name: str

    def install(
        self,
        python: Path,
        requirements: Sequence[str],
        *,
        constraints: Sequence[Path],
        log: BuildLog,
        env: Mapping[str, str],
        compile_bytecode: bool = False,
    ) -> None:
        """Install ``requirements`` for ``python``; raise InstallerError on failure.

        ``compile_bytecode`` asks for .pyc files up front, worth it for an
        environment that many builds will import from.
        """


class PipInstaller:
    """The pip that runs kiln, pointed at the build environment with ``--python``."""

    name = "pip"

    def __init__(self, pip_python: str = sys.executable) -> None:
        self.pip_python = pip_python

    def install(
        self,
        python: Path,
        requirements: Sequence[str],
        *,
        constraints: Sequence[Path],
        log: BuildLog,
        env: Mapping[str, str],
        compile_bytecode: bool = False,
    ) -> None:
        # pip compiles bytecode unless told not to: nothing to add for compile_bytecode.
        command = [
            self.pip_python,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ]
        for constraint in constraints:
            command += ["--constraint", str(constraint)]
        command += list(requirements)
        environ = {k: v for k, v in env.items() if k not in _PIP_LOCATION_VARIABLES}
        _run_installer(self.name, command, requirements, log, environ)


class UvInstaller:
    """``uv pip install --python``; uv reads its own configuration (UV_*, uv.toml)."""

    name = "uv"

    def __init__(self, uv: str) -> None:
        self.uv = uv

    def install(
        self,
        python: Path,
        requirements: Sequence[str],
        *,
        constraints: Sequence[Path],
        log: BuildLog,
        env: Mapping[str, str],
        compile_bytecode: bool = False,
    ) -> None:
        # Copies, never uv's default hard links (or a clone, which falls back to hard
        # links where the filesystem cannot clone): a file a build writes to must not
        # be a file in uv's cache, shared by every environment uv makes from it.
        command = [self.uv, "pip", "install", "--python", str(python), "--link-mode", "copy"]
        if compile_bytecode:
            command.append("--compile-bytecode")
        for constraint in constraints:
            command += ["--constraint", str(constraint)]
        command += list(requirements)
        _run_installer(self.name, command, requirements, log, env)


def _run_installer(
    name: str,
    command: list[str],
    requirements: Sequence[str],
    log: BuildLog,
    env: Mapping[str, str],
) -> None:
    logger.info("Installing build requirements with %s: %s", name, ", ".join(requirements))
    outcome = run_logged(command, log=log, env=env)
    if outcome.returncode != 0:
        raise InstallerError(
            f"{name} could not install the build requirements "
            f"({', '.join(requirements)}); {name} said:\n"
            + "\n".join(_installer_message(outcome.tail)),
            output="\n".join(outcome.tail),
        )


def _installer_message(tail: Sequence[str]) -> list[str]:
    """The lines of an installer's output that explain its failure."""
    # pip prefixes its verdict with "ERROR:"; uv's explanation follows "error:".
    for index, line in enumerate(tail):
        if line.lstrip().startswith(("ERROR:", "error:", "\u00d7 ")):
            return [line for line in tail[index:] if line.strip()]
    return [line for line in tail if line.strip()][-10:]


def find_uv() -> str | None:
    """The uv binary: from the ``uv`` Python package if installed, else from PATH."""
    if importlib.util.find_spec("uv") is not None:
        try:
            from uv import find_uv_bin

            return str(find_uv_bin())
        except (ImportError, FileNotFoundError):
            pass
    return shutil.which("uv")


def pip_version(python: str = sys.executable) -> tuple[int, ...] | None:
    """The version of pip importable by the running interpreter, or None."""
    if python != sys.executable or importlib.util.find_spec("pip") is None:
        return None
    from importlib import metadata

    from packaging.version import InvalidVersion, Version

    try:
        return Version(metadata.version("pip")).release
    except (metadata.PackageNotFoundError, InvalidVersion):
        return None


def select_installer(choice: str = "auto") -> Installer:
    """The installer for ``--installer``: auto prefers uv when it is installed."""
    if choice not in INSTALLER_CHOICES:
        raise UsageError(
            f"unknown installer {choice!r}; choose one of {', '.join(INSTALLER_CHOICES)}"
        )
    if choice in ("auto", "uv"):
        uv = find_uv()
        if uv is not None:
            if choice == "auto":
                _warn_if_pip_settings_are_ignored()
            return UvInstaller(uv)
        if choice == "uv":
            raise EnvironmentSetupError(
                "--installer uv was requested but uv is not installed "
                "(install the 'uv' package, e.g. pip install 'kiln-build[uv]', or put uv on PATH)"
            )
    version = pip_version()
    if version is None:
        raise EnvironmentSetupError(
            f"pip is not available to {sys.executable}: install pip, "
            "or install uv and use --installer uv"
        )
    if version < MINIMUM_PIP:
        raise EnvironmentSetupError(
            f"pip {'.'.join(map(str, version))} is too old to install into a build "
            f"environment; kiln needs pip >= {'.'.join(map(str, MINIMUM_PIP))} or uv"
        )
    return PipInstaller()


_PIP_INDEX_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")
_PIP_INDEX_KEYS = ("index-url", "extra-index-url", "find-links", "no-index")
_UV_INDEX_VARIABLES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_CONFIG_FILE",
)


def _home(environ: Mapping[str, str]) -> Path:
    home = environ.get("USERPROFILE" if os.name == "nt" else "HOME")
    return Path(home) if home else Path.home()


def _pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, lowest precedence first; none if PIP_CONFIG_FILE is devnull."""
    explicit = environ.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:  # pip reads no configuration files at all
        return []
    home = _home(environ)
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    files = [
        Path("/etc/xdg/pip/pip.conf"),
        Path("/etc/pip.conf"),
        home / ".pip/pip.conf",
        config_home / "pip/pip.conf",
        Path(sys.prefix) / "pip.conf",
    ]
    if explicit:
        files.append(Path(explicit))
    return files


def _read_pip_config(file: Path) -> configparser.RawConfigParser | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(file, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError):
        return None
    return parser


def pip_index_settings() -> list[str]:
    """Where pip's index configuration comes from, if anywhere (pip.conf files, PIP_*)."""
    found = [name for name in _PIP_INDEX_VARIABLES if os.environ.get(name)]
    for file in _pip_config_files(os.environ):
        parser = _read_pip_config(file)
        if parser is None:
            continue
        found += [
            f"{key} in {file}"
            for section in ("global", "install")
            if parser.has_section(section)
            for key in _PIP_INDEX_KEYS
            if parser.has_option(section, key)
        ]
    return found


def uv_has_index_settings() -> bool:
    if any(os.environ.get(name) for name in _UV_INDEX_VARIABLES):
        return True
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return (config_home / "uv" / "uv.toml").is_file() or Path("/etc/uv/uv.toml").is_file()


def _warn_if_pip_settings_are_ignored() -> None:
    # A private index configured only for pip would be silently bypassed by uv,
    # and a public package of the same name could be installed instead.
    pip_settings = pip_index_settings()
    if pip_settings and not uv_has_index_settings():
        logger.warning(
            "using uv (--installer auto), which does not read pip's index configuration "
            "(%s); pass --installer pip to use it, or configure uv (UV_INDEX_URL, uv.toml)",
            ", ".join(pip_settings),
        )


def installer_cache_environ(
    environ: Mapping[str, str], fallback: Path, *, installers: Collection[str] = ("pip", "uv")
) -> dict[str, str]:
    """``environ`` with pip's and uv's cache moved into ``fallback`` where theirs cannot be written.

    pip's cache is ``PIP_CACHE_DIR``, else ``cache-dir`` from pip's configuration
    files (``[install]`` over ``[global]``, later files over earlier ones), else
    pip's per-user default. uv's is ``UV_CACHE_DIR``, else uv's per-user default;
    a ``cache-dir`` in uv.toml is not read, so a uv.toml pointing somewhere
    unwritable is not helped. A cache that is switched off (``PIP_NO_CACHE_DIR``
    or ``no-cache-dir`` set to anything, as pip reads it; ``UV_NO_CACHE`` true)
    is left alone.

    A cache can be written when its directory exists and is writable, or does not
    exist and its nearest existing ancestor is a writable directory. One that
    cannot gets ``PIP_CACHE_DIR=<fallback>/pip`` or ``UV_CACHE_DIR=<fallback>/uv``
    (not created here), and one INFO line on this module's logger says so.
    Nothing else changes, and ``environ`` itself is not modified.

    ``installers`` limits this to the named installers (``"pip"``, ``"uv"``), so
    a run that only uses one does not log about the other's cache.
    """
    result = dict(environ)
    pip_cache = _pip_cache_dir(environ) if "pip" in installers else None
    if pip_cache is not None:
        result.update(_redirect("pip", "PIP_CACHE_DIR", *pip_cache, fallback / "pip"))
    uv_cache = _uv_cache_dir(environ) if "uv" in installers else None
    if uv_cache is not None:
        result.update(_redirect("uv", "UV_CACHE_DIR", *uv_cache, fallback / "uv"))
    return result


def _redirect(name: str, variable: str, cache: Path, origin: str, fallback: Path) -> dict[str, str]:
    if _can_write(cache):
        return {}
    logger.info("%s cache %s is not writable (%s); using %s instead", name, cache, origin, fallback)
    return {variable: str(fallback)}


def _can_write(directory: Path) -> bool:
    """Whether ``directory`` is a writable directory, or could be created as one."""
    try:
        for candidate in (directory, *directory.parents):
            if candidate.is_dir():
                return os.access(candidate, os.W_OK | os.X_OK)
            if os.path.lexists(candidate):  # a file, or a broken symlink: nothing goes below
                return False
    except OSError:  # e.g. a parent that cannot be searched
        return False
    return False


def _absolute(path: str, environ: Mapping[str, str]) -> Path:
    if path == "~" or path.startswith(("~/", "~" + os.sep)):
        path = str(_home(environ)) + path[1:]
    return Path(os.path.abspath(path))  # noqa: PTH100 (normalised, symlinks kept)


def _pip_cache_dir(environ: Mapping[str, str]) -> tuple[Path, str] | None:
    """Where pip puts its cache and what says so, or None when pip's cache is off."""
    # pip ignores empty values, and any non-empty no-cache-dir (even "false") turns the
    # cache off, wherever cache-dir is set.
    if environ.get("PIP_NO_CACHE_DIR"):
        return None
    settings: dict[tuple[str, str], tuple[str, Path]] = {}
    for file in _pip_config_files(environ):
        parser = _read_pip_config(file)
        if parser is None:
            continue
        for section in ("global", "install"):
            if not parser.has_section(section):
                continue
            for key, value in parser.items(section):
                normalized = key.lower().replace("_", "-").removeprefix("--")
                if value and normalized in ("cache-dir", "no-cache-dir"):
                    settings[section, normalized] = (value, file)
    if any((section, "no-cache-dir") in settings for section in ("global", "install")):
        return None
    if environ.get("PIP_CACHE_DIR"):
        return _absolute(environ["PIP_CACHE_DIR"], environ), "from PIP_CACHE_DIR"
    for section in ("install", "global"):
        if (section, "cache-dir") in settings:
            value, file = settings[section, "cache-dir"]
            return _absolute(value, environ), f"from cache-dir in {file}"
    if sys.platform == "win32":
        local = environ.get("LOCALAPPDATA")
        base = Path(local) if local else _home(environ) / "AppData" / "Local"
        return base / "pip" / "Cache", "the default location"
    if sys.platform == "darwin":
        return _home(environ) / "Library" / "Caches" / "pip", "the default location"
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = _absolute(xdg, environ) if xdg.strip() else _home(environ) / ".cache"
    return base / "pip", "the default location"


def _uv_cache_dir(environ: Mapping[str, str]) -> tuple[Path, str] | None:
    """Where uv puts its cache and what says so, or None when uv's cache is off."""
    if environ.get("UV_NO_CACHE", "").strip().lower() in ("1", "true", "yes", "y", "on"):
        return None
    if environ.get("UV_CACHE_DIR"):
        return _absolute(environ["UV_CACHE_DIR"], environ), "from UV_CACHE_DIR"
    if sys.platform == "win32":
        local = environ.get("LOCALAPPDATA")
        base = Path(local) if local else _home(environ) / "AppData" / "Local"
        return base / "uv" / "cache", "the default location"
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if Path(xdg).is_absolute() else _home(environ) / ".cache"
    return base / "uv", "the default location"


def installer_environ(base: Mapping[str, str]) -> dict[str, str]:
    """The environment an installer runs with: the user's, minus interpreter overrides."""
    return {k: v for k, v in base.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


__all__ = [
    "Installer",
    "PipInstaller",
    "UvInstaller",
    "find_uv",
    "installer_cache_environ",
    "installer_environ",
    "select_installer",
]
