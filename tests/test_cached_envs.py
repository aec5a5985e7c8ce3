"""Reusable environments: reused when intact; rebuilt when damaged, modified,
expired, refreshed or when what they hold changes; shared safely between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kiln
from kiln.environments.cached import RECORD_NAME, prune_environments
from kiln.locks import FileLock
from tests.conftest import ProjectFactory
from tests.helpers import run_kiln

pytestmark = pytest.mark.integration


def envs(cache: Path) -> list[Path]:
    bucket = cache / "envs-v1"
    return sorted(p for p in bucket.iterdir() if p.is_dir()) if bucket.is_dir() else []


@pytest.fixture
def cache() -> Path:
    return Path(os.environ["KILN_CACHE_DIR"])


def build_log(source: Path, tmp_path: Path, *args: str) -> str:
    """Build a wheel; return the run's log."""
    result = kiln.build(
        source,
        tmp_path / "out",
        ["wheel"],
        installer="uv",
        refresh="--refresh" in args,
        fresh_env="--fresh-env" in args,
    )
    assert result.log_path is not None
    return result.log_path.read_text()


def created(log: str) -> bool:
    return "=== creating build environment" in log


def test_second_build_reuses_the_environment_at_a_stable_path(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("flit_project")
    first = build_log(source, tmp_path)
    [environment] = envs(cache)
    second = build_log(source, tmp_path)
    assert created(first) and not created(second)
    assert f"reusing build environment at {environment}" in second
    assert "uv pip install" not in second
    assert envs(cache) == [environment]


def test_projects_with_the_same_requirements_share_an_environment(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    build_log(project("setuptools_pyproject"), tmp_path)
    log = build_log(project("probe_backend"), tmp_path)  # also requires setuptools>=77
    assert not created(log)
    assert len(envs(cache)) == 1


def test_different_requirements_get_different_environments(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    build_log(project("flit_project"), tmp_path)
    build_log(project("hatchling_project"), tmp_path)
    assert len(envs(cache)) == 2


@pytest.mark.parametrize("damage", ["file-deleted", "file-changed", "interpreter-gone"])
def test_damaged_environment_is_rebuilt(
    project: ProjectFactory, tmp_path: Path, cache: Path, damage: str
) -> None:
    source = project("flit_project")
    build_log(source, tmp_path)
    [environment] = envs(cache)
    [site] = environment.glob("lib/python*/site-packages")
    module = site / "flit_core" / "common.py"
    if damage == "file-deleted":
        module.unlink()
    elif damage == "file-changed":
        # Replaced, not edited in place: uv hardlinks files from its own cache.
        text = module.read_text()
        module.unlink()
        module.write_text(text + "\n# edited\n")
    else:
        (environment / "bin" / "python").unlink()
    log = build_log(source, tmp_path)
    assert created(log)
    assert envs(cache) == [environment]  # same key, same path
    assert module.is_file() and "# edited" not in module.read_text()


def test_half_made_environment_is_rebuilt(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("flit_project")
    build_log(source, tmp_path)
    [environment] = envs(cache)
    (environment / RECORD_NAME).unlink()  # as a crash before the record is written leaves it
    log = build_log(source, tmp_path)
    assert "half made (no record)" in log


def test_a_build_that_changes_its_environment_makes_it_unfit(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("setuptools_legacy")
    # A setup.py that installs something into its build environment, as some do.
    setup = source / "setup.py"
    setup.write_text(
        "import sysconfig, pathlib\n"
        "pathlib.Path(sysconfig.get_paths()['purelib'], 'installed_by_build.py').write_text('')\n"
        + setup.read_text()
    )
    first = build_log(source, tmp_path)
    assert "it will be rebuilt next time" in first
    second = build_log(source, tmp_path)
    assert created(second)
    assert "a build changed its files" in second


def test_unpinned_environment_expires(
    project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project("flit_project")  # requires flit_core>=3.12,<5: unpinned
    build_log(source, tmp_path)
    monkeypatch.setenv("KILN_ENV_TTL", "0")
    log = build_log(source, tmp_path)
    assert created(log)
    assert "resolved more than 0 s ago from unpinned requirements" in log


def test_pinned_environment_never_expires(
    project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project("flit_project")
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flit_core>=3.12,<5"', '"flit_core==4.2.0"')
    )
    build_log(source, tmp_path)
    monkeypatch.setenv("KILN_ENV_TTL", "0")
    assert not created(build_log(source, tmp_path))


def test_bad_ttl_is_a_usage_error(project: ProjectFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_ENV_TTL", "a day")
    completed = run_kiln(project("flit_project"), "-w")
    assert completed.returncode == 2
    assert "KILN_ENV_TTL='a day' is not a number of seconds" in completed.stderr


def test_refresh_rebuilds_now(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("flit_project")
    build_log(source, tmp_path)
    log = build_log(source, tmp_path, "--refresh")
    assert created(log)
    assert not created(build_log(source, tmp_path))


def test_constraints_are_part_of_the_key(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("flit_project")
    constraints = tmp_path / "c.txt"
    constraints.write_text("flit-core==4.2.0\n")
    kiln.build(source, tmp_path / "a", ["wheel"], constraints=[constraints])
    kiln.build(source, tmp_path / "b", ["wheel"])
    assert len(envs(cache)) == 2


def test_dynamic_requirements_get_the_environment_for_the_full_set(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("intree_backend")  # get_requires_for_build_wheel adds "wheel"
    first = build_log(source, tmp_path)
    assert first.count("=== creating build environment") == 2
    keys = {
        tuple(json.loads((e / RECORD_NAME).read_text())["key"]["requirements"]) for e in envs(cache)
    }
    assert keys == {("setuptools>=77",), ("setuptools>=77", "wheel")}
    assert not created(build_log(source, tmp_path))


def test_sdist_and_wheel_steps_share_one_environment(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    result = kiln.build(project("hatchling_project"), tmp_path / "out", installer="uv")
    assert result.log_path is not None
    assert result.log_path.read_text().count("=== creating build environment") == 1
    assert len(envs(cache)) == 1


def test_fresh_env_leaves_the_cache_alone(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    log = build_log(project("flit_project"), tmp_path, "--fresh-env")
    assert created(log)
    assert envs(cache) == []


def test_refresh_without_a_cached_environment_is_a_usage_error(
    project: ProjectFactory, tmp_path: Path
) -> None:
    completed = run_kiln(project("flit_project"), "--refresh", "--fresh-env")
    assert completed.returncode == 2
    assert "--refresh re-resolves a reusable cached environment" in completed.stderr


def test_clean_spares_an_environment_in_use(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    build_log(project("flit_project"), tmp_path)
    build_log(project("hatchling_project"), tmp_path)
    idle, in_use = envs(cache)
    with FileLock(cache / "envs-v1" / f"{in_use.name}.lock") as lock:
        lock.acquire_shared()
        completed = run_kiln("cache", "clean")
    assert completed.returncode == 0, completed.stderr
    assert not idle.exists()
    assert in_use.is_dir() and (in_use / RECORD_NAME).is_file()
    assert f"kept {in_use}" in completed.stderr


def test_fresh_env_with_env_dir_is_a_usage_error(project: ProjectFactory, tmp_path: Path) -> None:
    completed = run_kiln(project("flit_project"), "--fresh-env", "--env-dir", tmp_path / "e")
    assert completed.returncode == 2
    assert "pick one" in completed.stderr


def test_concurrent_runs_make_an_environment_once(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    sources = [project("flit_project").rename(tmp_path / f"copy{i}") for i in range(3)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiln",
                str(source),
                "-w",
                "-o",
                str(tmp_path / f"o{i}"),
                "--report",
                str(tmp_path / f"r{i}.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, source in enumerate(sources)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    logs = [
        Path(json.loads((tmp_path / f"r{i}.json").read_text())["log"]).read_text()
        for i in range(len(processes))
    ]
    assert sum(created(log) for log in logs) == 1
    assert len(envs(cache)) == 1


def test_prune_removes_unused_environments_but_never_one_in_use(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    build_log(project("flit_project"), tmp_path)
    build_log(project("hatchling_project"), tmp_path)
    old, in_use = envs(cache)
    long_ago = time.time() - 30 * 24 * 3600
    for environment in (old, in_use):
        os.utime(environment / ".last-used", (long_ago, long_ago))
    with FileLock(cache / "envs-v1" / f"{in_use.name}.lock") as lock:
        lock.acquire_shared()
        removed = prune_environments(cache / "envs-v1")
    assert removed == [old]
    assert not old.exists() and in_use.exists()


def test_prune_keeps_only_the_most_recently_used(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    build_log(project("flit_project"), tmp_path)
    build_log(project("hatchling_project"), tmp_path)
    first, second = sorted(envs(cache), key=lambda p: (p / ".last-used").stat().st_mtime)
    assert prune_environments(cache / "envs-v1", keep=1) == [first]
    assert envs(cache) == [second]
