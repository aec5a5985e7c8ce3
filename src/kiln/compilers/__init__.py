"""Compiler caches: ccache or sccache, switched on for every backend's build system.

A backend never learns about the cache: kiln sets the environment variables that
the build systems behind the backends read (docs/how-it-works.md, "Compiler
caches", has the whole table and the reasons):

- ``selection``: ``--compiler-cache`` and ``--compiler-cache-remote`` to a
  :class:`CompilerCache`, or None.
- ``base``: the environment a build gets, common to both tools; the variables a
  user set win over kiln's.
- ``setuptools`` (setuptools, Cython), ``meson`` (meson-python), ``cmake``
  (scikit-build-core) and ``cargo`` (maturin, setuptools-rust): which variables
  each build system reads, and how the cache goes into them.
- ``ccache`` and ``sccache``: each tool's settings and this build's statistics;
  ``sccache_server`` starts sccache's servers, a build's own or the user's.
- ``stats`` and ``common``: the counts of one build; helpers shared by all of
  the above, among them :func:`~kiln.compilers.common.redact_url`.

The builder imports this package only when a compiler cache is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from kiln.compilers.stats import CompilerCacheStats


class CompilerCache(Protocol):
    """A compiler cache for one build.

    :meth:`environ` right before the build, :meth:`stats` after it, and
    :meth:`close` at the end whatever happened (in a ``finally``).
    """

    # "ccache" or "sccache", and the absolute path of the executable kiln runs.
    name: str
    executable: str

    def environ(
        self,
        base: Mapping[str, str],
        *,
        base_dir: Path,
        work_dir: Path,
        remote: str | None,
        place: Path | None = None,
        compilers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """``base`` plus the variables that route every compiler through this cache.

        Absolute paths under ``base_dir`` (kiln's cache directory) are hashed
        relative to it, so a build hits from another absolute path. ``place`` is
        the project's place below it (kiln.workspace), where the sources are
        unpacked; sccache needs it as a base directory of its own. ``work_dir``
        is this run's scratch directory (created if need be); ``remote`` a
        remote storage URL, or None. ``base`` is not modified. ``compilers``: the
        target interpreter's sysconfig ``CC`` and ``CXX`` (--python), which setuptools
        would use there; None: the running interpreter's.

        Call it once per build, right before the build: this build's count of
        compilations starts here, and for sccache its server.
        """

    def stats(self) -> CompilerCacheStats | None:
        """This build's statistics, or None when they cannot be known."""

    def close(self) -> None:
        """Release what :meth:`environ` started (sccache's server); stats() still answers."""


__all__ = ["CompilerCache", "CompilerCacheStats"]
