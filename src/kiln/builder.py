"""One build as a library call: decide, assemble the parts, do.

``build(request)`` reads top to bottom: resolve the source, make the plan
(:mod:`kiln.planning`, pure), choose the real parts the plan names
(:func:`assemble_parts`: installer, hook runners, compiler cache, environment
provider), and hand both to :mod:`kiln.orchestrator`, which runs them. The
process's environment is read here, at the edge, and passed down.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kiln.environments import EnvironmentProvider
from kiln.environments.envdir import EnvDir
from kiln.errors import KeptBuild
from kiln.headstart import HeadStart
from kiln.hooks.runners import select_runner_pool
from kiln.layout import ENVS
from kiln.orchestrator import Parts, run_build, run_metadata
from kiln.outcome import disk_full_is_an_error
from kiln.planning import BuildPlan, Plan, plan_build, plan_distributions
from kiln.project import Project, SourceInput
from kiln.request import BuildRequest
from kiln.result import BuildResult
from kiln.workspace import Workspace

if TYPE_CHECKING:
    from kiln.compilers import CompilerCache
    from kiln.constraints import ConstraintFiles
    from kiln.installers import Installer
    from kiln.interpreters import Interpreter

logger = logging.getLogger("kiln")

# Where they were before the split; callers and tests import them from here.
__all__ = [
    "KeptBuild",
    "Plan",
    "StandardProviders",
    "assemble_parts",
    "build",
    "plan_distributions",
    "prepare_metadata",
]


def build(
    request: BuildRequest,
    *,
    head_start: HeadStart | None = None,
    environ: Mapping[str, str] | None = None,
) -> BuildResult:
    """Build the distributions ``request`` asks for; see :class:`BuildRequest`.
    ``head_start``: a warm worker started ahead (see :mod:`kiln.headstart`);
    ``environ``: the environment the build starts from (default: this process's)."""
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    source = SourceInput.resolve(request.source)
    plan = plan_build(request, source)
    parts = assemble_parts(plan, environ)
    result = run_build(plan, parts, environ=environ, head_start=head_start)
    result.seconds = time.monotonic() - started
    return result


def prepare_metadata(
    request: BuildRequest,
    *,
    head_start: HeadStart | None = None,
    environ: Mapping[str, str] | None = None,
) -> BuildResult:
    """Compute the wheel's core metadata without building; ``result.metadata`` holds it."""
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    source = SourceInput.resolve(request.source)
    plan = plan_build(request, source, artifacts=False)
    parts = assemble_parts(plan, environ)
    result = run_metadata(plan, parts, environ=environ, head_start=head_start)
    result.seconds = time.monotonic() - started
    return result


def assemble_parts(plan: BuildPlan, environ: Mapping[str, str]) -> Parts:
    """The real parts ``plan`` names. Reads the constraints files; finds the tools
    (a compiler cache or installer asked for by name but missing stops the build
    here, before anything is claimed). Starts nothing."""
    with disk_full_is_an_error(plan):
        from kiln.constraints import read_constraints

        # Read once, and every file they include (a pipe, ``-c <(...)``, can only be
        # read once); a missing or unreadable one is a UsageError.
        constraints = read_constraints(list(plan.constraints))
    compiler_cache = _compiler_cache(plan, environ)
    interpreter = None
    if plan.python is not None:
        from kiln.interpreters import find_interpreter

        # A bad --python stops the build here, before anything is claimed.
        interpreter = find_interpreter(plan.python, environ)
        logger.info("Building for %s", interpreter.describe())
    installer = None
    if plan.installer is not None:
        from kiln.installers import select_installer

        installer = select_installer(plan.installer)
    return Parts(
        runners=select_runner_pool(plan.hook_runner),
        provider=StandardProviders(installer, constraints, interpreter),
        installer=installer,
        compiler_cache=compiler_cache,
        interpreter=interpreter,
    )


def _compiler_cache(plan: BuildPlan, environ: Mapping[str, str]) -> CompilerCache | None:
    if plan.compiler_cache == "none" and not plan.compiler_cache_remote:
        return None  # the common case, without loading the package
    from kiln.compilers.common import redact_url
    from kiln.compilers.selection import select_compiler_cache

    selected = select_compiler_cache(plan.compiler_cache, environ)
    remote = plan.compiler_cache_remote
    if remote and selected is None:
        logger.warning(
            "ignoring the compiler cache remote %s: no compiler cache is in use "
            "(pass --compiler-cache auto, ccache or sccache)",
            redact_url(remote),
        )
    return selected


class StandardProviders:
    """kiln's environment providers, by the plan's kind: the current interpreter,
    the user's --env-dir, a throwaway one (--fresh-env), or the cache (the default);
    isolated ones made from ``interpreter`` (--python), else from the running one."""

    def __init__(
        self,
        installer: Installer | None,
        constraints: ConstraintFiles,
        interpreter: Interpreter | None = None,
    ) -> None:
        self.installer = installer
        self.constraints = constraints
        self.interpreter = interpreter

    def __call__(
        self,
        plan: BuildPlan,
        workspace: Workspace,
        env_dir: EnvDir | None,
        project: Project,
        environ: dict[str, str],
    ) -> EnvironmentProvider:
        if plan.environment == "current":
            from kiln.environments.current import CurrentInterpreterProvider

            return CurrentInterpreterProvider(environ, check_requirements=plan.check_requirements)
        from kiln.environments.virtual import FreshVirtualEnvProvider
        from kiln.installers import installer_cache_environ

        installer = self.installer
        assert installer is not None, "an isolated environment needs an installer"
        # On a read-only machine the installer's own cache may be unwritable: give it
        # one inside this run rather than let the install fail.
        environ = installer_cache_environ(
            environ, workspace.root / "installer-cache", installers=[installer.name]
        )
        # The installer reads the run's copies: what the key was made from, read once.
        constraints = self.constraints.write(workspace.root / "constraints")
        cache = workspace.cache
        if plan.environment == "cached" and cache is not None:
            from kiln.environments.cached import CachedEnvProvider

            return CachedEnvProvider(
                cache.root / ENVS,
                project.build_system.requires,
                installer=installer,
                constraints=constraints,
                base_environ=environ,
                refresh=plan.refresh,
                ttl=plan.env_ttl,
                interpreter=self.interpreter,
            )
        location = env_dir.path if env_dir is not None else workspace.root / "env"
        return FreshVirtualEnvProvider(
            location,
            installer=installer,
            constraints=constraints,
            base_environ=environ,
            interpreter=self.interpreter,
        )
