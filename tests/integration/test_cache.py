"""The cache directory with real builds: pruning at the start of a build, sharing between runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import FIXTURES, run_kiln, snapshot
from tests.unit.test_cache import DAY, a_user_directory, make_run


@pytest.mark.integration  # hermetic installers, should a build start after all
def test_a_build_refuses_a_user_directory_on_the_command_line(tmp_path: Path) -> None:
    directory = a_user_directory(tmp_path / "v")
    before = snapshot(directory)
    completed = run_kiln(FIXTURES / "flit_project", "--cache-dir", directory, "-o", tmp_path)
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert "is not a kiln cache directory" in line
    assert snapshot(directory) == before


@pytest.mark.integration
def test_a_build_prunes_what_crashed_runs_left(project: ProjectFactory, tmp_path: Path) -> None:
    cache = Path(os.environ["KILN_CACHE_DIR"])
    stale = make_run(cache, "crashed", age=2 * DAY)
    completed = run_kiln(project("flit_project"), "-w", "-o", tmp_path / "out")
    assert completed.returncode == 0, completed.stderr
    assert not stale.exists()


@pytest.mark.integration
def test_runs_sharing_one_cache_all_succeed(project: ProjectFactory, tmp_path: Path) -> None:
    sources = [project(name) for name in ("flit_project", "hatchling_project", "pdm_project")]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "kiln", str(source), "-o", str(tmp_path / f"out{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, source in enumerate(sources)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    for i in range(len(processes)):
        assert len(list((tmp_path / f"out{i}").iterdir())) == 2
    cache = Path(os.environ["KILN_CACHE_DIR"])
    assert list((cache / "runs-v1").iterdir()) == []
    assert len(list((cache / "logs-v1").glob("*.log"))) == len(processes)
