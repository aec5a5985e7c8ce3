"""Failed builds are kept in the cache, bounded, and `kiln debug` opens them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.cache import KEPT_FAILED_RUNS
from tests.conftest import ProjectFactory
from tests.helpers import run_kiln

pytestmark = pytest.mark.integration


def runs(cache: Path) -> list[Path]:
    bucket = cache / "runs-v1"
    return sorted(bucket.iterdir()) if bucket.is_dir() else []


def kept_environment(run: Path) -> Path:
    return Path(json.loads((run / "failed.json").read_text())["environment"])


@pytest.fixture
def cache() -> Path:
    return Path(os.environ["KILN_CACHE_DIR"])


def test_failed_build_is_kept_with_a_record_of_the_hook(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("hook_raises")
    completed = run_kiln(source, "-w", "-o", tmp_path / "out", "-C", "mode=debug")
    assert completed.returncode == 1
    [run] = runs(cache)
    environment = kept_environment(run)
    assert (environment / "pyvenv.cfg").is_file()
    assert "deliberate failure in build_wheel" in (run / "build.log").read_text()
    failed = json.loads((run / "failed.json").read_text())
    assert "build_wheel hook failed" in failed["reason"]
    hook = json.loads((run / "hook.json").read_text())
    assert hook["hook"] == "build_wheel"
    assert hook["cwd"] == str(source)
    assert hook["kwargs"]["config_settings"] == {"mode": "debug"}
    assert hook["environ"]["VIRTUAL_ENV"] == str(environment)
    # Environment variables may hold secrets: the record is the user's alone.
    assert stat.S_IMODE((run / "hook.json").stat().st_mode) == 0o600
    assert f"full log: {run / 'build.log'}" in completed.stderr
    assert "kiln debug" in completed.stderr


def test_debug_prints_where_and_how_to_rerun(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("hook_raises")
    assert run_kiln(source, "-w", "-o", tmp_path / "out").returncode == 1
    [run] = runs(cache)
    completed = run_kiln("debug", "--print")
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert f"Failed build of {source}" in out
    assert "build_wheel hook failed" in out
    environment = kept_environment(run)
    assert f"environment: {environment}" in out
    assert f"directory:   {source}" in out
    assert f"log:         {run / 'build.log'}" in out
    [rerun] = [ln.strip() for ln in out.splitlines() if ln.strip().startswith(str(environment))]

    # The printed command really runs the hook again, in the kept environment.
    hook = json.loads((run / "hook.json").read_text())
    again = subprocess.run(
        rerun,
        shell=True,
        cwd=source,
        env=hook["environ"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode != 0
    assert "RuntimeError: kiln-fixture-hook-raises: deliberate failure in build_wheel" in (
        again.stderr
    )


def test_debug_rerun_command_can_succeed(project: ProjectFactory, tmp_path: Path) -> None:
    # A hook that failed for a reason that has since gone away builds when re-run.
    source = project("probe_backend")
    # The probe cannot write its report there, so build_wheel fails.
    env = dict(os.environ, KILN_TEST_PROBE=str(tmp_path / "no-such-dir" / "probe"))
    failed = run_kiln(source, "-w", "-o", tmp_path / "out", env=env)
    assert failed.returncode == 1
    completed = run_kiln("debug", "--print")
    [rerun] = [ln.strip() for ln in completed.stdout.splitlines() if " -c " in ln]
    [run_dir] = runs(Path(os.environ["KILN_CACHE_DIR"]))
    hook = json.loads((run_dir / "hook.json").read_text())
    environ = {k: v for k, v in hook["environ"].items() if k != "KILN_TEST_PROBE"}
    again = subprocess.run(
        rerun, shell=True, cwd=source, env=environ, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr
    # The backend's own chatter comes first; the hook's return value is printed last.
    assert again.stdout.splitlines()[-1] == "kiln_fixture_probe-1.0.0-py3-none-any.whl"
    assert (run_dir / "debug-output" / "kiln_fixture_probe-1.0.0-py3-none-any.whl").is_file()


def test_debug_opens_a_shell_in_the_hook_directory(
    project: ProjectFactory, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project("hook_raises")
    assert run_kiln(source, "-w", "-o", tmp_path / "out").returncode == 1
    [run] = runs(cache)
    monkeypatch.setenv("SHELL", "/bin/sh")
    shell = subprocess.run(
        [sys.executable, "-m", "kiln", "debug"],
        input='echo "CWD=$(pwd)"; echo "VENV=$VIRTUAL_ENV"; echo "TMP=$TMPDIR"; exit 7\n',
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    assert shell.returncode == 7, shell.stderr
    assert f"CWD={source}" in shell.stdout
    assert f"VENV={kept_environment(run)}" in shell.stdout
    assert f"TMP={run / 'tmp'}" in shell.stdout


def test_debug_with_env_dir(project: ProjectFactory, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    assert run_kiln(project("hook_raises"), "-w", "--env-dir", env_dir).returncode == 1
    completed = run_kiln("debug", "--print", "--env-dir", env_dir)
    assert completed.returncode == 0, completed.stderr
    assert f"environment: {env_dir}" in completed.stdout


def test_debug_without_a_failed_build(tmp_path: Path) -> None:
    completed = run_kiln("debug", "--print")
    assert completed.returncode == 2
    assert "no failed build is kept in the cache" in completed.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    completed = run_kiln("debug", "--env-dir", empty)
    assert completed.returncode == 2
    assert f"no failed build is kept in --env-dir {empty}" in completed.stderr


def test_configuration_errors_keep_nothing(project: ProjectFactory, cache: Path) -> None:
    completed = run_kiln(project("bad_toml"))
    assert completed.returncode == 2
    assert runs(cache) == []
    assert len(list((cache / "logs-v1").glob("*.log"))) == 1


def test_kept_failed_builds_are_bounded(
    project: ProjectFactory, tmp_path: Path, cache: Path
) -> None:
    source = project("hook_raises")
    for attempt in range(KEPT_FAILED_RUNS + 2):
        assert run_kiln(source, "-w", "-o", tmp_path / f"out{attempt}").returncode == 1
    kept = runs(cache)
    assert len(kept) == KEPT_FAILED_RUNS
    assert all((run / "failed.json").is_file() for run in kept)
