"""A full disk, without a build: the error's wording, logs, pruning a cut-short record."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from kiln.cache import Cache
from kiln.errors import DiskFullError, disk_full_error
from kiln.process import BuildLog

FULL = "/dev/full"  # every write fails with ENOSPC


def test_a_log_on_a_full_disk_raises_naming_itself() -> None:
    if not Path(FULL).exists():
        pytest.skip(f"no {FULL} on this system")
    log = BuildLog(Path(FULL))
    try:
        with pytest.raises(OSError) as raised:
            log.write(b"output\n")
    finally:
        log.close()  # nothing pending: closing a log on a full disk does not fail again
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == FULL


def test_the_disk_full_error_names_the_directory_and_its_free_space(tmp_path: Path) -> None:
    error = disk_full_error(
        OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "gone" / "x.json"))
    )
    assert isinstance(error, DiskFullError)
    assert error.exit_code == 3
    assert error.directory == tmp_path
    assert str(error).startswith(f"no space is left on the file system holding {tmp_path} (")
    quota = disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp_path)))
    assert str(quota).startswith(f"the disk quota is used up on the file system holding {tmp_path}")
    hook = disk_full_error(None, [tmp_path], hook="build_wheel", output_tail=["x"])
    assert str(hook).startswith("the build backend's build_wheel hook ran out of disk space: ")
    assert hook.output_tail == ["x"]


def test_prune_frees_a_failed_run_whose_record_a_full_disk_cut_short(tmp_path: Path) -> None:
    # kiln before this fix left exactly this: the run's files (what filled the disk)
    # and an empty failed.json, which made prune keep it as a recent failed build.
    cache = Cache.open(tmp_path / "cache")
    runs = cache.bucket("runs-v1")
    cut_short, whole = runs / "20260101-000000-1", runs / "20260101-000000-2"
    for run in (cut_short, whole):
        (run / "from-sdist").mkdir(parents=True)
        (run / "from-sdist" / "filler.bin").write_bytes(b"\0" * 4096)
    (cut_short / "failed.json").write_bytes(b"")
    (whole / "failed.json").write_text(json.dumps({"reason": "a hook failed"}))
    report = cache.prune()
    assert report.failed_runs == [cut_short]
    assert report.freed >= 4096
    assert not cut_short.exists()
    assert whole.exists()
    shutil.rmtree(whole)
