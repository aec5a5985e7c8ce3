"""Doing one build: a :class:`~kiln.planning.BuildPlan` carried out with the parts given.

:func:`run_build` and :func:`run_metadata` take the plan and the :class:`Parts`
(hook runners, environment provider, installer, compiler cache), each behind
its protocol, and put them in order: claim the run directory, load the
project, open the environment, run the hooks, publish from staging. Cleanup
is stacked as it becomes due (:class:`contextlib.ExitStack`): the runners are
closed, the compiler cache reports, and the run is either released (success,
or a failure before the environment existed) or kept for ``kiln debug``.

Nothing here reads ``os.environ`` or keeps state between calls: the caller's
environment comes in as a mapping, so one process may run many builds.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kiln import __version__
from kiln.backends import with_stable_build_dir
from kiln.cache import Cache
from kiln.environments import BuildEnvironment, EnvironmentProvider
from kiln.environments.envdir import EnvDir
from kiln.errors import (
    DiskFullError,
    KilnError,
    UsageError,
)
from kiln.headstart import HeadStart, plans_key
from kiln.hooks import Backend
from kiln.hooks.runners import RunnerPool, hand_head_start
from kiln.outcome import RunPlaces, disk_full_is_an_error, settled
from kiln.output import (
    check_artifact,
    check_env_dir_left_out,
    prepare_outdir,
    publish,
    refuse_outdir_in_cache,
    staging_dir,
)
from kiln.planning import BuildPlan, may_run_users_sccache
from kiln.project import Project
from kiln.request import SDIST, WHEEL
from kiln.result import ENVIRONMENT_TIMING, Artifact, BuildResult, BuildStep
from kiln.workspace import Workspace, new_run_id

if TYPE_CHECKING:
    from kiln.compilers import CompilerCache
    from kiln.installers import Installer
    from kiln.interpreters import Interpreter

logger = logging.getLogger("kiln")


class ProviderFactory(Protocol):
    """Makes the run's environment provider once the project and the build's
    environment variables are known (its requirements, its paths)."""

    def __call__(
        self,
        plan: BuildPlan,
        workspace: Workspace,
        env_dir: EnvDir | None,
        project: Project,
        environ: dict[str, str],
    ) -> EnvironmentProvider: ...


def start_users_sccache(environ: Mapping[str, str]) -> None:
    from kiln.compilers.sccache_server import start_users_sccache_server

    start_users_sccache_server(environ)


@dataclass
class Parts:
    """What the doing calls, each behind its seam; :func:`kiln.builder.assemble_parts`
    makes the real ones from a plan, tests hand in small fakes."""

    runners: RunnerPool
    provider: ProviderFactory
    installer: Installer | None = None
    compiler_cache: CompilerCache | None = None
    # The interpreter isolated environments are made from (--python); None: kiln's.
    interpreter: Interpreter | None = None
    # Starts the user's own sccache server for the build's environment variables.
    users_sccache: Callable[[Mapping[str, str]], None] = start_users_sccache


def run_build(
    plan: BuildPlan,
    parts: Parts,
    *,
    environ: Mapping[str, str],
    head_start: HeadStart | None = None,
) -> BuildResult:
    """Build the plan's distributions into its outdir; ``environ``: the caller's
    environment, the base of every subprocess's."""
    outdir = plan.outdir
    assert outdir is not None, "a plan for artifacts has an outdir"
    # Before the session: claiming the project's place empties a directory in the cache.
    refuse_outdir_in_cache(outdir, plan.cache_dir)
    with disk_full_is_an_error(plan), _session(plan, parts, environ, head_start) as session:
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
    return result


def run_metadata(
    plan: BuildPlan,
    parts: Parts,
    *,
    environ: Mapping[str, str],
    head_start: HeadStart | None = None,
) -> BuildResult:
    """The wheel's core metadata, without building; ``result.metadata`` holds it."""
    from packaging.metadata import parse_email

    with disk_full_is_an_error(plan), _session(plan, parts, environ, head_start) as session:
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
    return session.result


# --- the session: the run's places, claimed and settled ---------------------


@dataclass
class Session:
    """What one run works with: its plan, workspace, project, result and parts."""

    run: RunPlaces
    project: Project
    result: BuildResult
    runners: RunnerPool
    close_runners: Callable[[], None]
    workspace: Workspace = field(init=False)

    def __post_init__(self) -> None:
        self.workspace = self.run.workspace

    @property
    def env_dir(self) -> EnvDir | None:
        return self.run.env_dir

    def config_settings(self, project: Project, distribution: str) -> dict[str, Any]:
        """The plan's settings, plus a stable build directory where a backend needs one."""
        build_dir = self.workspace.stable_dir("build") / distribution
        settings = self.run.plan.config_settings
        return with_stable_build_dir(project, settings, build_dir, distribution)

    @contextlib.contextmanager
    def open_environment(self) -> Iterator[BuildEnvironment]:
        provider = self.run.provider
        assert provider is not None
        self.run.environment_opened = True
        with contextlib.ExitStack() as stack:
            with _environment_time(self.result):
                environment = stack.enter_context(provider.open(self.workspace.log))
            try:
                yield environment
            finally:
                # Warm workers run in the environment and keep notes in it: they stop
                # while this run still holds the environment's lock.
                self.close_runners()


