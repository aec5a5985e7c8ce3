"""The orchestrator: one build, read top to bottom.

Source -> Project (validated) -> environment -> backend hooks -> staging ->
output directory. Each step is a small part behind a narrow seam; this module
only puts them in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln import __version__
from kiln.backends import with_stable_build_dir
from kiln.cache import Cache
from kiln.environments import BuildEnvironment, EnvironmentProvider
from kiln.environments.envdir import EnvDir
from kiln.errors import (
    DISK_FULL_WORDS,
    DiskFullError,
    InstallerError,
    KilnError,
    UsageError,
    disk_full_error,
    is_disk_full,
)
from kiln.headstart import HeadStart
from kiln.hooks import Backend
from kiln.hooks.runners import HookRunners, select_hook_runners
from kiln.layout import ENVS, resolve_cache_dir
from kiln.output import (
    check_artifact,
    check_env_dir_left_out,
    prepare_outdir,
    publish,
    refuse_outdir_in_cache,
    staging_dir,
)
from kiln.project import Project, SourceInput
from kiln.request import EDITABLE, SDIST, WHEEL, BuildRequest
from kiln.result import Artifact, BuildResult, BuildStep
from kiln.workspace import LOG_NAME, Workspace, new_run_id

if TYPE_CHECKING:
    from kiln.compilers import CompilerCache
    from kiln.constraints import ConstraintFiles

logger = logging.getLogger("kiln")


@dataclass(frozen=True)
class Plan:
    """The distributions to build, in order, and whether the wheel comes from the sdist."""

    distributions: tuple[str, ...]
    wheel_from_sdist: bool


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


def build(request: BuildRequest, *, head_start: HeadStart | None = None) -> BuildResult:
    """Build the distributions ``request`` asks for; see :class:`BuildRequest`.
    ``head_start``: a warm worker started ahead (see :mod:`kiln.headstart`)."""
    started = time.monotonic()
    _check_environment_path(request)
    source = SourceInput.resolve(request.source)
    plan = plan_distributions(request, source)
    outdir = Path(request.outdir).absolute() if request.outdir else source.default_outdir
    # Before the session: claiming the project's place empties a directory in the cache.
    refuse_outdir_in_cache(outdir, resolve_cache_dir(request.cache_dir))
    with (
        _disk_full_is_an_error(request, outdir),
        _session(request, source, outdir, head_start) as session,
    ):
        result = session.result
        result.outdir = prepare_outdir(outdir)
        with session.open_environment() as environment:
            project = session.project
            for distribution in plan.distributions:
                artifact, step = _build_one(project, environment, distribution, session)
                result.artifacts.append(artifact)
                result.steps.append(step)
                if plan.wheel_from_sdist and distribution == SDIST:
                    # The wheel is built from the sdist, which proves the sdist builds.
                    from_sdist = session.workspace.stable_dir("from-sdist")
                    project = Project.load(_unpack(artifact.path, from_sdist))
    result.seconds = time.monotonic() - started
    return result


def prepare_metadata(request: BuildRequest, *, head_start: HeadStart | None = None) -> BuildResult:
    """Compute the wheel's core metadata without building; ``result.metadata`` holds it."""
    from packaging.metadata import parse_email

    started = time.monotonic()
    _check_environment_path(request)
    source = SourceInput.resolve(request.source)
    with (
        _disk_full_is_an_error(request, None),
        _session(request, source, None, head_start) as session,
    ):
        with session.open_environment() as environment:
            backend, _ = _prepare_backend(session.project, environment, WHEEL, session)
            metadata_dir = session.workspace.stable_dir("metadata")
            metadata_dir.mkdir()
            logger.info("Getting metadata for wheel")
            settings = session.config_settings(session.project, WHEEL)
            dist_info = backend.prepare_metadata(WHEEL, metadata_dir, settings)
            text = (metadata_dir / dist_info / "METADATA").read_bytes()
        raw, unparsed = parse_email(text)
        session.result.metadata = {**unparsed, **raw}
    session.result.seconds = time.monotonic() - started
    return session.result


