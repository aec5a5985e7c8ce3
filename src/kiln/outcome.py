"""How a run ends: released after success, kept for ``kiln debug`` after a failure.

:func:`settled` wraps the part of a run that may fail once its places are
claimed. A failure before the build environment was opened releases the places
(nothing worth keeping); after, the run is kept (``Workspace.fail``, ``EnvDir.keep``)
and the error says where (``kept_build``). A full disk is named as such
(:class:`DiskFullError`) first, so that keeping the run gives the space back.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kiln.environments import EnvironmentProvider
from kiln.environments.envdir import EnvDir
from kiln.errors import (
    DISK_FULL_WORDS,
    DiskFullError,
    InstallerError,
    Interrupted,
    KeptBuild,
    KilnError,
    disk_full_error,
    is_disk_full,
)
from kiln.layout import BUILD_LOG, ENVS
from kiln.planning import BuildPlan
from kiln.workspace import Workspace

logger = logging.getLogger("kiln")


@dataclass
class RunPlaces:
    """What settling the run needs: its places, and whether the environment was opened."""

    plan: BuildPlan
    workspace: Workspace
    env_dir: EnvDir | None
    provider: EnvironmentProvider | None = None
    # Set once the environment is opened: from then on a failure leaves something to look at.
    environment_opened: bool = False


@contextlib.contextmanager
def settled(run: RunPlaces) -> Iterator[None]:
    """Release the run's places on success; after a failure keep them for
    `kiln debug` (once the environment exists), else release them too."""
    workspace = run.workspace
    try:
        yield
    except BaseException as caught:
        # A full disk is named as such before the run is kept, so that keeping it
        # gives the space back rather than holding on to it.
        error = _named_if_disk_full(caught, run.plan)
        if run.environment_opened:
            error = _keep_failed(run, error)
        else:
            # Nothing was built yet: nothing worth keeping.
            with contextlib.suppress(OSError):
                workspace.log.section(f"kiln: error: {error}")
            release(workspace, run.env_dir)
            if isinstance(error, KilnError) and workspace.cache is not None:
                error.log_path = workspace.log.path
        if error is caught:
            raise
        raise error from caught
    release(workspace, run.env_dir)


def release(workspace: Workspace, env_dir: EnvDir | None) -> None:
    """Remove the run directory (keeping its log) and empty the env dir."""
    workspace.succeed()
    if env_dir is not None:
        env_dir.clean()


def _keep_failed(run: RunPlaces, error: BaseException) -> BaseException:
    """Keep a failed run for `kiln debug`; returns the error to raise, which says
    where it is kept (a plain KeyboardInterrupt becomes an :class:`Interrupted`)."""
    if isinstance(error, KilnError):
        reason = str(error)
    elif isinstance(error, KeyboardInterrupt):
        reason = "interrupted"
    else:
        reason = f"{type(error).__name__}: {error}"
    workspace = run.workspace
    location = run.provider.location if run.provider is not None else None
    # A full disk where the build's files are: keeping them would keep it full.
    keep_sources = not (
        isinstance(error, DiskFullError) and _same_file_system(error.directory, workspace.place)
    )
    cache = workspace.cache
    if not keep_sources and cache is not None:
        # A build environment the full disk left half made is of no use to anyone
        # (the next run replaces it) and may be what filled the disk.
        from kiln.environments.cached import prune_environments

        with contextlib.suppress(OSError):
            removed = prune_environments(
                cache.root / ENVS, max_age=float("inf"), keep=sys.maxsize, half_made_grace=0
            )
            if location in removed:
                location = None
    if not keep_sources and location is not None and location.parent == workspace.root:
        shutil.rmtree(location, ignore_errors=True)  # --fresh-env's, in the run directory
        location = None
    kept = workspace.fail(
        reason, source=run.plan.source.path, environment=location, keep_sources=keep_sources
    )
    if not keep_sources:
        logger.warning("removed the failed build's files to free the space; its log: %s", kept)
    if run.env_dir is not None:
        run.env_dir.keep()
    if cache is not None:
        with contextlib.suppress(OSError):  # it only removes; never hide the error
            cache.prune()  # failed builds are kept, but only the newest few
    kept_build = KeptBuild(kept, location, kept / BUILD_LOG)
    logger.debug("failed build kept in %s", kept)
    if isinstance(error, KilnError):
        error.log_path = kept_build.log
        error.kept_build = kept_build
    elif isinstance(error, KeyboardInterrupt):
        # The CLI tells the user where to look: an Interrupted carries it.
        if not isinstance(error, Interrupted):
            error = Interrupted(*error.args)
        error.kept_build = kept_build
    return error


def _same_file_system(one: Path, other: Path) -> bool:
    # ``one`` may be gone since (a staging directory): its nearest parent will do.
    existing = next((p for p in (one, *one.parents) if p.exists()), one)
    try:
        return existing.stat().st_dev == other.stat().st_dev
    except OSError:
        return True  # cannot tell: give the space back rather than keep the disk full


@contextlib.contextmanager
def disk_full_is_an_error(plan: BuildPlan) -> Iterator[None]:
    """A full disk (ENOSPC, EDQUOT) wherever kiln writes: an error naming the place
    (exit 3), not a traceback. Inside the session it was made one already."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise _disk_full(error, plan) from error


def _named_if_disk_full(error: BaseException, plan: BuildPlan) -> BaseException:
    """``error``, or the :class:`DiskFullError` it amounts to."""
    if isinstance(error, OSError) and is_disk_full(error):
        return _disk_full(error, plan)
    if isinstance(error, InstallerError) and any(w in error.output for w in DISK_FULL_WORDS):
        return _disk_full(None, plan, doing="the installer")
    return error


def _disk_full(error: OSError | None, plan: BuildPlan, doing: str | None = None) -> DiskFullError:
    places = [plan.cache_dir, *([plan.outdir] if plan.outdir else [])]
    if plan.env_dir is not None:
        places.append(plan.env_dir)
    converted = disk_full_error(error, [p for p in places if p.is_dir()], doing=doing)
    converted.log_path = getattr(error, "log_path", None)
    return converted
