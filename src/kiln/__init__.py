"""kiln: a build frontend for Python projects.

The public API::

    import kiln

    result = kiln.build("path/to/project", outdir="dist")   # sdist, then wheel from it
    result = kiln.build("proj", distributions=["wheel"], installer="uv")
    metadata = kiln.get_metadata("proj")                     # core metadata as a dict

Errors are :class:`kiln.errors.KilnError` subclasses with an ``exit_code``.
The lower-level parts (:mod:`kiln.project`, :mod:`kiln.environments`,
:mod:`kiln.installers`, :mod:`kiln.hooks`) can be used on their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

__version__ = "0.1.0"

TYPE_CHECKING = False  # spares importing typing: the command line starts up faster
if TYPE_CHECKING:
    from typing import Any

    from kiln.errors import KilnError
    from kiln.request import BuildRequest
    from kiln.result import Artifact, BuildResult

__all__ = [
    "Artifact",
    "BuildRequest",
    "BuildResult",
    "KilnError",
    "__version__",
    "build",
    "get_metadata",
]

PathLike = str | os.PathLike[str]


def build(
    source: PathLike = ".",
    outdir: PathLike | None = None,
    distributions: Iterable[str] = (),
    *,
    config_settings: Mapping[str, Any] | None = None,
    isolation: bool = True,
    skip_dependency_check: bool = False,
    installer: str = "auto",
    constraints: Iterable[PathLike] = (),
    cache_dir: PathLike | None = None,
    env_dir: PathLike | None = None,
    fresh_env: bool = False,
    refresh: bool = False,
    hook_runner: str = "auto",
    compiler_cache: str | None = None,
    compiler_cache_remote: str | None = None,
) -> BuildResult:
    """Build ``source`` (a project directory or an sdist) into ``outdir``.

    ``distributions`` is any of ``"sdist"``, ``"wheel"``, ``"editable"``; empty
    means an sdist and then a wheel built from that sdist (from an sdist
    archive: a wheel). ``env_dir`` is where the build environment goes (absent
    or empty; removed after success, kept after failure); unlike the CLI, the
    API does not read ``KILN_ENV_DIR``. Without it, the environment comes from
    the cache and is reused by later builds; ``fresh_env`` asks for a throwaway
    one, ``refresh`` re-resolves the cached one now. ``hook_runner`` is
    "auto", "warm" or "plain". ``compiler_cache`` ("auto", "ccache", "sccache",
    "none"; default $KILN_COMPILER_CACHE, else none) routes the backends'
    compilers through a compiler cache, with ``compiler_cache_remote`` as shared
    storage. Raises :class:`kiln.errors.KilnError`.
    """
    from kiln.builder import build as run_build

    request = _request(
        source,
        outdir,
        distributions,
        config_settings=config_settings,
        isolation=isolation,
        skip_dependency_check=skip_dependency_check,
        installer=installer,
        constraints=constraints,
        cache_dir=cache_dir,
        env_dir=env_dir,
        fresh_env=fresh_env,
        refresh=refresh,
        hook_runner=hook_runner,
        compiler_cache=compiler_cache,
        compiler_cache_remote=compiler_cache_remote,
    )
    return run_build(request)


def get_metadata(
    source: PathLike = ".",
    *,
    config_settings: Mapping[str, Any] | None = None,
    isolation: bool = True,
    skip_dependency_check: bool = False,
    installer: str = "auto",
    constraints: Iterable[PathLike] = (),
    cache_dir: PathLike | None = None,
    env_dir: PathLike | None = None,
    fresh_env: bool = False,
    refresh: bool = False,
    hook_runner: str = "auto",
    compiler_cache: str | None = None,
    compiler_cache_remote: str | None = None,
) -> dict[str, Any]:
    """The wheel's core metadata, as parsed by ``packaging.metadata.parse_email``.

    The options are :func:`build`'s; a backend without a metadata hook builds a
    wheel to answer, which may compile.
    """
    from kiln.builder import prepare_metadata

    request = _request(
        source,
        config_settings=config_settings,
        isolation=isolation,
        skip_dependency_check=skip_dependency_check,
        installer=installer,
        constraints=constraints,
        cache_dir=cache_dir,
        env_dir=env_dir,
        fresh_env=fresh_env,
        refresh=refresh,
        hook_runner=hook_runner,
        compiler_cache=compiler_cache,
        compiler_cache_remote=compiler_cache_remote,
    )
    metadata = prepare_metadata(request).metadata
    assert metadata is not None
    return metadata


def _request(
    source: PathLike,
    outdir: PathLike | None = None,
    distributions: Iterable[str] = (),
    *,
    config_settings: Mapping[str, Any] | None,
    isolation: bool,
    skip_dependency_check: bool,
    installer: str,
    constraints: Iterable[PathLike],
    cache_dir: PathLike | None,
    env_dir: PathLike | None,
    fresh_env: bool,
    refresh: bool,
    hook_runner: str,
    compiler_cache: str | None,
    compiler_cache_remote: str | None,
) -> BuildRequest:
    from pathlib import Path

    from kiln.request import BuildRequest, absolute_paths

    return BuildRequest(
        source=Path(source),
        outdir=Path(outdir) if outdir is not None else None,
        # A bare "wheel" means one distribution, not five letters.
        distributions=(distributions,) if isinstance(distributions, str) else tuple(distributions),
        config_settings=dict(config_settings or {}),
        isolation=isolation,
        skip_dependency_check=skip_dependency_check,
        installer=installer,
        constraints=absolute_paths([os.fspath(c) for c in constraints]),
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        env_dir=Path(env_dir) if env_dir is not None else None,
        fresh_env=fresh_env,
        refresh=refresh,
        hook_runner=hook_runner,
        compiler_cache=compiler_cache,
        compiler_cache_remote=compiler_cache_remote,
    )


def __getattr__(name: str) -> Any:
    # Lazy, so that `kiln --version` imports nothing but this module.
    if name == "BuildRequest":
        from kiln.request import BuildRequest

        return BuildRequest
    if name in ("BuildResult", "Artifact"):
        from kiln import result

        return getattr(result, name)
    if name == "KilnError":
        from kiln.errors import KilnError

        return KilnError
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
