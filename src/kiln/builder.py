"""The orchestrator: one build, read top to bottom.

Source -> Project (validated) -> environment -> backend hooks -> staging ->
output directory. Each step is a small part behind a narrow seam; this module
only puts them in order.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kiln import __version__
from kiln.cache import Cache
from kiln.environments import BuildEnvironment, EnvironmentProvider
from kiln.errors import KilnError, UsageError
from kiln.hooks import Backend
from kiln.output import check_artifact, prepare_outdir, publish, staging_dir
from kiln.project import Project, SourceInput
from kiln.request import EDITABLE, SDIST, WHEEL, BuildRequest
from kiln.result import Artifact, BuildResult, BuildStep
from kiln.workspace import Workspace

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


def build(request: BuildRequest) -> BuildResult:
    """Build the distributions ``request`` asks for; see :class:`BuildRequest`."""
    started = time.monotonic()
    source = SourceInput.resolve(request.source)
    plan = plan_distributions(request, source)
    with _session(request, source) as (workspace, project, result):
        outdir = prepare_outdir(
            Path(request.outdir).absolute() if request.outdir else source.default_outdir
        )
        result.outdir = outdir
        with _provider(request, workspace, result).open(workspace.log) as environment:
            current = project
            for distribution in plan.distributions:
                artifact, step = _build_one(
                    current, environment, distribution, outdir, workspace, request
                )
                result.artifacts.append(artifact)
                result.steps.append(step)
                if plan.wheel_from_sdist and distribution == SDIST:
                    # The wheel is built from the sdist, which proves the sdist builds.
                    current = Project.load(_unpack(artifact.path, workspace.scratch / "from-sdist"))
    result.seconds = time.monotonic() - started
    return result


def prepare_metadata(request: BuildRequest) -> BuildResult:
    """Compute the wheel's core metadata without building; ``result.metadata`` holds it."""
    from packaging.metadata import parse_email

    started = time.monotonic()
    source = SourceInput.resolve(request.source)
    with _session(request, source) as (workspace, project, result):
        with _provider(request, workspace, result).open(workspace.log) as environment:
            backend, _ = _prepare_backend(project, environment, WHEEL, workspace, request)
            metadata_dir = workspace.scratch / "metadata"
            metadata_dir.mkdir()
            logger.info("Getting metadata for wheel")
            dist_info = backend.prepare_metadata(WHEEL, metadata_dir, request.config_settings)
            text = (metadata_dir / dist_info / "METADATA").read_bytes()
        raw, unparsed = parse_email(text)
        result.metadata = {**unparsed, **raw}
    result.seconds = time.monotonic() - started
    return result


@contextlib.contextmanager
def _session(
    request: BuildRequest, source: SourceInput
) -> Iterator[tuple[Workspace, Project, BuildResult]]:
    """Open the cache and a workspace, and load the project: shared by every entry point."""
    _check_constraints(request)
    cache = Cache.open(request.cache_dir)
    with Workspace(cache, source.label) as workspace:
        cache.prune_logs()
        logger.debug("build log: %s", workspace.log.path)
        workspace.log.section(f"kiln {__version__} building {source.path}")
        try:
            project = Project.load(source.project_dir(workspace.scratch / "source"))
            result = BuildResult(
                source=source.path,
                outdir=None,
                isolated=request.isolation,
                installer=None,
                python=sys.executable,
                log_path=workspace.log.path,
            )
            yield workspace, project, result
        except KilnError as error:
            workspace.log.section(f"kiln: error: {error}")
            error.log_path = error.log_path or workspace.log.path
            raise


def _provider(
    request: BuildRequest, workspace: Workspace, result: BuildResult
) -> EnvironmentProvider:
    environ = workspace.subprocess_environ()
    if not request.isolation:
        from kiln.environments.current import CurrentInterpreterProvider

        return CurrentInterpreterProvider(
            environ, check_requirements=not request.skip_dependency_check
        )
    from kiln.environments.virtual import ThrowawayProvider
    from kiln.installers import select_installer

    installer = select_installer(request.installer)
    result.installer = installer.name
    return ThrowawayProvider(
        workspace.scratch,
        installer=installer,
        constraints=request.constraints,
        base_environ=environ,
    )


def _prepare_backend(
    project: Project,
    environment: BuildEnvironment,
    distribution: str,
    workspace: Workspace,
    request: BuildRequest,
) -> tuple[Backend, tuple[str, ...]]:
    """A backend whose static and dynamic requirements for ``distribution`` are met.

    Also returns all those requirements, static first.
    """
    environment.satisfy(project.build_system.requires, workspace.log)
    backend = Backend(project, environment, workspace.log)
    dynamic = backend.get_requires(distribution, request.config_settings)
    environment.satisfy(dynamic, workspace.log)
    return backend, (*project.build_system.requires, *dynamic)


def _build_one(
    project: Project,
    environment: BuildEnvironment,
    distribution: str,
    outdir: Path,
    workspace: Workspace,
    request: BuildRequest,
) -> tuple[Artifact, BuildStep]:
    started = time.monotonic()
    backend, requirements = _prepare_backend(project, environment, distribution, workspace, request)
    logger.info("Building %s from %s", distribution, project.source_dir)
    with staging_dir(outdir) as staging:
        name = backend.build(distribution, staging, request.config_settings)
        hook = f"build_{distribution}"
        staged = check_artifact(staging, name, distribution, hook, workspace.log.path)
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


def _check_constraints(request: BuildRequest) -> None:
    if request.constraints and not request.isolation:
        raise UsageError(
            "-c/--constraint applies to installs; it has no effect with --no-isolation"
        )
    for constraint in request.constraints:
        if not Path(constraint).is_file():
            raise UsageError(f"constraint file {constraint} does not exist")