@contextlib.contextmanager
def _disk_full_is_an_error(request: BuildRequest, outdir: Path | None) -> Iterator[None]:
    """A full disk (ENOSPC, EDQUOT) wherever kiln writes: an error naming the place
    (exit 3), not a traceback. Inside the session it was made one already."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise _disk_full(error, request, outdir) from error


def _named_if_disk_full(
    error: BaseException, request: BuildRequest, outdir: Path | None
) -> BaseException:
    """``error``, or the :class:`DiskFullError` it amounts to."""
    if isinstance(error, OSError) and is_disk_full(error):
        return _disk_full(error, request, outdir)
    if isinstance(error, InstallerError) and any(w in error.output for w in DISK_FULL_WORDS):
        return _disk_full(None, request, outdir, doing="the installer")
    return error


def _disk_full(
    error: OSError | None, request: BuildRequest, outdir: Path | None, doing: str | None = None
) -> DiskFullError:
    places = [resolve_cache_dir(request.cache_dir), *([outdir] if outdir else [])]
    if request.env_dir is not None:
        places.append(Path(request.env_dir).absolute())
    converted = disk_full_error(error, [p for p in places if p.is_dir()], doing=doing)
    converted.log_path = getattr(error, "log_path", None)
    return converted


def _check_environment_path(request: BuildRequest) -> None:
    """Refuse, before anything is made, a place for the build environment whose path
    is not UTF-8: Python reads pyvenv.cfg, which holds that path, as UTF-8, and
    uv takes no such argument, so no environment works there."""
    if not request.isolation:
        return
    if request.env_dir is not None:
        path, option = Path(request.env_dir).absolute(), "--env-dir"
    else:
        path, option = resolve_cache_dir(request.cache_dir), "--cache-dir"
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise UsageError(
            f"{option} {shown} is not a UTF-8 path, and a build environment cannot work "
            f"there (Python reads its pyvenv.cfg as UTF-8); choose another {option}, "
            "or build with --no-isolation"
        ) from None


@dataclass
class Session:
    """What one run works with: its request, workspace, project and environment provider."""

    request: BuildRequest
    workspace: Workspace
    project: Project
    result: BuildResult
    provider: EnvironmentProvider
    env_dir: EnvDir | None
    runners: HookRunners
    # Set once the environment exists: from then on a failure leaves something to look at.
    environment_opened: bool = False
    runners_closed: bool = False

    def config_settings(self, project: Project, distribution: str) -> dict[str, Any]:
        """The request's settings, plus a stable build directory where a backend needs one."""
        build_dir = self.workspace.stable_dir("build") / distribution
        return with_stable_build_dir(project, self.request.config_settings, build_dir, distribution)

    @contextlib.contextmanager
    def open_environment(self) -> Iterator[BuildEnvironment]:
        self.environment_opened = True
        with self.provider.open(self.workspace.log) as environment:
            try:
                yield environment
            finally:
                # Warm workers run in the environment and keep notes in it: they stop
                # while this run still holds the environment's lock.
                self.close_runners()

    def close_runners(self) -> None:
        if not self.runners_closed:
            self.runners_closed = True
            self.runners.close()


