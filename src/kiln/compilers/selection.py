"""``--compiler-cache``: which cache, if any (its remote is the request's
``compiler_cache_remote``; both take their ``KILN_*`` defaults in :mod:`kiln.options`)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from kiln.compilers import CompilerCache
from kiln.compilers.ccache import Ccache
from kiln.compilers.sccache import Sccache
from kiln.errors import EnvironmentSetupError, UsageError
from kiln.options import COMPILER_CACHE_CHOICES, COMPILER_CACHE_ENV

logger = logging.getLogger(__name__)


# How to get each tool, for the error when it was asked for and is missing.
_INSTALL_HINTS = {
    "ccache": "install it with your system's package manager (apt-get install ccache, "
    "dnf install ccache, brew install ccache) and put it on PATH",
    "sccache": "pip install sccache, cargo install sccache, or your system's package manager",
}


def find_ccache(environ: Mapping[str, str] | None = None) -> str | None:
    """ccache on PATH (``environ``'s, else the process's), as an absolute path."""
    path = (os.environ if environ is None else environ).get("PATH")
    found = shutil.which("ccache", path=path)
    return os.path.abspath(found) if found else None  # noqa: PTH100


def find_sccache(environ: Mapping[str, str] | None = None) -> str | None:
    """sccache on PATH, else the binary of the ``sccache`` Python package (PyPI
    ships it as a script of that package), as an absolute path."""
    path = (os.environ if environ is None else environ).get("PATH")
    found = shutil.which("sccache", path=path)
    if found:
        return os.path.abspath(found)  # noqa: PTH100
    return _sccache_from_package()


def _sccache_from_package() -> str | None:
    import importlib.metadata  # only here: it takes longer to import than the rest

    try:
        distribution = importlib.metadata.distribution("sccache")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if Path(str(file)).name.lower() in ("sccache", "sccache.exe"):
            candidate = Path(str(distribution.locate_file(file))).resolve()
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def select_compiler_cache(
    choice: str = "auto", environ: Mapping[str, str] | None = None
) -> CompilerCache | None:
    """The cache for ``--compiler-cache`` (the request's compiler_cache, which
    ``$KILN_COMPILER_CACHE`` filled in when unset or ``auto``), or None for no cache.

    ``auto`` takes ccache when it is on PATH, else sccache (on PATH or from the
    ``sccache`` Python package), else none. A cache asked for by name that is
    not installed is an error. ``environ`` (default: the process's) supplies PATH.
    """
    environ = os.environ if environ is None else environ
    if choice not in COMPILER_CACHE_CHOICES:
        raise UsageError(
            f"unknown compiler cache {choice!r}; choose one of {', '.join(COMPILER_CACHE_CHOICES)}"
        )
    # The value may come from the option or the variable: name both.
    explicit = f"--compiler-cache {choice} (or {COMPILER_CACHE_ENV}={choice})"
    if choice == "none":
        return None
    if choice in ("auto", "ccache"):
        ccache = find_ccache(environ)
        if ccache is not None:
            return Ccache(ccache)
        if choice == "ccache":
            raise EnvironmentSetupError(
                f"{explicit} was requested but ccache is not on PATH; {_INSTALL_HINTS['ccache']}"
            )
    sccache = find_sccache(environ)
    if sccache is not None:
        return Sccache(sccache)
    if choice == "sccache":
        raise EnvironmentSetupError(
            f"{explicit} was requested but sccache is not installed; {_INSTALL_HINTS['sccache']}"
        )
    logger.debug("no compiler cache installed (neither ccache nor sccache)")
    return None
