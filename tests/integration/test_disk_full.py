"""A disk that fills up (ENOSPC): a clear error naming the place (exit 3), never a
traceback, and a cache that is still usable, with its space back, afterwards.

The real-disk tests mount a small tmpfs, which needs root (CI runs as root); where
mounting is not allowed they skip and say so.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import INSTALLERS, run_kiln

Mount = Callable[[str, int], Path]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Mount]:
    """mount(name, mebibytes): a tmpfs of that size at tmp_path/name."""
    mounted: list[Path] = []

    def mount(name: str, mebibytes: int) -> Path:
        path = tmp_path / name
        path.mkdir()
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
        completed = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={mebibytes}m,mode=700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {completed.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _error_line(stderr: str) -> str:
    assert not [line for line in stderr.splitlines() if line.startswith("Traceback")], stderr
    return next(line for line in stderr.splitlines() if line.startswith("kiln: error:"))


def _fill(directory: Path, leave: int = 0) -> Path:
    """Fill ``directory``'s file system to the last byte (but ``leave`` bytes); returns
    the file that does it."""
    pad = directory / "pad"
    if leave:
        pad.write_bytes(b"\0" * (_free(directory) - leave))
        return pad
    size = 1 << 20
    with pad.open("wb", buffering=0) as stream:
        while True:
            try:
                stream.write(b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                if size == 1:
                    return pad
                size //= 2


@pytest.mark.integration
@pytest.mark.parametrize("output_lines", [0, 500], ids=["hook-says-so", "log-write-fails"])
def test_a_hook_that_fills_the_cache_is_a_clear_error_and_gives_the_space_back(
    project: ProjectFactory, small_disk: Mount, output_lines: int
) -> None:
    cache = small_disk("cache", 30)
    env = dict(os.environ, KILN_FIXTURE_FILL_OUTPUT=str(output_lines))
    # hook-says-so: the hook's OSError is what tells; log-write-fails: the hook's
    # output finds no room in the log either.
    completed = run_kiln(project("hook_fills_disk"), "--cache-dir", cache, env=env)
    assert completed.returncode == 3, completed.stderr
    line = _error_line(completed.stderr)
    assert "no space is left on the file system holding " + str(cache) in line
    assert "kiln cache prune" in line
    # The failed run took the space back (the filler was in its sources), kept its log.
    assert _free(cache) > 25 << 20
    (run,) = (cache / "runs-v1").iterdir()
    record = json.loads((run / "failed.json").read_text())
    assert "its files were removed to free the space" in record["reason"]
    assert (run / "build.log").is_file()
    # The next run on the cache works, and so does prune.
    completed = run_kiln(project("flit_project"), "--cache-dir", cache)
    assert completed.returncode == 0, completed.stderr
    completed = run_kiln("cache", "prune", "--cache-dir", cache)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.integration
def test_a_cache_full_before_the_run_is_a_clear_error_and_usable_once_freed(
    project: ProjectFactory, small_disk: Mount
) -> None:
    disk = small_disk("disk", 8)
    cache = disk / "cache"  # kiln takes only an empty directory or its own cache
    source = project("flit_project")
    pad = _fill(disk)
    # A new cache on a full disk.
    completed = run_kiln(source, "--cache-dir", cache)
    assert completed.returncode == 3, completed.stderr
    assert f"no space is left on the file system holding {cache}" in _error_line(completed.stderr)
    pad.unlink()
    assert run_kiln(source, "--cache-dir", cache).returncode == 0
    pad = _fill(disk)
    # A cache in use, now full.
    completed = run_kiln(source, "--cache-dir", cache)
    assert completed.returncode == 3, completed.stderr
    assert f"no space is left on the file system holding {cache}" in _error_line(completed.stderr)
    pad.unlink()
    completed = run_kiln(source, "--cache-dir", cache)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.integration
@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize("fresh", [False, True], ids=["cached-env", "fresh-env"])
def test_an_install_that_fills_the_cache_leaves_no_half_made_environment(
    project: ProjectFactory, small_disk: Mount, installer: str, fresh: bool
) -> None:
    disk = small_disk("disk", 8)
    cache = disk / "cache"  # kiln takes only an empty directory or its own cache
    source = project("hatchling_project")
    cache.mkdir(mode=0o700)
    pad = _fill(disk, leave=600 << 10)  # room for a venv, not for hatchling and its own
    before = _free(cache)
    options = ["--installer", installer, *(["--fresh-env"] if fresh else [])]
    completed = run_kiln(source, "--cache-dir", cache, *options)
    assert completed.returncode == 3, completed.stderr
    line = _error_line(completed.stderr)
    assert line.startswith("kiln: error: the installer ran out of disk space: no space is left")
    assert str(cache) in line
    # The half-made environment is gone (it would keep the disk full), the log kept.
    assert [p.name for p in cache.glob("envs-v1/*") if p.is_dir()] == []
    (run,) = (cache / "runs-v1").iterdir()
    assert not (run / "env").exists()
    assert _free(cache) > before - (100 << 10)
    pad.unlink()
    completed = run_kiln(source, "--cache-dir", cache, *options)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.integration
def test_a_hook_that_fills_the_outdir_names_it_and_keeps_the_failed_build(
    project: ProjectFactory, small_disk: Mount, tmp_path: Path
) -> None:
    outdir = small_disk("out", 4)
    env = dict(os.environ, KILN_FIXTURE_FILL_DIR=str(outdir / ".kiln-staging-fill"))
    completed = run_kiln(project("hook_fills_disk"), "-w", "-o", outdir, env=env)
    assert completed.returncode == 3, completed.stderr
    line = _error_line(completed.stderr)
    assert line.startswith("kiln: error: the build backend's build_wheel hook ran out of disk")
    assert f"no space is left on the file system holding {outdir}" in line
    assert "| OSError: [Errno 28] No space left on device" in completed.stderr
    # The cache is on another disk: the failed build is kept as ever, for kiln debug.
    (run,) = (tmp_path / "kiln-cache" / "runs-v1").iterdir()
    assert "removed" not in json.loads((run / "failed.json").read_text())["reason"]
    assert (run / "hook.json").is_file()
    assert not list(outdir.glob("*.whl"))