@contextlib.contextmanager
def _session(
    request: BuildRequest, source: SourceInput, outdir: Path | None, head_start: HeadStart | None
) -> Iterator[Session]:
    """Claim the places this run works in, load the project, and settle up afterwards.

    On success the run directory goes (and a user's env dir is emptied); after a
    failure past the point where the environment was made, both are kept, and
    the error says where.
    """
    constraints = _check_constraint_files(request)
    # Chosen first: a compiler cache asked for by name but missing stops the build here.
    compiler_cache, remote = _compiler_cache(request)
    env_dir, cache, workspace = _claim_places(request, source, outdir)
    session: Session | None = None
    runners: HookRunners | None = None
    try:
        # As early as can be: a worker started ahead starts while kiln sets up the rest.
        runners = select_hook_runners(
            request.hook_runner,
            worker_plans=workspace.worker_plans,
            source=source.path,
            started=head_start,
        )
        workspace.log.section(f"kiln {__version__} building {source.path}")
        if cache is not None:
            cache.prune(keep_running=workspace.root)
        project = Project.load(source.project_dir(workspace.stable_dir("source")))
        result = BuildResult(
            source=source.path,
            outdir=None,
            isolated=request.isolation,
            installer=None,
            python=sys.executable,
            log_path=workspace.log.path,
        )
        environ = workspace.subprocess_environ()
        if compiler_cache is not None:
            environ = compiler_cache.environ(
                environ,
                base_dir=cache.root if cache is not None else workspace.place,
                place=workspace.place,
                work_dir=workspace.root / "compiler-cache",
                remote=remote,
            )
        if any("sccache" in value for value in environ.values()):  # else spare the import
            from kiln.compilers.sccache_server import start_users_sccache_server

            start_users_sccache_server(environ)  # before the build's TMPDIR can start it
        provider = _provider(request, workspace, env_dir, project, result, environ, constraints)
        session = Session(request, workspace, project, result, provider, env_dir, runners)
        try:
            yield session
        finally:
            session.close_runners()
            if compiler_cache is not None:
                result.compiler_cache = _compiler_cache_report(compiler_cache, remote)
    except BaseException as caught:
        # A full disk is named as such before the run is kept, so that keeping it
        # gives the space back rather than holding on to it.
        error = _named_if_disk_full(caught, request, outdir)
        if session is None and runners is not None:
            runners.close()  # failed before the build began: stop what started ahead
        if session is not None and session.environment_opened:
            _keep_failed(session, error, source)
        else:
            # Nothing was built yet: nothing worth keeping.
            with contextlib.suppress(OSError):
                workspace.log.section(f"kiln: error: {error}")
            _release(workspace, env_dir)
            if isinstance(error, KilnError) and cache is not None:
                error.log_path = workspace.log.path
        if error is caught:
            raise
        raise error from caught
    else:
        _release(workspace, env_dir)
        session.result.log_path = workspace.log.path if cache is not None else None


def _claim_places(
    request: BuildRequest, source: SourceInput, outdir: Path | None
) -> tuple[EnvDir | None, Cache | None, Workspace]:
    """The env dir (checked first: opening the cache may create it inside a
    directory about to be refused), the cache, and this run's directory."""
    env_dir = _claim_env_dir(request, source, outdir)
    try:
        cache = _open_cache(request)
        if env_dir is not None:
            run_id = new_run_id()
            workspace = Workspace(env_dir.run_dir, cache=cache, label=source.label, run_id=run_id)
        else:
            assert cache is not None  # without an env dir, an unusable cache is an error
            workspace = Workspace.in_cache(cache, source.label)
    except BaseException:
        if env_dir is not None:
            env_dir.clean()
        raise
    return env_dir, cache, workspace


def _keep_failed(session: Session, error: BaseException, source: SourceInput) -> None:
    """Keep a failed run for `kiln debug`, and attach where it is to the error."""
    if isinstance(error, KilnError):
        reason = str(error)
    elif isinstance(error, KeyboardInterrupt):
        reason = "interrupted"
    else:
        reason = f"{type(error).__name__}: {error}"
    location = session.provider.location
    # A full disk where the build's files are: keeping them would keep it full.
    keep_sources = not (
        isinstance(error, DiskFullError)
        and _same_file_system(error.directory, session.workspace.place)
    )
    cache = session.workspace.cache
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
    if not keep_sources and location is not None and location.parent == session.workspace.root:
        shutil.rmtree(location, ignore_errors=True)  # --fresh-env's, in the run directory
        location = None
    kept = session.workspace.fail(
        reason, source=source.path, environment=location, keep_sources=keep_sources
    )
    if not keep_sources:
        logger.warning("removed the failed build's files to free the space; its log: %s", kept)
    if session.env_dir is not None:
        session.env_dir.keep()
    if session.workspace.cache is not None:
        with contextlib.suppress(OSError):  # it only removes; never hide the error
            session.workspace.cache.prune()  # failed builds are kept, but only the newest few
    kept_build = KeptBuild(kept, location, kept / LOG_NAME)
    if isinstance(error, KilnError):
        error.log_path = kept_build.log
    # KeyboardInterrupt included: the CLI tells the user where to look.
    error.kiln_kept_build = kept_build  # type: ignore[attr-defined]
    logger.debug("failed build kept in %s", kept)


