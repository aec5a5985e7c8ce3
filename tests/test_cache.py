"""The cache directory: resolution, `kiln cache` commands, pruning, sharing between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiln.cache import Cache
from kiln.layout import resolve_cache_dir
from kiln.locks import FileLock
from tests.conftest import ProjectFactory
from tests.helpers import run_kiln

DAY = 24 * 3600


def make_run(cache: Path, name: str, *, age: float, failed: bool = False) -> Path:
    run = cache / "runs-v1" / name
    (run / "tmp").mkdir(parents=True)
    (run / "tmp" / "junk").write_bytes(b"x" * 1000)
    if failed:
        (run / "failed.json").write_text(json.dumps({"reason": "test"}))
    then = time.time() - age
    os.utime(run, (then, then))
    return run


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "from-env"))
    assert resolve_cache_dir() == tmp_path / "from-env"
    assert resolve_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("KILN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert resolve_cache_dir() == tmp_path / "xdg" / "kiln"


def test_cache_dir_command(tmp_path: Path) -> None:
    completed = run_kiln("cache", "dir", "--cache-dir", tmp_path / "c")
    assert completed.returncode == 0
    assert completed.stdout.strip() == str(tmp_path / "c")
    assert run_kiln("cache", "dir").stdout.strip() == os.environ["KILN_CACHE_DIR"]


def test_cache_is_tagged_for_backup_tools(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path / "c")
    tag = (cache.root / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_unusable_cache_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    completed = run_kiln(tmp_path, "--cache-dir", blocker / "cache")
    assert completed.returncode == 2
    assert f"kiln: error: cannot use cache directory {blocker / 'cache'}" in completed.stderr


def test_info_lists_buckets(tmp_path: Path) -> None:
    cache = Path(os.environ["KILN_CACHE_DIR"])
    make_run(cache, "r1", age=0)
    completed = run_kiln("cache", "info")
    assert completed.returncode == 0, completed.stderr
    assert "runs-v1" in completed.stdout
    assert "total" in completed.stdout and str(cache) in completed.stdout


def test_prune_removes_stale_and_old_failed_runs_only(tmp_path: Path) -> None:
    cache = Path(os.environ["KILN_CACHE_DIR"])
    stale = make_run(cache, "stale", age=2 * DAY)
    fresh = make_run(cache, "fresh", age=60)
    old_failed = make_run(cache, "old-failed", age=8 * DAY, failed=True)
    recent_failed = make_run(cache, "recent-failed", age=DAY, failed=True)
    held = make_run(cache, "held", age=3 * DAY)
    with FileLock(held / ".lock") as lock:
        assert lock.acquire()
        completed = run_kiln("cache", "prune")
    assert completed.returncode == 0, completed.stderr
    assert "removed 1 stale run(s), 1 old failed build(s)" in completed.stdout
    assert not stale.exists() and not old_failed.exists()
    assert fresh.exists() and recent_failed.exists() and held.exists()


def test_clean_spares_runs_in_progress(tmp_path: Path) -> None:
    cache = Path(os.environ["KILN_CACHE_DIR"])
    idle = make_run(cache, "idle", age=0)
    held = make_run(cache, "held", age=0)
    (cache / "logs-v1").mkdir()
    (cache / "logs-v1" / "x.log").write_text("log")
    with FileLock(held / ".lock") as lock:
        assert lock.acquire()
        completed = run_kiln("cache", "clean")
    assert completed.returncode == 0, completed.stderr
    assert not idle.exists() and not (cache / "logs-v1").exists()
    assert held.exists()
    assert f"kept {held}" in completed.stderr
    assert (cache / "CACHEDIR.TAG").is_file()


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
