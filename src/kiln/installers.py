"""Installers: pip and uv, each installing requirements into a given interpreter.

Neither installer is configured by kiln beyond naming the target interpreter
and the user's constraints: index URLs, find-links, certificates and the rest
come from the user's own pip or uv configuration, unchanged.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kiln.errors import EnvironmentSetupError, InstallerError, UsageError
from kiln.process import BuildLog, run_logged

logger = logging.getLogger(__name__)

INSTALLER_CHOICES = ("auto", "pip", "uv")
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
    ) -> None:
        """Install ``requirements`` for ``python``; raise InstallerError on failure."""


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
    ) -> None:
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
    ) -> None:
        command = [self.uv, "pip", "install", "--python", str(python)]
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
    from packaging.version import InvalidVersion, Version

    try:
        return Version(importlib.metadata.version("pip")).release
    except (importlib.metadata.PackageNotFoundError, InvalidVersion):
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


def pip_index_settings() -> list[str]:
    """Where pip's index configuration comes from, if anywhere (pip.conf files, PIP_*)."""
    import configparser

    found = [name for name in _PIP_INDEX_VARIABLES if os.environ.get(name)]
    explicit = os.environ.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:  # pip reads no configuration files at all
        return found
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    files = [
        Path("/etc/xdg/pip/pip.conf"),
        Path("/etc/pip.conf"),
        Path.home() / ".pip/pip.conf",
        config_home / "pip/pip.conf",
        Path(sys.prefix) / "pip.conf",
    ]
    if explicit:
        files.append(Path(explicit))
    for file in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(file, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
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


def installer_environ(base: Mapping[str, str]) -> dict[str, str]:
    """The environment an installer runs with: the user's, minus interpreter overrides."""
    return {k: v for k, v in base.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


__all__ = [
    "INSTALLER_CHOICES",
    "Installer",
    "PipInstaller",
    "UvInstaller",
    "find_uv",
    "installer_environ",
    "select_installer",
]
