"""setuptools (and Cython, compiled through it): ``CC`` and ``CXX``.

meson and CMake's first configure read the same two variables, so this is where
every C and C++ compiler gets the cache put in front: ``ccache gcc``. How the
cache is spelled there is meson's business (:mod:`kiln.compilers.meson`); when
a CMake launcher of the user's forbids it, CMake's (:mod:`kiln.compilers.cmake`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sysconfig
from collections.abc import Mapping

from kiln.compilers.cmake import CMAKE_LAUNCHERS, may_wrap_compilers
from kiln.compilers.common import launcher_name
from kiln.compilers.meson import launcher_word

logger = logging.getLogger(__name__)

# Each compiler variable, with what setuptools runs when neither it nor sysconfig names one.
COMPILERS = (("CC", "cc"), ("CXX", "c++"))


def wrap_compilers(
    environ: dict[str, str],
    *,
    cache_name: str,
    executable: str,
    configured: Mapping[str, str] | None = None,
) -> None:
    """Put the cache in front of ``CC`` and ``CXX``: the user's, or setuptools' default
    (the target interpreter's ``configured`` ones when given, else this one's)."""
    if os.name == "nt":
        # setuptools drives MSVC without reading CC/CXX; there is nothing to prefix.
        return
    launcher = launcher_word(cache_name, executable, environ)
    for variable, fallback in COMPILERS:
        cmake_launcher = CMAKE_LAUNCHERS[variable]
        if not may_wrap_compilers(cache_name, environ.get(cmake_launcher, ""), environ):
            logger.info(
                "%s=%s is set: leaving %s unwrapped, since CMake would run two compiler "
                "caches one inside the other",
                cmake_launcher,
                environ[cmake_launcher],
                variable,
            )
            continue
        current = environ.get(variable, "").strip()
        if not current:
            default = _default_compiler(variable, fallback, environ, configured)
            environ[variable] = f"{launcher} {default}"
            continue
        try:
            words = shlex.split(current)
        except ValueError:
            logger.info("%s=%r cannot be parsed; kiln leaves it as it is", variable, current)
            continue
        first = launcher_name(words[0], environ) if words else None
        if first is not None:
            logger.debug("%s already starts with %s; not wrapping it again", variable, first)
            continue
        environ[variable] = f"{launcher} {current}"


def _default_compiler(
    variable: str,
    fallback: str,
    environ: Mapping[str, str],
    configured_by: Mapping[str, str] | None = None,
) -> str:
    """The compiler setuptools would use without CC/CXX: the interpreter's own
    (sysconfig's, with its flags), unless that one is not installed here (e.g. a
    path on the machine that built Python), then ``cc``/``c++``."""
    configured = (
        sysconfig.get_config_var(variable) if configured_by is None else configured_by.get(variable)
    )
    if isinstance(configured, str) and configured.strip():
        with contextlib.suppress(ValueError):
            words = shlex.split(configured)
            if words and shutil.which(words[0], path=environ.get("PATH")):
                return configured.strip()
    return fallback
