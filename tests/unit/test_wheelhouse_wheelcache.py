"""The wheel cache: lookups, atomic stores, per-key locks, and `kiln cache` knowing its bucket."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from kiln.cache import Cache
from kiln.layout import WHEELHOUSE_BUCKETS, WHEELS
from kiln.locks import FileLock
from kiln.wheelhouse.wheelcache import ENTRY, WheelCache

KEY = "0" * 63 + "1"
OTHER = "f" * 64


def a_wheel(tmp_path: Path, content: bytes = b"wheel bytes") -> Path:
    wheel = tmp_path / "built" / "demo-1.0-py3-none-any.whl"
    wheel.parent.mkdir(exist_ok=True)
    wheel.write_bytes(content)
    return wheel


def test_store_then_lookup(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path / "cache")
    assert cache.lookup(KEY) is None
    stored = cache.store(KEY, a_wheel(tmp_path), {"seconds": 1.5})
    assert stored == tmp_path / "cache" / WHEELS / KEY / "demo-1.0-py3-none-any.whl"
    assert cache.lookup(KEY) == stored
    assert stored.read_bytes() == b"wheel bytes"
    assert cache.entry(KEY)["seconds"] == 1.5
    assert cache.lookup(OTHER) is None
    # A new cache object (the next run) finds it too.
    assert WheelCache(tmp_path / "cache").lookup(KEY) == stored


def test_a_failed_store_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = WheelCache(tmp_path / "cache")

    def full_disk(source: Path, target: Path) -> None:
        Path(target).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(OSError, match="No space"):
        cache.store(KEY, a_wheel(tmp_path), {})
    assert cache.lookup(KEY) is None
    assert sorted(p.name for p in cache.root.iterdir()) == [f"{KEY}.lock"]


def test_an_entry_is_renamed_into_place_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = WheelCache(tmp_path / "cache")
    seen: list[list[str]] = []
    rename = Path.rename

    def watching(self: Path, target: Path) -> Path:
        # At the moment of the rename the final entry does not exist yet, and the
        # partial holds both the wheel and its record.
        seen.append(sorted(p.name for p in self.iterdir()))
        assert not Path(target).exists()
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", watching)
    cache.store(KEY, a_wheel(tmp_path), {})
    assert seen == [["demo-1.0-py3-none-any.whl", ENTRY]]


def test_a_second_store_keeps_the_first_wheel(tmp_path: Path) -> None:
    first = WheelCache(tmp_path / "cache")
    second = WheelCache(tmp_path / "cache")
    stored = first.store(KEY, a_wheel(tmp_path, b"first"), {})
    assert second.store(KEY, a_wheel(tmp_path, b"second"), {}) == stored
    assert stored.read_bytes() == b"first"


def test_a_wheel_that_does_not_match_its_record_is_a_miss(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path / "cache")
    stored = cache.store(KEY, a_wheel(tmp_path), {})
    stored.write_bytes(b"truncated")
    assert cache.lookup(KEY) is None
    # And storing again replaces the broken entry.
    assert cache.store(KEY, a_wheel(tmp_path), {}).read_bytes() == b"wheel bytes"


def test_the_key_lock_excludes_other_runs(tmp_path: Path) -> None:
    # Two WheelCache objects open the lock file separately, as two processes do.
    mine, theirs = WheelCache(tmp_path / "cache"), WheelCache(tmp_path / "cache")
    with mine.lock(KEY) as held:
        assert held
        with theirs.lock(KEY, blocking=False) as also:
            assert not also
        with theirs.lock(OTHER, blocking=False) as other:
            assert other  # one lock per key
        # Storing while holding the lock does not wait for itself.
        mine.store(KEY, a_wheel(tmp_path), {})
    with theirs.lock(KEY, blocking=False) as free:
        assert free


def test_store_takes_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine, theirs = WheelCache(tmp_path / "cache"), WheelCache(tmp_path / "cache")
    copy = shutil.copyfile
    during: list[bool] = []

    def probing(source: Path, target: Path) -> object:
        with theirs.lock(KEY, blocking=False) as free:
            during.append(free)
        return copy(source, target)

    monkeypatch.setattr(shutil, "copyfile", probing)
    mine.store(KEY, a_wheel(tmp_path), {})
    assert during == [False]


def test_keys_are_checked(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="not a wheel key"):
        cache.lookup("../../etc")


def test_clean_removes_wheelhouse_buckets_but_what_a_run_holds(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = WheelCache(root)
    cache.store(KEY, a_wheel(tmp_path), {})
    cache.store(OTHER, a_wheel(tmp_path), {})
    for name in WHEELHOUSE_BUCKETS:
        Cache.open(root).bucket(name)
    (root / "resolutions-v1" / "abc.json").write_text("{}")
    kiln_cache = Cache.open(root)
    kiln_cache.refuse_foreign_entries("kiln cache clean")  # the new buckets are kiln's
    with cache.lock(OTHER):
        kept = kiln_cache.clean()
    assert kept == [(root / WHEELS / OTHER, "a kiln run is using it")]
    assert cache.lookup(KEY) is None and cache.lookup(OTHER) is not None
    assert not (root / "resolutions-v1" / "abc.json").exists()
    assert kiln_cache.sizes().keys() >= {WHEELS}


def test_prune_removes_a_killed_runs_partial_only(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = WheelCache(root)
    stored = cache.store(KEY, a_wheel(tmp_path), {})
    old = cache.root / f"{OTHER}.99999.partial"
    old.mkdir()
    (cache.root / f"{OTHER}.lock").touch()  # the killed run held it while writing
    # Without a lock file (a download, say): a day's grace, not a minute's.
    unlocked = cache.root / ".demo.tar.gz.99996.partial"
    unlocked.mkdir()
    ancient = cache.root / ".demo.tar.gz.99995.partial"
    ancient.mkdir()
    os.utime(unlocked, (time.time() - 3600,) * 2)
    os.utime(ancient, (time.time() - 3 * 24 * 3600,) * 2)
    writing = cache.root / f"{'e' * 64}.99998.partial"
    writing.mkdir()
    fresh = cache.root / f"{'d' * 64}.99997.partial"
    fresh.mkdir()
    then = time.time() - 3600
    os.utime(old, (then, then))
    os.utime(writing, (then, then))
    with FileLock(cache.root / f"{'e' * 64}.lock") as lock:
        lock.acquire_exclusive()
        report = Cache.open(root).prune()
    assert sorted(report.partials) == sorted([old, ancient])
    assert not old.exists() and writing.exists() and fresh.exists() and unlocked.exists()
    assert cache.lookup(KEY) == stored  # wheels are what the cache is for: prune keeps them


def test_a_linked_bucket_is_refused(tmp_path: Path) -> None:
    from kiln.errors import UsageError

    root = tmp_path / "cache"
    Cache.open(root)
    (tmp_path / "elsewhere").mkdir()
    (root / WHEELS).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="symbolic link"):
        WheelCache(root)


def test_kiln_cache_commands_accept_the_wheelhouse_buckets(tmp_path: Path) -> None:
    from tests.helpers import run_kiln

    root = tmp_path / "cache"
    WheelCache(root).store(KEY, a_wheel(tmp_path), {})
    stale = root / WHEELS / f"{OTHER}.1.partial"
    stale.mkdir()
    (root / WHEELS / f"{OTHER}.lock").touch()
    then = time.time() - 3600
    os.utime(stale, (then, then))
    info = run_kiln("cache", "info", "--cache-dir", str(root))
    assert info.returncode == 0 and "wheels-v1" in info.stdout
    pruned = run_kiln("cache", "prune", "--cache-dir", str(root))
    assert pruned.returncode == 0, pruned.stderr
    assert "1 half-written cache entr(ies)" in pruned.stdout and not stale.exists()
    assert WheelCache(root).lookup(KEY) is not None
    cleaned = run_kiln("cache", "clean", "--cache-dir", str(root))
    assert cleaned.returncode == 0, cleaned.stderr
    assert WheelCache(root).lookup(KEY) is None


def test_two_processes_storing_one_key_leave_one_whole_entry(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import SRC

    root = tmp_path / "cache"
    script = (
        "import sys; from pathlib import Path\n"
        "from kiln.wheelhouse.wheelcache import WheelCache\n"
        "cache = WheelCache(Path(sys.argv[1]))\n"
        "wheel = Path(sys.argv[2])\n"
        "with cache.lock(sys.argv[3]):\n"
        "    found = cache.lookup(sys.argv[3])\n"
        "    if found is None:\n"
        "        found = cache.store(sys.argv[3], wheel, {'by': sys.argv[2]})\n"
        "        print('stored')\n"
        "    else:\n"
        "        print('found')\n"
    )
    wheels = []
    for number in range(4):
        directory = tmp_path / f"run{number}"
        directory.mkdir()
        wheel = directory / "demo-1.0-py3-none-any.whl"
        wheel.write_bytes(f"wheel {number}".encode() * 100_000)
        wheels.append(wheel)
    environ = {**os.environ, "PYTHONPATH": str(SRC)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), str(wheel), KEY],
            env=environ,
            stdout=subprocess.PIPE,
            text=True,
        )
        for wheel in wheels
    ]
    said = sorted(process.communicate(timeout=120)[0].strip() for process in processes)
    assert [process.returncode for process in processes] == [0] * 4
    assert said == ["found", "found", "found", "stored"]
    cache = WheelCache(root)
    stored = cache.lookup(KEY)
    assert stored is not None
    assert stored.read_bytes() == Path(cache.entry(KEY)["by"]).read_bytes()
    assert sorted(p.name for p in cache.root.iterdir()) == [KEY, f"{KEY}.lock"]
