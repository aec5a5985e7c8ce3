"""--env-dir and KILN_ENV_DIR: the environment where the user says, nothing of theirs harmed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import kiln
from kiln.errors import UsageError
from tests.conftest import ProjectFactory
from tests.helpers import run_kiln, snapshot, wait_for_file

pytestmark = pytest.mark.integration


def test_absent_env_dir_is_created_and_removed(project: ProjectFactory, tmp_path: Path) -> None:
    env_dir = tmp_path / "deep" / "er" / "env"
    result = kiln.build(project("flit_project"), tmp_path / "out", env_dir=env_dir)
    assert len(result.artifacts) == 2
    assert not env_dir.exists()
    assert (tmp_path / "deep" / "er").is_dir()  # parents stay: kiln only removes what it made


def test_existing_empty_env_dir_is_emptied_not_removed(
    project: ProjectFactory, tmp_path: Path
) -> None:
    env_dir = tmp_path / "mount-point"
    env_dir.mkdir()
    completed = run_kiln(project("hatchling_project"), "-o", tmp_path / "out", "--env-dir", env_dir)
    assert completed.returncode == 0, completed.stderr
    assert env_dir.is_dir()
    assert list(env_dir.iterdir()) == []


def test_one_environment_serves_the_sdist_and_the_wheel(
    project: ProjectFactory, tmp_path: Path
) -> None:
    result = kiln.build(
        project("hatchling_project"), tmp_path / "out", installer="uv", env_dir=tmp_path / "env"
    )
    assert result.log_path is not None
    log = result.log_path.read_text()
    assert log.count("=== creating build environment") == 1
    assert f"creating build environment at {tmp_path / 'env'}" in log
    # hatchling is installed for the sdist; the wheel step finds it already there.
    assert log.count("pip install --python") == 1


def test_env_dir_from_the_environment_variable(
    project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_ENV_DIR", str(tmp_path / "from-env"))
    completed = run_kiln(project("hook_raises"), "-w", "-o", tmp_path / "out")
    assert completed.returncode == 1
    assert (tmp_path / "from-env" / "pyvenv.cfg").is_file()


def test_failed_build_keeps_the_env_and_says_how_to_open_it(
    project: ProjectFactory, tmp_path: Path
) -> None:
    env_dir = tmp_path / "env"
    completed = run_kiln(project("hook_raises"), "-w", "-o", tmp_path / "out", "--env-dir", env_dir)
    assert completed.returncode == 1
    assert (env_dir / "bin" / "python").exists()
    assert (env_dir / ".kiln-run" / "failed.json").is_file()
    assert f"the build environment is kept at {env_dir}" in completed.stderr
    assert f"kiln debug --env-dir {env_dir}" in completed.stderr


def test_installer_failure_keeps_the_env(project: ProjectFactory, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    completed = run_kiln(project("unresolvable"), "--env-dir", env_dir)
    assert completed.returncode == 3
    assert (env_dir / "pyvenv.cfg").is_file()


def test_a_kiln_made_env_left_by_a_failure_is_replaced(
    project: ProjectFactory, tmp_path: Path
) -> None:
    env_dir = tmp_path / "env"
    failed = run_kiln(project("hook_raises"), "-w", "-o", tmp_path / "a", "--env-dir", env_dir)
    assert failed.returncode == 1
    completed = run_kiln(project("flit_project"), "-o", tmp_path / "b", "--env-dir", env_dir)
    assert completed.returncode == 0, completed.stderr
    assert "holds a build environment an earlier kiln run left there; replacing it" in (
        completed.stderr
    )
    assert list(env_dir.iterdir()) == []


@pytest.mark.parametrize("content", ["file", "dir", "venv-like"])
def test_non_empty_env_dir_is_refused_and_untouched(
    project: ProjectFactory, tmp_path: Path, content: str
) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    if content == "file":
        (env_dir / "notes.txt").write_text("mine")
    elif content == "dir":
        (env_dir / "data").mkdir()
        (env_dir / "data" / "x").write_text("mine")
    else:
        # Looks like a virtual environment, but kiln did not make it: not kiln's to delete.
        (env_dir / "bin").mkdir()
        (env_dir / "pyvenv.cfg").write_text("home = /usr\n")
    before = snapshot(tmp_path / "env")
    source = project("flit_project")
    completed = run_kiln(source, "--env-dir", env_dir)
    assert completed.returncode == 2
    assert f"kiln: error: --env-dir {env_dir} is not empty" in completed.stderr
    assert snapshot(env_dir) == before
    assert not (source / "dist").exists()


def test_env_dir_that_is_a_file(project: ProjectFactory, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("mine")
    completed = run_kiln(project("flit_project"), "--env-dir", target)
    assert completed.returncode == 2
    assert "exists and is not a directory" in completed.stderr
    assert target.read_text() == "mine"


def test_env_dir_that_cannot_be_created(project: ProjectFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    completed = run_kiln(project("flit_project"), "--env-dir", blocker / "env")
    assert completed.returncode == 2
    assert f"--env-dir {blocker / 'env'} cannot be created" in completed.stderr
    assert blocker.read_text() == "mine"


def test_symlinked_env_dir_is_used_through_its_target(
    project: ProjectFactory, tmp_path: Path
) -> None:
    target = tmp_path / "real-env"
    target.mkdir()
    link = tmp_path / "env-link"
    link.symlink_to(target)
    failed = run_kiln(project("hook_raises"), "-w", "-o", tmp_path / "a", "--env-dir", link)
    assert failed.returncode == 1
    assert (target / "pyvenv.cfg").is_file()
    completed = run_kiln(project("flit_project"), "-o", tmp_path / "b", "--env-dir", link)
    assert completed.returncode == 0, completed.stderr
    assert link.is_symlink() and link.resolve() == target
    assert target.is_dir() and list(target.iterdir()) == []


@pytest.mark.parametrize("protected", ["project", "outdir", "cache"])
def test_env_dir_may_not_contain_what_it_would_delete(
    project: ProjectFactory, tmp_path: Path, protected: str
) -> None:
    source = project("flit_project")
    outdir = tmp_path / "box" / "out"
    cache = Path(os.environ["KILN_CACHE_DIR"])
    env_dir = {"project": source.parent, "outdir": outdir.parent, "cache": cache.parent}[protected]
    before = snapshot(env_dir)
    with pytest.raises(UsageError, match=r"contains .*; kiln empties the env dir"):
        kiln.build(source, outdir, env_dir=env_dir)
    assert snapshot(env_dir) == before


def test_env_dir_equal_to_the_project_is_refused(project: ProjectFactory) -> None:
    source = project("flit_project")
    completed = run_kiln(source, "--env-dir", source)
    assert completed.returncode == 2
    assert "kiln empties the env dir" in completed.stderr


def test_env_dir_inside_the_project_never_ends_up_in_an_artifact(
    project: ProjectFactory, tmp_path: Path
) -> None:
    # hatchling packs everything not ignored by the project's VCS into the sdist.
    source = project("hatchling_project")
    env_dir = source / ".build-env"
    completed = run_kiln(source, "-o", tmp_path / "out", "--env-dir", env_dir)
    assert completed.returncode == 2
    assert "is inside the project and the backend's build_sdist hook packed it" in completed.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_env_dir_inside_the_project_is_fine_when_left_out(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("flit_project")  # flit packs only the module and its metadata files
    result = kiln.build(source, tmp_path / "out", env_dir=source / ".build-env")
    assert len(result.artifacts) == 2
    assert not (source / ".build-env").exists()


def test_env_dir_with_no_isolation_is_a_usage_error(
    project: ProjectFactory, tmp_path: Path
) -> None:
    completed = run_kiln(project("flit_project"), "-n", "--env-dir", tmp_path / "env")
    assert completed.returncode == 2
    assert "--env-dir names an isolated environment" in completed.stderr
    assert not (tmp_path / "env").exists()


def test_a_second_run_on_a_busy_env_dir_refuses_at_once(
    project: ProjectFactory, tmp_path: Path
) -> None:
    env_dir = tmp_path / "env"
    pids_file = tmp_path / "pids"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiln",
            str(project("probe_backend")),
            "-w",
            "-o",
            str(tmp_path / "a"),
            "--env-dir",
            str(env_dir),
        ],
        env=dict(os.environ, KILN_TEST_HANG_PIDS=str(pids_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(pids_file, first)
        # The live run keeps writing its log under .kiln-run; the rest must stay as it is.
        before = {k: v for k, v in snapshot(env_dir).items() if not k.startswith(".kiln-run")}
        second = run_kiln(project("flit_project"), "-o", tmp_path / "b", "--env-dir", env_dir)
        assert second.returncode == 2
        assert f"--env-dir {env_dir} is in use by another kiln run (pid {first.pid})" in (
            second.stderr
        )
        after = {k: v for k, v in snapshot(env_dir).items() if not k.startswith(".kiln-run")}
        assert after == before
        assert not (tmp_path / "b").exists()
    finally:
        first.send_signal(signal.SIGINT)
        _, first_stderr = first.communicate(timeout=60)
    # An interrupted build is a failed one: its environment stays, and kiln says where.
    assert first.returncode == 130
    assert (env_dir / "pyvenv.cfg").is_file()
    assert (env_dir / ".kiln-run" / "failed.json").is_file()
    assert f"kiln debug --env-dir {env_dir}" in first_stderr
