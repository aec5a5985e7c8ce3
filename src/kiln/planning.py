"""Deciding what one build will do, as plain data: :func:`plan_build`.

A request and its source become a :class:`BuildPlan`: the distributions in
order, the output directory, where the build environment comes from, which
installer, hook runner and compiler cache are asked for. Nothing here starts a
process or writes a file, and nothing reads the environment: the ``KILN_*``
variables were read into the request at the edge (:mod:`kiln.options`), so a
plan can be made (and tested) anywhere; :mod:`kiln.builder` does what it says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiln.errors import UsageError
from kiln.layout import default_cache_dir
from kiln.project import SourceInput
from kiln.request import EDITABLE, SDIST, WHEEL, BuildRequest

# Where the build environment comes from: the running interpreter (--no-isolation),
# the user's --env-dir, a reusable one in the cache (the default), or a throwaway
# one in the run directory (--fresh-env, or no usable cache).
EnvironmentKind = Literal["current", "env-dir", "cached", "fresh"]


@dataclass(frozen=True)
class Plan:
    """The distributions to build, in order, and whether the wheel comes from the sdist."""

    distributions: tuple[str, ...]
    wheel_from_sdist: bool


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided about one build before anything is done."""

    source: SourceInput
    # In order; empty for metadata only.
    distributions: tuple[str, ...]
    wheel_from_sdist: bool
    # None: no artifacts (metadata only).
    outdir: Path | None
    cache_dir: Path
    env_dir: Path | None
    environment: EnvironmentKind
    # The --installer choice ("auto", "pip", "uv"); None: nothing is installed.
    installer: str | None
    # The request's hook_runner ($KILN_HOOK_RUNNER applied at the edge).
    hook_runner: str
    # "none", "auto", "ccache" or "sccache" ($KILN_COMPILER_CACHE applied at the edge,
    # None made "none"); and its remote.
    compiler_cache: str
    compiler_cache_remote: str | None
    constraints: tuple[Path, ...] = ()
    config_settings: Mapping[str, Any] = field(default_factory=dict)
    check_requirements: bool = True
    refresh: bool = False
    # Seconds a cached environment from unpinned requirements is reused; None: a day.
    env_ttl: float | None = None
    # The --python spec; None: the interpreter running kiln.
    python: str | None = None


def plan_build(request: BuildRequest, source: SourceInput, *, artifacts: bool = True) -> BuildPlan:
    """The plan for ``request`` on ``source``; ``artifacts=False``: metadata only.

    The request's ``KILN_*`` defaults are filled in already, at the edge
    (:meth:`BuildRequest.with_environment_defaults`). Raises UsageError for a
    request that cannot be carried out on this source.
    """
    cache_dir = _cache_dir(request)
    _check_environment_path(request, cache_dir)
    if artifacts:
        order = plan_distributions(request, source)
        outdir: Path | None = (
            Path(request.outdir).absolute() if request.outdir else source.default_outdir
        )
    else:
        order, outdir = Plan((), wheel_from_sdist=False), None
    env_dir = Path(request.env_dir).absolute() if request.env_dir is not None else None
    return BuildPlan(
        source=source,
        distributions=order.distributions,
        wheel_from_sdist=order.wheel_from_sdist,
        outdir=outdir,
        cache_dir=cache_dir,
        env_dir=env_dir,
        environment=environment_kind(request),
        installer=request.installer if request.isolation else None,
        hook_runner=request.hook_runner,
        compiler_cache=request.compiler_cache or "none",
        compiler_cache_remote=request.compiler_cache_remote or None,
        constraints=tuple(request.constraints),
        config_settings=request.config_settings,
        check_requirements=not request.skip_dependency_check,
        refresh=request.refresh,
        env_ttl=request.env_ttl,
        python=request.python,
    )


def environment_kind(request: BuildRequest) -> EnvironmentKind:
    """Where the build environment comes from (a cached one may still become a
    fresh one in the run directory when the cache turns out to be unusable)."""
    if not request.isolation:
        return "current"
    if request.env_dir is not None:
        return "env-dir"
    return "fresh" if request.fresh_env else "cached"


def plan_distributions(request: BuildRequest, source: SourceInput) -> Plan:
    requested = request.distributions
    if source.is_archive:
        if SDIST in requested:
            raise UsageError(f"{source.path} is already an sdist; build a wheel from it with -w")
        if EDITABLE in requested:
            raise UsageError(
                f"an editable wheel needs a project directory, not the archive {source.path}"
            )
        return Plan(requested or (WHEEL,), wheel_from_sdist=False)
    if not requested:
        return Plan((SDIST, WHEEL), wheel_from_sdist=True)
    if WHEEL in requested and EDITABLE in requested:
        # Some backends (hatchling) give both wheels the same file name.
        raise UsageError(
            "a wheel and an editable wheel cannot be built in one run: they may share a "
            "file name; build them separately, into different output directories"
        )
    ordered = tuple(d for d in (SDIST, WHEEL, EDITABLE) if d in requested)
    return Plan(ordered, wheel_from_sdist=False)


def may_run_users_sccache(environ: Mapping[str, str]) -> bool:
    """Whether a variable that names a compiler or a compiler wrapper (``CC``,
    ``CXX``, cargo's ``RUSTC_WRAPPER`` and the like, CMake's launchers; the ones
    kiln.compilers sets among them) mentions sccache: only then may the build's
    compiles start the user's own sccache server (see
    :func:`kiln.compilers.sccache_server.start_users_sccache_server`, which
    decides exactly). Any other variable (a PATH, a HOME) means nothing here."""
    from kiln.compilers.cargo import RUSTC_WRAPPER_VARIABLES
    from kiln.compilers.cmake import CMAKE_LAUNCHERS

    names = (*CMAKE_LAUNCHERS, *CMAKE_LAUNCHERS.values(), *RUSTC_WRAPPER_VARIABLES)
    return any("sccache" in environ.get(name, "").lower() for name in names)


def _cache_dir(request: BuildRequest) -> Path:
    """--cache-dir (or $KILN_CACHE_DIR, read at the edge), else the platform's user cache dir."""
    if request.cache_dir is not None:
        return Path(request.cache_dir).expanduser().absolute()
    return default_cache_dir()


def _check_environment_path(request: BuildRequest, cache_dir: Path) -> None:
    """Refuse, before anything is made, a place for the build environment whose path
    is not UTF-8: Python reads pyvenv.cfg, which holds that path, as UTF-8, and
    uv takes no such argument, so no environment works there."""
    if not request.isolation:
        return
    if request.env_dir is not None:
        path, option = Path(request.env_dir).absolute(), "--env-dir"
    else:
        path, option = cache_dir, "--cache-dir"
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise UsageError(
            f"{option} {shown} is not a UTF-8 path, and a build environment cannot work "
            f"there (Python reads its pyvenv.cfg as UTF-8); choose another {option}, "
            "or build with --no-isolation"
        ) from None