def _same_file_system(one: Path, other: Path) -> bool:
    # ``one`` may be gone since (a staging directory): its nearest parent will do.
    existing = next((p for p in (one, *one.parents) if p.exists()), one)
    try:
        return existing.stat().st_dev == other.stat().st_dev
    except OSError:
        return True  # cannot tell: give the space back rather than keep the disk full


def _compiler_cache(request: BuildRequest) -> tuple[CompilerCache | None, str | None]:
    # Off unless asked for, by option or by $KILN_COMPILER_CACHE (which "auto" defers to).
    choice = request.compiler_cache or (
        "auto" if os.environ.get("KILN_COMPILER_CACHE", "").strip() else "none"
    )
    remote_option = request.compiler_cache_remote
    if choice == "none" and not (remote_option or os.environ.get("KILN_COMPILER_CACHE_REMOTE")):
        return None, None  # the common case, without loading the module
    from kiln.compilers.common import redact_url
    from kiln.compilers.selection import compiler_cache_remote, select_compiler_cache

    selected = select_compiler_cache(choice)
    remote = compiler_cache_remote(remote_option)
    if remote and selected is None:
        logger.warning(
            "ignoring the compiler cache remote %s: no compiler cache is in use "
            "(pass --compiler-cache auto, ccache or sccache)",
            redact_url(remote),
        )
    return selected, remote


def _compiler_cache_report(compiler_cache: CompilerCache, remote: str | None) -> dict[str, Any]:
    """This build's hits and misses, logged and for the report; stops what the cache started."""
    from kiln.compilers.common import redact_url

    try:
        stats = compiler_cache.stats()
    finally:
        compiler_cache.close()
    report: dict[str, Any] = {
        "tool": compiler_cache.name,
        "executable": compiler_cache.executable,
        "remote": redact_url(remote) if remote else None,
    }
    if stats is not None:
        report.update(stats.as_dict())
        logger.info("Compiler cache (%s): %s", compiler_cache.name, stats.summary())
    return report


@dataclass(frozen=True)
class KeptBuild:
    """Where a failed build was kept: its run directory, environment and log."""

    run_dir: Path
    environment: Path | None
    log: Path


def _release(workspace: Workspace, env_dir: EnvDir | None) -> None:
    """Remove the run directory (keeping its log) and empty the env dir."""
    workspace.succeed()
    if env_dir is not None:
        env_dir.clean()


def _open_cache(request: BuildRequest) -> Cache | None:
    try:
        return Cache.open(request.cache_dir)
    except (UsageError, DiskFullError):
        if request.env_dir is None:
            raise
        # A read-only machine with one writable --env-dir: work in there alone.
        logger.info("cache directory unusable; keeping this run's files in the env dir")
        return None


def _claim_env_dir(
    request: BuildRequest, source: SourceInput, outdir: Path | None
) -> EnvDir | None:
    if request.env_dir is None:
        return None
    protected = [source.path, resolve_cache_dir(request.cache_dir), *([outdir] if outdir else [])]
    return EnvDir.claim(request.env_dir, must_not_contain=protected)


