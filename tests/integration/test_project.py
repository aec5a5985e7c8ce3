"""Projects and caches at paths that are not UTF-8, built for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FIXTURES


def _kiln(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """run_kiln, reading back a byte that is not UTF-8 as the path it came from."""
    return subprocess.run(
        [sys.executable, "-m", "kiln", *map(str, args)],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        check=False,
    )


def _non_utf8(parent: Path, name: bytes) -> Path:
    path = Path(os.fsdecode(os.fsencode(parent) + b"/" + name))
    try:
        path.mkdir(parents=True)
    except (OSError, UnicodeEncodeError):  # pragma: no cover - e.g. a macOS file system
        pytest.skip("this file system refuses a name that is not UTF-8")
    return path


@pytest.mark.integration
@pytest.mark.parametrize("runner", ["warm", "plain"])
@pytest.mark.parametrize("fixture", ["setuptools_pyproject", "intree_backend"])
def test_a_project_at_a_path_that_is_not_utf8_builds(
    tmp_path: Path, runner: str, fixture: str
) -> None:
    # python -m build builds it, so kiln must too: sdist, then the wheel from it.
    source = _non_utf8(tmp_path, b"proj\xff") / "p"
    shutil.copytree(FIXTURES / fixture, source)
    completed = _kiln(source, "--hook-runner", runner)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout.rstrip().endswith(f" in {source / 'dist'}")
    built = sorted(p.name for p in (source / "dist").iterdir())
    assert sorted(name.rsplit(".", 1)[-1] for name in built) == ["gz", "whl"], built
    logs = list((tmp_path / "kiln-cache" / "logs-v1").glob("*.log"))
    assert len(logs) == 1
    assert os.fsencode(source) in logs[0].read_bytes()  # the byte itself, not a stand-in


@pytest.mark.integration
def test_a_cache_at_a_path_that_is_not_utf8_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    # Python reads a venv's pyvenv.cfg (which holds its path) as UTF-8: no build
    # environment can live there, so kiln says so instead of failing half-way.
    cache = _non_utf8(tmp_path, b"cache\xff")
    source = tmp_path / "p"
    shutil.copytree(FIXTURES / "intree_backend", source)
    completed = _kiln(source, "--cache-dir", cache)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.startswith(
        "kiln: error: --cache-dir " + os.fsencode(cache).decode("utf-8", "backslashreplace")
    )
    assert "is not a UTF-8 path" in completed.stderr
    assert list(cache.iterdir()) == []
    assert not (source / "dist").exists()


@pytest.mark.integration
def test_a_cache_at_a_path_that_is_not_utf8_serves_a_build_without_isolation(
    tmp_path: Path,
) -> None:
    # Without a build environment the cache only holds the run: its log, the hooks'
    # handoff files and the record of the hook, all of which take the path.
    cache = _non_utf8(tmp_path, b"cache\xff")
    source = tmp_path / "p"
    shutil.copytree(FIXTURES / "hook_fills_disk", source)  # its build_sdist needs nothing
    completed = _kiln(source, "-n", "-s", "--cache-dir", cache, "-o", tmp_path / "dist")
    assert completed.returncode == 0, completed.stderr
    assert [p.name for p in (tmp_path / "dist").iterdir()] == [
        "kiln_fixture_hook_fills_disk-1.0.0.tar.gz"
    ]
    logs = list((cache / "logs-v1").glob("*.log"))
    assert len(logs) == 1
    assert os.fsencode(cache) in logs[0].read_bytes()
