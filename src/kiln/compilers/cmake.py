"""scikit-build-core: CMake's ``CMAKE_<LANG>_COMPILER_LAUNCHER`` variables.

CMake runs ``<launcher> <compiler>``, the compiler taken from ``CC``/``CXX`` on
its first configure. ccache goes into the launcher variables; sccache does not
(see :meth:`kiln.compilers.sccache.Sccache.cmake_launcher`).
"""

from __future__ import annotations

from collections.abc import Mapping

from kiln.compilers.common import CACHES, launcher_name

# The CMake launcher variable that covers the language of each compiler variable.
CMAKE_LAUNCHERS = {"CC": "CMAKE_C_COMPILER_LAUNCHER", "CXX": "CMAKE_CXX_COMPILER_LAUNCHER"}


def set_launchers(environ: dict[str, str], launcher: str | None) -> None:
    """Set both launcher variables to ``launcher``, where the user set none."""
    if launcher is None:
        return
    for variable in CMAKE_LAUNCHERS.values():
        environ.setdefault(variable, launcher)


def may_wrap_compilers(cache_name: str, user_launcher: str, environ: Mapping[str, str]) -> bool:
    """Whether CC/CXX may carry the cache ``cache_name``, given the user's CMake launcher.

    ccache accepts ``ccache ccache gcc`` (it drops the inner one), but sccache
    fails on ``sccache sccache gcc`` and ``sccache ccache gcc`` alike, so a
    user's sccache launcher in front of a wrapped compiler would break the build.
    """
    words = user_launcher.split(";") if user_launcher.strip() else []
    if not words:
        return True
    outer = launcher_name(words[0], environ)
    if outer is None or outer not in CACHES:
        return True
    return outer == "ccache" and cache_name == "ccache"