def _provider(
    request: BuildRequest,
    workspace: Workspace,
    env_dir: EnvDir | None,
    project: Project,
    result: BuildResult,
    environ: dict[str, str],
    constraint_files: ConstraintFiles,
) -> EnvironmentProvider:
    """Where the environment comes from: the current interpreter, the user's
    --env-dir, a throwaway one (--fresh-env), or the cache (the default)."""
    if not request.isolation:
        from kiln.environments.current import CurrentInterpreterProvider

        return CurrentInterpreterProvider(
            environ, check_requirements=not request.skip_dependency_check
        )
    from kiln.environments.virtual import FreshVirtualEnvProvider
    from kiln.installers import installer_cache_environ, select_installer

    installer = select_installer(request.installer)
    result.installer = installer.name
    # On a read-only machine the installer's own cache may be unwritable: give it
    # one inside this run rather than let the install fail.
    environ = installer_cache_environ(
        environ, workspace.root / "installer-cache", installers=[installer.name]
    )
    # The installer reads the run's copies: what the key was made from, read once.
    constraints = constraint_files.write(workspace.root / "constraints")
    cache = workspace.cache
    if env_dir is None and not request.fresh_env and cache is not None:
        from kiln.environments.cached import CachedEnvProvider

        return CachedEnvProvider(
            cache.root / ENVS,
            project.build_system.requires,
            installer=installer,
            constraints=constraints,
            base_environ=environ,
            refresh=request.refresh,
        )
    return FreshVirtualEnvProvider(
        env_dir.path if env_dir is not None else workspace.root / "env",
        installer=installer,
        constraints=constraints,
        base_environ=environ,
    )


def _prepare_backend(
    project: Project, environment: BuildEnvironment, distribution: str, session: Session
) -> tuple[Backend, tuple[str, ...]]:
    """A backend whose static and dynamic requirements for ``distribution`` are met.

    Also returns all those requirements, static first.
    """
    environment = environment.satisfy(project.build_system.requires, session.workspace.log)
    backend = _backend(project, environment, session)
    dynamic = backend.get_requires(distribution, session.config_settings(project, distribution))
    full = environment.satisfy(dynamic, session.workspace.log)
    if full is not environment:
        backend = _backend(project, full, session)
    return backend, (*project.build_system.requires, *dynamic)


def _backend(project: Project, environment: BuildEnvironment, session: Session) -> Backend:
    log = session.workspace.log
    return Backend(
        project,
        environment,
        log,
        handoff_root=session.workspace.hooks,
        record_path=session.workspace.hook_record,
        runner=session.runners.runner(environment, project.build_system, log),
    )


def _build_one(
    project: Project, environment: BuildEnvironment, distribution: str, session: Session
) -> tuple[Artifact, BuildStep]:
    started = time.monotonic()
    outdir = session.result.outdir
    assert outdir is not None
    backend, requirements = _prepare_backend(project, environment, distribution, session)
    logger.info("Building %s from %s", distribution, project.source_dir)
    hook = f"build_{distribution}"
    # A new name every build: runs with other caches may share the output directory.
    with staging_dir(outdir) as staging:
        settings = session.config_settings(project, distribution)
        name = backend.build(distribution, staging, settings)
        staged = check_artifact(staging, name, distribution, hook, session.workspace.log.path)
        if session.env_dir is not None:
            check_env_dir_left_out(staged, session.env_dir.path, project.source_dir, hook)
        artifact = publish(staged, outdir, distribution)
    step = BuildStep(
        distribution=distribution,
        source_dir=project.source_dir,
        backend=backend.name,
        requirements=requirements,
        seconds=time.monotonic() - started,
    )
    return artifact, step


def _unpack(archive: Path, destination: Path) -> Path:
    from kiln.sdist import unpack_sdist

    return unpack_sdist(archive, destination)


def _check_constraint_files(request: BuildRequest) -> ConstraintFiles:
    """Read the constraints files, and every file they include, once (a pipe,
    ``-c <(...)``, can only be read once); a missing or unreadable one is a UsageError."""
    from kiln.constraints import read_constraints

    return read_constraints([Path(c) for c in request.constraints])
