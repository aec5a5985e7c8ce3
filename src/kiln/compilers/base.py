"""The environment a build gets: what both tools set the same way.

The variables a user set are left as they are (``CC``/``CXX`` get the cache put
in front instead), so a setting made on purpose wins over kiln's. The local
cache directory is the tool's own (``CCACHE_DIR``, ``SCCACHE_DIR`` or their
defaults), shared with other projects and with builds outside kiln.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kiln.compilers.cmake import set_launchers
from kiln.compilers.common import absolute
from kiln.compilers.setuptools import wrap_compilers
from kiln.compilers.stats import CompilerCacheStats


class BaseCompilerCache:
    """What ccache and sccache share; each tool adds its own settings in :meth:`_configure`.

    Implements :class:`kiln.compilers.CompilerCache`.
    """

    name: str
    executable: str

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.executable!r})"

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
        """See :meth:`kiln.compilers.CompilerCache.environ`."""
        environ = dict(base)
        wrap_compilers(
            environ, cache_name=self.name, executable=self.executable, configured=compilers
        )
        set_launchers(environ, self.cmake_launcher())
        self._configure(
            environ,
            base,
            # The place, then kiln's cache: sccache takes both, ccache only the last.
            base_dirs=[absolute(d) for d in (place, base_dir) if d is not None],
            work_dir=work_dir,
            remote=remote,
        )
        return environ

    def stats(self) -> CompilerCacheStats | None:
        """This build's statistics, or None when they cannot be known."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`environ` started (sccache's server); stats() still answers."""

    def cmake_launcher(self) -> str | None:
        """What CMake's launcher variables get (None: nothing)."""
        raise NotImplementedError

    def _configure(
        self,
        environ: dict[str, str],
        base: Mapping[str, str],
        *,
        base_dirs: list[Path],
        work_dir: Path,
        remote: str | None,
    ) -> None:
        """Add this tool's settings to ``environ``; ``base`` is what the user set."""
        raise NotImplementedError
