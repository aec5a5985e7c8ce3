"""The deciding and the doing of one build, without a real backend or environment.

:func:`kiln.planning.plan_build` is pure: it is tested with no process and no
file written. :func:`kiln.orchestrator.run_build` is tested with a small fake of
each part (an environment provider yielding a fake environment, hook runners
whose "backend" answers the hook protocol in this process and writes a small
file into staging); the real builds are in the integration tests.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kiln.environments import BuildEnvironment, EnvironmentProvider
from kiln.environments.envdir import EnvDir
from kiln.errors import (
    DiskFullError,
    HookFailedError,
    Interrupted,
    KilnError,
    Terminated,
    UsageError,
)
from kiln.headstart import HeadStart
from kiln.hooks.plain import HookProcessError, SubprocessRunner
from kiln.orchestrator import Parts, run_build, run_metadata
from kiln.planning import BuildPlan, may_run_users_sccache, plan_build
from kiln.process import BuildLog
from kiln.project import BuildSystem, Project, SourceInput
from kiln.request import BuildRequest
from kiln.workspace import Workspace

# --------------------------------------------------------------------------- deciding


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any process started from here on fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def a_project(tmp_path: Path) -> SourceInput:
    return SourceInput(tmp_path / "proj", is_archive=False)


def test_the_default_plan(tmp_path: Path, no_processes: None) -> None:
    source = a_project(tmp_path)
    plan = plan_build(BuildRequest(source.path, cache_dir=tmp_path / "c"), source)
    assert plan.distributions == ("sdist", "wheel")
    assert plan.wheel_from_sdist
    assert plan.outdir == source.path / "dist"
    assert plan.cache_dir == tmp_path / "c"
    assert (plan.environment, plan.installer, plan.hook_runner) == ("cached", "auto", "auto")
    assert (plan.compiler_cache, plan.compiler_cache_remote) == ("none", None)
    assert not (tmp_path / "c").exists(), "deciding creates nothing"


def test_the_plan_reads_the_request_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_processes: None
) -> None:
    # The KILN_* variables were read into the request at the edge (kiln.options).
    monkeypatch.setenv("KILN_HOOK_RUNNER", "warm")
    monkeypatch.setenv("KILN_COMPILER_CACHE", "ccache")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "not-read"))
    source = a_project(tmp_path)
    plan = plan_build(BuildRequest(source.path), source)
    assert (plan.hook_runner, plan.compiler_cache) == ("auto", "none")
    assert plan.cache_dir != tmp_path / "not-read"
    request = BuildRequest(
        source.path,
        hook_runner="plain",
        compiler_cache="sccache",
        compiler_cache_remote="redis://cache",
        cache_dir=tmp_path / "given",
        env_ttl=60.0,
    )
    plan = plan_build(request, source)
    assert (plan.hook_runner, plan.compiler_cache) == ("plain", "sccache")
    assert (plan.compiler_cache_remote, plan.cache_dir) == ("redis://cache", tmp_path / "given")
    assert plan.env_ttl == 60.0


@pytest.mark.parametrize(
    ("options", "kind", "installer"),
    [
        ({}, "cached", "auto"),
        ({"fresh_env": True, "installer": "pip"}, "fresh", "pip"),
        ({"env_dir": Path("envs/here")}, "env-dir", "auto"),
        ({"isolation": False}, "current", None),
    ],
)
def test_the_environment_kind(
    tmp_path: Path, options: dict[str, Any], kind: str, installer: str | None, no_processes: None
) -> None:
    source = a_project(tmp_path)
    plan = plan_build(BuildRequest(source.path, **options), source)
    assert (plan.environment, plan.installer) == (kind, installer)
    if "env_dir" in options:
        assert plan.env_dir == Path("envs/here").absolute()


def test_distributions_in_order_and_metadata_has_none(tmp_path: Path) -> None:
    source = a_project(tmp_path)
    request = BuildRequest(source.path, outdir=Path("out"), distributions=("wheel", "sdist"))
    plan = plan_build(request, source)
    assert (plan.distributions, plan.wheel_from_sdist) == (("sdist", "wheel"), False)
    assert plan.outdir == Path("out").absolute()
    metadata = plan_build(BuildRequest(source.path), source, artifacts=False)
    assert (metadata.distributions, metadata.outdir) == ((), None)


def test_an_sdist_archive_builds_a_wheel_only(tmp_path: Path) -> None:
    archive = SourceInput(tmp_path / "proj-1.0.tar.gz", is_archive=True)
    plan = plan_build(BuildRequest(archive.path), archive)
    assert (plan.distributions, plan.outdir) == (("wheel",), tmp_path)
    with pytest.raises(UsageError, match="is already an sdist"):
        plan_build(BuildRequest(archive.path, distributions=("sdist",)), archive)
    with pytest.raises(UsageError, match="needs a project directory"):
        plan_build(BuildRequest(archive.path, distributions=("editable",)), archive)


def test_a_wheel_and_an_editable_wheel_are_refused(tmp_path: Path) -> None:
    source = a_project(tmp_path)
    request = BuildRequest(source.path, distributions=("wheel", "editable"))
    with pytest.raises(UsageError, match="cannot be built in one run"):
        plan_build(request, source)


@pytest.mark.skipif(os.name != "posix", reason="file names are bytes on POSIX only")
def test_a_cache_dir_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    source = a_project(tmp_path)
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9")
    with pytest.raises(UsageError, match="is not a UTF-8 path"):
        plan_build(BuildRequest(source.path, cache_dir=Path(odd)), source)
    plan = plan_build(BuildRequest(source.path, isolation=False, cache_dir=Path(odd)), source)
    assert plan.environment == "current", "no environment is made there"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        # Only a variable that names a compiler or a wrapper counts.
        ({"HOME": "/home/sccache-fan", "PATH": "/opt/sccache/bin:/usr/bin"}, False),
        ({"CC": "gcc", "SCCACHE_DIR": "/var/sccache"}, False),
        ({"CC": "sccache gcc"}, True),
        ({"CXX": "/usr/bin/SCCACHE g++"}, True),
        ({"RUSTC_WRAPPER": "/opt/bin/sccache"}, True),
        ({"CARGO_BUILD_RUSTC_WRAPPER": "sccache"}, True),
        ({"CMAKE_C_COMPILER_LAUNCHER": "sccache"}, True),
        ({"CMAKE_CXX_COMPILER_LAUNCHER": "sccache;--flag"}, True),
    ],
)
def test_the_users_sccache_is_considered_from_compiler_variables_only(
    environ: dict[str, str], expected: bool
) -> None:
    assert may_run_users_sccache(environ) is expected


def test_a_workspace_is_made_by_open_not_by_its_constructor(tmp_path: Path) -> None:
    from kiln.cache import Cache

    cache = Cache.open(tmp_path / "cache")
    before = sorted(p.relative_to(cache.root) for p in cache.root.rglob("*"))
    workspace = Workspace.in_cache(cache, "proj")
    assert sorted(p.relative_to(cache.root) for p in cache.root.rglob("*")) == before
    with pytest.raises(RuntimeError, match="not open yet"):
        workspace.log  # noqa: B018
    workspace.open()
    assert workspace.root.is_dir() and workspace.tmp.is_dir()
    assert workspace.log.path.is_file()
    workspace.succeed()
    assert not workspace.root.exists()


# --------------------------------------------------------------------------- doing


@dataclass
class FakeEnvironment:
    satisfied: list[str] = field(default_factory=list)
    python: Path = Path(sys.executable)
    isolated: bool = True
    state_dir: Path | None = None

    def satisfy(self, requirements: Sequence[str], log: BuildLog) -> BuildEnvironment:
        self.satisfied.extend(requirements)
        return self

    def hook_environ(self) -> dict[str, str]:
        return {"FAKE": "1"}


@dataclass
class FakeProvider:
    location: Path | None
    environment: FakeEnvironment = field(default_factory=FakeEnvironment)
    events: list[str] = field(default_factory=list)

    @contextmanager
    def open(self, log: BuildLog) -> Iterator[BuildEnvironment]:
        self.events.append("open")
        try:
            yield self.environment
        finally:
            self.events.append("close")


@dataclass
class FakeProviders:
    """The provider factory: one fake provider; records what the doing passed."""

    provider: FakeProvider
    environ: dict[str, str] | None = None
    env_dir: EnvDir | None = None

    def __call__(
        self,
        plan: BuildPlan,
        workspace: Workspace,
        env_dir: EnvDir | None,
        project: Project,
        environ: dict[str, str],
    ) -> EnvironmentProvider:
        self.environ, self.env_dir = environ, env_dir
        return self.provider


def fake_backend(hook: str, kwargs: dict[str, Any]) -> Any:
    """What a tiny backend answers, in this process."""
    if hook.startswith("get_requires_for_build_"):
        return ["dynamic-req"]
    if hook == "build_wheel":
        name = "demo-1.0-py3-none-any.whl"
        (Path(kwargs["wheel_directory"]) / name).write_bytes(b"wheel")
        return name
    if hook == "prepare_metadata_for_build_wheel":
        dist_info = Path(kwargs["metadata_directory"]) / "demo-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
        return dist_info.name
    raise AssertionError(f"unexpected hook {hook}")


@dataclass
class FakeHookRunner:
    """pyproject-hooks' runner signature; answers through the handoff files."""

    calls: list[str]
    fail_on: str | None = None
    raise_on_fail: BaseException | None = None

    def __call__(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        hook, handoff = cmd[2], Path(cmd[3])
        self.calls.append(hook)
        if hook == self.fail_on:
            if self.raise_on_fail is not None:
                raise self.raise_on_fail
            raise HookProcessError(1, cmd, ["Traceback ...", "ValueError: boom"])
        kwargs = json.loads((handoff / "input.json").read_text())["kwargs"]
        output = {"return_val": fake_backend(hook, kwargs)}
        (handoff / "output.json").write_text(json.dumps(output))


@dataclass
class FakeRunners:
    runner_: FakeHookRunner
    name: str = "fake"
    head_starts: list[tuple[Path, Path, HeadStart | None]] = field(default_factory=list)
    closed: int = 0

    def runner(
        self, environment: BuildEnvironment, build_system: BuildSystem, log: BuildLog
    ) -> SubprocessRunner:
        return self.runner_

    def head_start(self, plans: Path, source: Path, started: HeadStart | None = None) -> None:
        self.head_starts.append((plans, source, started))

    def close(self) -> None:
        self.closed += 1


@dataclass
class Fakes:
    tmp: Path
    source: SourceInput
    provider: FakeProvider
    providers: FakeProviders
    runners: FakeRunners
    sccache_calls: list[Mapping[str, str]]

    def parts(self) -> Parts:
        return Parts(
            runners=self.runners, provider=self.providers, users_sccache=self.sccache_calls.append
        )

    def plan(self, **options: Any) -> BuildPlan:
        options.setdefault("distributions", ("wheel",))
        options.setdefault("outdir", self.tmp / "out")
        request = BuildRequest(self.source.path, cache_dir=self.tmp / "cache", **options)
        return plan_build(request, self.source)

    def build(self, environ: Mapping[str, str] | None = None, **options: Any) -> Any:
        plan = self.plan(**options)
        return run_build(plan, self.parts(), environ=environ or {"PATH": "/usr/bin"})


@pytest.fixture
def fakes(tmp_path: Path, no_processes: None) -> Fakes:
    source_dir = tmp_path / "proj"
    source_dir.mkdir()
    (source_dir / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["static-req"]\nbuild-backend = "fake_backend"\n'
    )
    provider = FakeProvider(location=tmp_path / "env")
    return Fakes(
        tmp_path,
        SourceInput(source_dir, is_archive=False),
        provider,
        FakeProviders(provider),
        FakeRunners(FakeHookRunner([])),
        [],
    )


def kept_runs(fakes: Fakes) -> list[Path]:
    runs = fakes.tmp / "cache" / "runs-v1"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def test_a_build_runs_the_parts_in_order_and_releases_the_run(fakes: Fakes) -> None:
    result = fakes.build(environ={"PATH": "/usr/bin", "CC": "gcc"})
    assert [a.name for a in result.artifacts] == ["demo-1.0-py3-none-any.whl"]
    assert (fakes.tmp / "out" / "demo-1.0-py3-none-any.whl").read_bytes() == b"wheel"
    assert fakes.runners.runner_.calls == ["get_requires_for_build_wheel", "build_wheel"]
    assert fakes.provider.events == ["open", "close"]
    assert fakes.provider.environment.satisfied == ["static-req", "dynamic-req"]
    assert result.steps[0].requirements == ("static-req", "dynamic-req")
    assert fakes.runners.closed == 1, "the runners are closed once"
    assert kept_runs(fakes) == [], "a good run leaves no run directory"
    assert result.log_path is not None and result.log_path.is_file()
    assert result.installer is None, "no installer part was given"


def test_the_doing_reads_only_the_environment_it_is_given(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_TEST_NOT_PASSED", "1")
    fakes.build(environ={"PATH": "/usr/bin", "GIVEN": "yes"})
    environ = fakes.providers.environ
    assert environ is not None
    assert environ["GIVEN"] == "yes" and "KILN_TEST_NOT_PASSED" not in environ
    assert Path(environ["TMPDIR"]).name == "tmp", "temporary files go into the run's place"


def test_the_head_start_is_handed_to_the_runners(fakes: Fakes) -> None:
    started = object()
    plan = fakes.plan()
    run_build(plan, fakes.parts(), environ={}, head_start=started)  # type: ignore[arg-type]
    [(plans, source, handed)] = fakes.runners.head_starts
    assert (source, handed) == (fakes.source.path, started)
    assert plans.parent == fakes.tmp / "cache" / "projects-v1"


def test_the_users_sccache_starts_for_compiler_variables_only(fakes: Fakes) -> None:
    fakes.build(environ={"HOME": "/home/sccache-fan", "PATH": "/opt/sccache/bin"})
    assert fakes.sccache_calls == []
    fakes.build(environ={"CC": "sccache gcc", "PATH": "/usr/bin"})
    [environ] = fakes.sccache_calls
    assert environ["CC"] == "sccache gcc" and "TMPDIR" in environ


def test_a_failed_hook_keeps_the_build_and_says_where(fakes: Fakes) -> None:
    fakes.runners.runner_.fail_on = "build_wheel"
    with pytest.raises(HookFailedError) as caught:
        fakes.build()
    kept = caught.value.kept_build
    [run] = kept_runs(fakes)
    assert kept is not None and kept.run_dir == run
    assert kept.environment == fakes.tmp / "env"
    assert caught.value.log_path == kept.log == run / "build.log"
    assert json.loads((run / "failed.json").read_text())["reason"].startswith(
        "the build backend's build_wheel hook failed"
    )
    assert fakes.runners.closed == 1
    assert not (fakes.tmp / "out" / "demo-1.0-py3-none-any.whl").exists()


def test_a_failure_before_the_environment_keeps_nothing(fakes: Fakes) -> None:
    (fakes.source.path / "pyproject.toml").write_text("[build-system]\n")
    with pytest.raises(KilnError, match="has no 'requires' key") as caught:
        fakes.build()
    assert caught.value.kept_build is None
    assert kept_runs(fakes) == []
    assert fakes.provider.events == [] and fakes.runners.closed == 1
    assert caught.value.log_path is not None and caught.value.log_path.is_file()


@pytest.mark.parametrize(
    "interrupt", [KeyboardInterrupt(), Terminated(15, "SIGTERM")], ids=["ctrl-c", "sigterm"]
)
def test_an_interrupted_build_is_kept_and_the_interrupt_says_where(
    fakes: Fakes, interrupt: KeyboardInterrupt
) -> None:
    fakes.runners.runner_.fail_on = "build_wheel"
    fakes.runners.runner_.raise_on_fail = interrupt
    with pytest.raises(Interrupted) as caught:
        fakes.build()
    [run] = kept_runs(fakes)
    assert caught.value.kept_build is not None and caught.value.kept_build.run_dir == run
    assert caught.value.exit_code == (143 if isinstance(interrupt, Terminated) else 130)
    if isinstance(interrupt, Terminated):
        assert caught.value is interrupt, "a Terminated keeps its signal"


def test_a_full_disk_is_named_and_the_files_given_back(fakes: Fakes) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", str(fakes.tmp / "cache" / "x"))
    fakes.runners.runner_.fail_on = "build_wheel"
    fakes.runners.runner_.raise_on_fail = full
    with pytest.raises(DiskFullError, match="no space is left") as caught:
        fakes.build()
    assert caught.value.exit_code == 3
    kept = caught.value.kept_build
    assert kept is not None and kept.log.is_file()
    assert "its files were removed to free the space" in (kept.run_dir / "failed.json").read_text()


def test_an_env_dir_is_released_after_success_and_kept_after_failure(fakes: Fakes) -> None:
    env_dir = fakes.tmp / "my-env"
    fakes.build(env_dir=env_dir)
    assert fakes.providers.env_dir is not None
    assert not env_dir.exists(), "kiln made it, so kiln removes it"
    env_dir.mkdir()
    fakes.build(env_dir=env_dir)
    assert list(env_dir.iterdir()) == [], "the user's own directory is emptied, not removed"
    fakes.runners.runner_.fail_on = "build_wheel"
    with pytest.raises(HookFailedError) as caught:
        fakes.build(env_dir=env_dir)
    kept = caught.value.kept_build
    assert kept is not None and kept.run_dir.parent == env_dir
    assert (kept.run_dir / "failed.json").is_file()


def test_metadata_without_building(fakes: Fakes) -> None:
    request = BuildRequest(fakes.source.path, cache_dir=fakes.tmp / "cache")
    plan = plan_build(request, fakes.source, artifacts=False)
    result = run_metadata(plan, fakes.parts(), environ={})
    assert result.metadata is not None and result.metadata["name"] == "demo"
    assert fakes.runners.runner_.calls == [
        "get_requires_for_build_wheel",
        "prepare_metadata_for_build_wheel",
    ]
    assert kept_runs(fakes) == []