@contextlib.contextmanager
def _session(
    plan: BuildPlan, parts: Parts, environ: Mapping[str, str], head_start: HeadStart | None
) -> Iterator[Session]:
    """Claim the places this run works in, load the project, and settle up afterwards.

    On success the run directory goes (and a user's env dir is emptied); after a
    failure past the point where the environment was made, both are kept, and
    the error says where.
    """
    source = plan.source
    with contextlib.ExitStack() as stack:
        close_runners = _once(parts.runners.close)
        stack.callback(close_runners)  # whatever happens: stop what started ahead
        env_dir, cache, workspace = _claim_places(plan)
        run = RunPlaces(plan, workspace, env_dir)
        stack.enter_context(settled(run))
        stack.callback(close_runners)  # once, and before the run is settled
        if workspace.worker_plans is not None:
            # As early as can be: it starts while kiln sets up the rest.
            plans_for = plans_key(source.path, plan.python)
            hand_head_start(parts.runners, workspace.worker_plans, plans_for, head_start)
        workspace.log.section(f"kiln {__version__} building {source.path}")
        if cache is not None:
            cache.prune(keep_running=workspace.root)
        project = Project.load(source.project_dir(workspace.stable_dir("source")))
        result = BuildResult(
            source=source.path,
            outdir=None,
            isolated=plan.environment != "current",
            installer=parts.installer.name if parts.installer is not None else None,
            python=sys.executable,
            log_path=workspace.log.path,
        )
        stack.push(_timings_onto_failure(result))
        if parts.interpreter is not None:
            result.python = str(parts.interpreter.path)
            result.python_version = parts.interpreter.dotted_version
        build_environ = workspace.subprocess_environ(environ)
        if parts.compiler_cache is not None:
            build_environ = parts.compiler_cache.environ(
                build_environ,
                base_dir=cache.root if cache is not None else workspace.place,
                place=workspace.place,
                work_dir=workspace.root / "compiler-cache",
                remote=plan.compiler_cache_remote,
                compilers=parts.interpreter.compilers if parts.interpreter else None,
            )
            stack.callback(_report_compiler_cache, parts.compiler_cache, plan, result)
        if may_run_users_sccache(build_environ):
            parts.users_sccache(build_environ)  # before the build's TMPDIR can start it
        run.provider = parts.provider(plan, workspace, env_dir, project, build_environ)
        yield Session(run, project, result, parts.runners, close_runners)
    result.log_path = workspace.log.path if cache is not None else None


def _once(close: Callable[[], None]) -> Callable[[], None]:
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            close()

    return once


def _claim_places(plan: BuildPlan) -> tuple[EnvDir | None, Cache | None, Workspace]:
    """The env dir (checked first: opening the cache may create it inside a
    directory about to be refused), the cache, and this run's directory."""
    env_dir = None
    if plan.env_dir is not None:
        protected = [plan.source.path, plan.cache_dir, *([plan.outdir] if plan.outdir else [])]
        env_dir = EnvDir.claim(plan.env_dir, must_not_contain=protected)
    try:
        cache = _open_cache(plan)
        if env_dir is not None:
            workspace = Workspace(
                env_dir.run_dir, cache=cache, label=plan.source.label, run_id=new_run_id()
            )
        else:
            assert cache is not None  # without an env dir, an unusable cache is an error
            workspace = Workspace.in_cache(cache, plan.source.label)
        workspace.open()
    except BaseException:
        if env_dir is not None:
            env_dir.clean()
        raise
    return env_dir, cache, workspace


def _open_cache(plan: BuildPlan) -> Cache | None:
    try:
        return Cache.open(plan.cache_dir)
    except (UsageError, DiskFullError):
        if plan.env_dir is None:
            raise
        # A read-only machine with one writable --env-dir: work in there alone.
        logger.info("cache directory unusable; keeping this run's files in the env dir")
        return None


def _report_compiler_cache(
    compiler_cache: CompilerCache, plan: BuildPlan, result: BuildResult
) -> None:
    """This build's hits and misses, logged and for the report; stops what the cache started."""
    from kiln.compilers.common import redact_url

    remote = plan.compiler_cache_remote
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
    result.compiler_cache = report


# --- the hooks ----------------------------------------------------------------


def _prepare_backend(
    project: Project, environment: BuildEnvironment, distribution: str, session: Session
) -> tuple[Backend, tuple[str, ...]]:
    """A backend whose static and dynamic requirements for ``distribution`` are met.

    Also returns all those requirements, static first.
    """
    with _environment_time(session.result):
        environment = environment.satisfy(project.build_system.requires, session.workspace.log)
    backend = _backend(project, environment, session)
    dynamic = backend.get_requires(distribution, session.config_settings(project, distribution))
    with _environment_time(session.result):
        full = environment.satisfy(dynamic, session.workspace.log)
    if full is not environment:
        backend = _backend(project, full, session)
    return backend, (*project.build_system.requires, *dynamic)


def _timings_onto_failure(result: BuildResult) -> Callable[..., bool]:
    """An exit callback: a failed build's error carries the time it spent so far."""

    def on_exit(kind: object, error: BaseException | None, traceback: object) -> bool:
        if isinstance(error, KilnError) and error.timings is None:
            error.timings = dict(result.timings)
        return False  # the error goes on

    return on_exit


@contextlib.contextmanager
def _environment_time(result: BuildResult) -> Iterator[None]:
    """Count the time inside as setting up the build environment (``timings``)."""
    started = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - started
        result.timings[ENVIRONMENT_TIMING] = result.timings.get(ENVIRONMENT_TIMING, 0.0) + seconds


def _backend(project: Project, environment: BuildEnvironment, session: Session) -> Backend:
    log = session.workspace.log
    return Backend(
        project,
        environment,
        log,
        handoff_root=session.workspace.hooks,
        record_path=session.workspace.hook_record,
        runner=session.runners.runner(environment, project.build_system, log),
        timings=session.result.timings,
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
