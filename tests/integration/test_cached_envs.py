"""Reusable environments: reused when intact; rebuilt when damaged, modified,
expired, refreshed or when what they hold changes; shared safely between runs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kiln
from kiln.environments.cached import prune_environments
from kiln.errors import HookFailedError
from kiln.fingerprint import RECORD_NAME
from kiln.headstart import start_for_build
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
        # Replaced (an edit in place would do as well now: uv copies, see
        # test_cached_environment_shares_no_file_with_the_installer_cache).
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


def test_refresh_racing_warm_builds(project: ProjectFactory, tmp_path: Path, cache: Path) -> None:
    """Runs replacing an environment (--refresh) while others build in it with warm
    hooks: every run succeeds, and nothing is written into an environment without its lock."""
    # Five projects (each run holds its project's place, which would serialize copies of one).
    sources = [project("hatchling_project").rename(tmp_path / f"p{i}") for i in range(5)]
    for round_ in range(3):
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kiln",
                    str(source),
                    "--installer",
                    "uv",
                    "--hook-runner",
                    "warm",
                    "-o",
                    str(tmp_path / f"o{round_}-{i}"),
                    *(["--refresh"] if i < 2 else []),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, source in enumerate(sources)
        ]
        for process in processes:
            _, stderr = process.communicate()
            assert process.returncode == 0, stderr
    assert len(envs(cache)) == 1


# A setup.py that plants bytecode for setuptools.build_meta in its (shared) build
# environment: valid (header matching the source, code that leaves a marker) or truncated.
PLANT_BYTECODE = """\
import importlib.util, marshal, pathlib, sysconfig
source = pathlib.Path(sysconfig.get_paths()["purelib"], "setuptools", "build_meta.py")
info = source.stat()
code = compile(source.read_text() + "\\nopen({marker!r}, 'w').close()\\n", str(source), "exec")
header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
header += (int(info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
header += (info.st_size & 0xFFFFFFFF).to_bytes(4, "little")
data = header + marshal.dumps(code)
pathlib.Path(importlib.util.cache_from_source(str(source))).write_bytes({cut})
from setuptools import setup
setup()
"""


@pytest.mark.parametrize("bytecode", ["valid", "truncated"])
def test_bytecode_planted_by_one_build_never_runs_in_another(
    project: ProjectFactory, tmp_path: Path, cache: Path, bytecode: str
) -> None:
    marker = tmp_path / "planted-code-ran"
    untrusted = project("setuptools_pyproject").rename(tmp_path / "untrusted")
    cut = "data" if bytecode == "valid" else "data[: len(data) // 2]"
    (untrusted / "setup.py").write_text(PLANT_BYTECODE.format(marker=str(marker), cut=cut))
    # With plain hooks, its own later hooks load what it planted: it may fail itself.
    with contextlib.suppress(HookFailedError):
        kiln.build(untrusted, tmp_path / "out-untrusted", ["wheel"], installer="uv")
    [environment] = envs(cache)
    assert list(environment.glob("lib/python*/site-packages/setuptools/__pycache__/build_meta.*"))
    marker.unlink(missing_ok=True)  # the planting build may have run it itself
    # Another project with the same requirements: the same cached environment.
    trusted = project("setuptools_pyproject")
    log = build_log(trusted, tmp_path)
    assert not marker.exists()
    assert created(log)
    assert envs(cache) == [environment]


def test_cached_environment_shares_no_file_with_the_installer_cache(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    # uv's default links files from its cache: a write into one would change the cache.
    build_log(project("hatchling_project"), tmp_path)
    [environment] = envs(cache)
    files = [p for p in environment.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(files) > 100
    assert [str(p) for p in files if p.stat().st_nlink > 1] == []


def test_env_dir_shares_no_file_with_the_installer_cache(
    project: ProjectFactory, tmp_path: Path
) -> None:
    # A failed build keeps its --env-dir, so the files can be looked at.
    env_dir = tmp_path / "env"
    source = project("setuptools_pyproject")
    (source / "setup.py").write_text("raise SystemExit('failing on purpose')\n")
    completed = run_kiln(source, "-w", "--installer", "uv", "--env-dir", env_dir)
    assert completed.returncode == 1, completed.stderr
    files = [p for p in env_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(files) > 100
    assert [str(p) for p in files if p.stat().st_nlink > 1] == []


@pytest.mark.parametrize(
    "include",
    [
        "-c inner.txt",
        "-r inner.txt",
        "--constraint=inner.txt",
        "--requirement inner.txt",
    ],
)
def test_a_changed_included_constraints_file_is_a_new_environment(
    project: ProjectFactory, tmp_path: Path, include: str
) -> None:
    source = project("flit_project")
    directory = tmp_path / "constraints"  # relative includes: from the including file
    directory.mkdir()
    (directory / "c.txt").write_text(f"# build constraints\n{include}\n")
    (directory / "inner.txt").write_text("flit-core==4.2.0\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    args: list[str | Path] = [source, "-w", "--installer", "uv", "-c", directory / "c.txt"]
    first = run_kiln(*args, "-o", tmp_path / "a", cwd=elsewhere)
    assert first.returncode == 0, first.stderr
    (directory / "inner.txt").write_text("flit-core==9.9.9\n")  # no such release
    second = run_kiln(*args, "-o", tmp_path / "b", cwd=elsewhere)
    assert "Reusing" not in second.stderr
    assert second.returncode == 3, second.stderr


def test_a_changed_local_wheel_requirement_is_a_new_environment(
    project: ProjectFactory, tmp_path: Path, wheelhouse: Path
) -> None:
    wheel = tmp_path / "wheels" / "flit_core-4.2.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes((wheelhouse / wheel.name).read_bytes())
    source = project("flit_project")
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"flit_core>=3.12,<5"', f'"flit_core @ {wheel.as_uri()}"')
    )
    first = run_kiln(source, "-w", "--installer", "uv", "-o", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    wheel.write_bytes(b"not a wheel any more")
    second = run_kiln(source, "-w", "--installer", "uv", "-o", tmp_path / "b")
    assert "Reusing" not in second.stderr
    assert second.returncode == 3, second.stderr


def test_a_changed_local_directory_requirement_is_a_new_environment(
    project: ProjectFactory, tmp_path: Path
) -> None:
    plugin = tmp_path / "plugin"
    (plugin / "kiln_test_plugin").mkdir(parents=True)
    (plugin / "kiln_test_plugin" / "__init__.py").write_text('"""A build plugin."""\n')
    (plugin / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.12,<5"]\nbuild-backend = "flit_core.buildapi"\n'
        '[project]\nname = "kiln-test-plugin"\nversion = "1.0"\ndescription = "x"\n'
    )
    source = project("flit_project")
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            '"flit_core>=3.12,<5"', f'"flit_core>=3.12,<5", "kiln-test-plugin @ {plugin.as_uri()}"'
        )
    )
    first = build_log(source, tmp_path)
    assert created(first)
    assert not created(build_log(source, tmp_path))
    (plugin / "kiln_test_plugin" / "__init__.py").write_text('"""A changed build plugin."""\n')
    assert created(build_log(source, tmp_path))


def test_a_record_from_the_future_is_not_trusted(
    project: ProjectFactory, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project("flit_project")
    build_log(source, tmp_path)
    [environment] = envs(cache)
    record = json.loads((environment / RECORD_NAME).read_text())
    record["created"] = time.time() + 365 * 24 * 3600
    (environment / RECORD_NAME).write_text(json.dumps(record))
    monkeypatch.setenv("KILN_ENV_TTL", "0")
    log = build_log(source, tmp_path)
    assert created(log)
    assert "its record is dated in the future" in log


def test_constraints_from_a_pipe(project: ProjectFactory, tmp_path: Path) -> None:
    """`-c <(...)`: read once, keyed and installed from the same content."""
    source = project("flit_project")
    command = f'"{sys.executable}" -m kiln "{source}" -w --installer uv -c <(echo "$PIN") -o "$OUT"'
    good = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "PIN": "flit-core==4.2.0", "OUT": str(tmp_path / "a")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    bad = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "PIN": "flit-core==9.9.9", "OUT": str(tmp_path / "b")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 3, bad.stderr


def test_constraints_from_a_fifo(project: ProjectFactory, tmp_path: Path, cache: Path) -> None:
    fifo = tmp_path / "constraints.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as stream:
            stream.write("flit-core==4.2.0\n")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = kiln.build(
            project("flit_project"), tmp_path / "out", ["wheel"], constraints=[fifo]
        )
    finally:
        if writer.is_alive():
            # kiln never opened the fifo: open it here, so that the writer is not stuck.
            descriptor = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            writer.join()
            os.close(descriptor)
        writer.join()
    assert result.artifacts
    [environment] = envs(cache)
    record = json.loads((environment / RECORD_NAME).read_text())
    assert len(record["key"]["constraints"]) == 1


def test_no_head_start_in_an_environment_a_build_changed(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    """The head start runs code from the environment before kiln checks it: it must
    check the environment first, or a .pyc planted by the last build runs ahead."""
    marker = tmp_path / "planted-code-ran"
    source = project("setuptools_pyproject")
    kiln.build(source, tmp_path / "o1", ["wheel"], installer="uv", hook_runner="warm")
    started = start_for_build(source, cache, "warm")
    assert started is not None  # the plan is kept, the environment is intact
    started.discard()
    (source / "setup.py").write_text(PLANT_BYTECODE.format(marker=str(marker), cut="data"))
    with contextlib.suppress(HookFailedError):
        kiln.build(source, tmp_path / "o2", ["wheel"], installer="uv", hook_runner="warm")
    marker.unlink(missing_ok=True)
    started = start_for_build(source, cache, "warm")
    if started is not None:
        launched = started.take()
        if launched is not None:  # let it import the backend, as it would ahead of a build
            launched.process.communicate()
    assert started is None
    assert not marker.exists()
