"""The cache directory: resolution, `kiln cache` commands, pruning, sharing between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiln.cache import CACHEDIR_TAG, Cache
from kiln.errors import UsageError
from kiln.layout import resolve_cache_dir
from kiln.locks import FileLock
from kiln.options import environment_defaults
from tests.helpers import SRC, run_kiln, snapshot
from tests.readonly import SETUP_FAILED, readonly_world_available, run_in_readonly_world

DAY = 24 * 3600


def make_run(cache: Path, name: str, *, age: float, failed: bool = False) -> Path:
    Cache.open(cache)
    run = cache / "runs-v1" / name
    (run / "tmp").mkdir(parents=True)
    (run / "tmp" / "junk").write_bytes(b"x" * 1000)
    if failed:
        (run / "failed.json").write_text(json.dumps({"reason": "test"}))
    then = time.time() - age
    os.utime(run, (then, then))
    return run


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # KILN_CACHE_DIR is read at the edge, into the request's cache_dir (kiln.options).
    from_env = environment_defaults({"cache_dir": None}, {"KILN_CACHE_DIR": "~/from-env"})
    assert resolve_cache_dir(from_env["cache_dir"]) == Path.home() / "from-env"
    assert resolve_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "not-read-here"))
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
        assert lock.acquire_exclusive(blocking=False, note_holder=True)
        completed = run_kiln("cache", "prune")
    assert completed.returncode == 0, completed.stderr
    assert "removed 1 stale run(s), 1 old failed build(s)" in completed.stdout
    assert not stale.exists() and not old_failed.exists()
    assert fresh.exists() and recent_failed.exists() and held.exists()


def test_prune_frees_a_killed_runs_directory_at_once(tmp_path: Path) -> None:
    # A SIGKILLed run (its lock file there, nobody holding it) was kept for a day, its
    # --fresh-env environment with it, while `kiln cache prune` said it removed nothing.
    cache = Path(os.environ["KILN_CACHE_DIR"])
    killed = make_run(cache, "killed", age=120)
    starting = make_run(cache, "starting", age=0)
    for run in (killed, starting):
        (run / ".lock").touch()
        os.utime(run, (time.time() - (120 if run == killed else 0),) * 2)
    completed = run_kiln("cache", "prune")
    assert completed.returncode == 0, completed.stderr
    assert "removed 1 stale run(s)" in completed.stdout
    assert not killed.exists()
    assert starting.exists(), "a run that may be taking its lock right now stays"


def test_clean_spares_runs_in_progress(tmp_path: Path) -> None:
    cache = Path(os.environ["KILN_CACHE_DIR"])
    idle = make_run(cache, "idle", age=0)
    held = make_run(cache, "held", age=0)
    (cache / "logs-v1").mkdir(exist_ok=True)
    (cache / "logs-v1" / "x.log").write_text("log")
    with FileLock(held / ".lock") as lock:
        assert lock.acquire_exclusive(blocking=False, note_holder=True)
        completed = run_kiln("cache", "clean")
    assert completed.returncode == 0, completed.stderr
    assert not idle.exists() and not (cache / "logs-v1").exists()
    assert held.exists()
    assert f"kept {held}" in completed.stderr
    assert (cache / "CACHEDIR.TAG").is_file()


def a_user_directory(root: Path) -> Path:
    """A directory that is not a cache: a checkout, say."""
    (root / "src").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "src" / "main.py").write_text("x\n")
    return root


@pytest.mark.parametrize("action", ["clean", "prune"])
def test_clean_and_prune_refuse_a_directory_that_is_not_a_kiln_cache(
    tmp_path: Path, action: str
) -> None:
    directory = a_user_directory(tmp_path / "v")
    before = snapshot(directory)
    completed = run_kiln("cache", action, "--cache-dir", directory)
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"kiln: error: {directory} is not a kiln cache directory"), line
    assert snapshot(directory) == before, "nothing is written, nothing removed"


@pytest.mark.parametrize("action", ["clean", "prune"])
def test_clean_and_prune_refuse_a_cache_holding_what_kiln_did_not_make(
    tmp_path: Path, action: str
) -> None:
    cache = Cache.open(tmp_path / "c").root
    (cache / "notes.txt").write_text("mine")
    make_run(cache, "crashed", age=2 * DAY)
    before = snapshot(cache)
    completed = run_kiln("cache", action, "--cache-dir", cache)
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert f"{cache} holds notes.txt, which kiln did not make" in line, line
    assert snapshot(cache) == before


def test_clean_removes_plans_and_places_but_not_those_in_use(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path / "c").root
    projects = cache / "projects-v1"
    projects.mkdir(exist_ok=True)
    for label in ("idle", "busy"):
        (projects / label / "source").mkdir(parents=True)
        (projects / f"{label}.worker.json").write_text("{}")
    (projects / "idle.worker.json.123.partial").write_text("{")
    with FileLock(projects / "busy.lock") as lock:
        assert lock.acquire_exclusive(blocking=False)
        completed = run_kiln("cache", "clean", "--cache-dir", cache)
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in projects.iterdir()) == ["busy", "busy.lock", "busy.worker.json"]
    assert f"kept {projects / 'busy'}: a kiln run is using it" in completed.stderr


def test_clean_leaves_another_kiln_versions_bucket(tmp_path: Path) -> None:
    cache = Cache.open(tmp_path / "c").root
    (cache / "envs-v2" / "x").mkdir(parents=True)
    completed = run_kiln("cache", "clean", "--cache-dir", cache)
    assert completed.returncode == 0, completed.stderr
    assert (cache / "envs-v2" / "x").is_dir()
    assert f"kept {cache / 'envs-v2'}: another kiln version's" in completed.stderr


def test_a_build_refuses_a_directory_that_is_not_empty_nor_a_kiln_cache(tmp_path: Path) -> None:
    directory = a_user_directory(tmp_path / "v")
    before = snapshot(directory)
    with pytest.raises(UsageError, match="is not a kiln cache directory"):
        Cache.open(directory)
    assert snapshot(directory) == before
    # A tag another tool wrote does not make it kiln's.
    (directory / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    with pytest.raises(UsageError, match="is not a kiln cache directory"):
        Cache.open(directory)


def test_a_cache_whose_tag_a_killed_run_left_empty_is_still_kilns(tmp_path: Path) -> None:
    # A run killed between creating the tag and writing it (O_EXCL, then write) left
    # an empty tag alone in the directory it made: every later run refused it.
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    (root / "CACHEDIR.TAG").touch(mode=0o600)
    assert Cache.existing(root) is not None, "kiln cache info reads it"
    cache = Cache.open(root)
    assert (cache.root / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
    # Not so a tag beside other files, nor one that says something else.
    (root / "CACHEDIR.TAG").write_text("")
    (root / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not a kiln cache directory"):
        Cache.open(root)


def test_a_tag_a_killed_run_was_writing_beside_it_is_no_stranger(tmp_path: Path) -> None:
    # The tag is written under a name of the writer's, then linked into place.
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    (root / "CACHEDIR.TAG.4242.partial").write_text(CACHEDIR_TAG[:10])
    cache = Cache.open(root)
    assert (root / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
    cache.refuse_foreign_entries("kiln cache clean")  # kiln's own, not the user's


def test_runs_starting_on_one_new_cache_at_once_all_take_it(tmp_path: Path) -> None:
    # Each reader sees no tag or a whole one, never half of one: no run refuses the
    # directory another run is making into a cache.
    script = (
        "import sys; from pathlib import Path; from kiln.cache import Cache\n"
        "Cache.open(Path(sys.argv[1]))\n"
    )
    environ = {**os.environ, "PYTHONPATH": str(SRC)}
    for round_ in range(5):
        root = tmp_path / f"cache{round_}"
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(root)], env=environ, stderr=subprocess.PIPE
            )
            for _ in range(8)
        ]
        errors = [process.communicate(timeout=120)[1] for process in processes]
        assert [process.returncode for process in processes] == [0] * 8, errors
        assert (root / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
        assert not list(root.glob("*.partial"))


def test_an_empty_directory_becomes_a_cache(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cache = Cache.open(tmp_path / "empty")
    assert (cache.root / "CACHEDIR.TAG").read_text().startswith("Signature: ")
    assert Cache.open(tmp_path / "empty") == cache, "and is one from then on"


def test_info_reads_without_creating(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    completed = run_kiln("cache", "info", "--cache-dir", missing)
    assert completed.returncode == 0, completed.stderr
    assert "total" in completed.stdout
    assert not missing.exists()
    completed = run_kiln("cache", "clean", "--cache-dir", missing)
    assert completed.returncode == 0, completed.stderr
    assert not missing.exists()


def make_failed_run(cache: Path) -> Path:
    """A failed run as kiln keeps it, without the hook's record."""
    run = make_run(cache, "20260101-000000-1", age=0, failed=True)
    record = {"reason": "test failure", "time": time.time(), "source": str(cache)}
    (run / "failed.json").write_text(json.dumps(record))
    return run


def test_info_and_debug_print_read_a_read_only_cache(tmp_path: Path) -> None:
    reason = readonly_world_available()
    if reason is not None:
        pytest.skip(reason)
    cache = tmp_path / "read-only-cache"
    run = make_failed_run(cache)
    world = tmp_path / "world"
    world.mkdir()
    environ = {**os.environ, "PYTHONPATH": str(SRC), "KILN_CACHE_DIR": str(cache)}
    for command in (["cache", "info"], ["debug", "--print"]):
        done = run_in_readonly_world([sys.executable, "-m", "kiln", *command], world, environ)
        assert done.returncode != SETUP_FAILED, done.stderr
        assert done.returncode == 0, (command, done.stderr)
        assert str(cache if command[0] == "cache" else run) in done.stdout


def test_debug_says_when_the_failed_builds_directory_is_gone(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    run = make_failed_run(cache)
    source = tmp_path / "removed-project"
    record = json.loads((run / "failed.json").read_text())
    (run / "failed.json").write_text(json.dumps(record | {"source": str(source)}))
    hook = {"hook": "build_wheel", "cwd": str(source), "environ": {}, "python": "python"}
    hook |= {"backend": "b", "backend_path": [], "kwargs": {}}
    (run / "hook.json").write_text(json.dumps(hook))
    completed = run_kiln("debug", "--cache-dir", cache, env={**os.environ, "SHELL": "true"})
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert f"kiln: error: the failed build ran in {source}, which no longer exists" in line
    printed = run_kiln("debug", "--print", "--cache-dir", cache)
    assert printed.returncode == 0, printed.stderr
    assert f"{source} (no longer there)" in printed.stdout


def test_pruning_logs_takes_the_timings_page_beside_each_old_log(tmp_path: Path) -> None:
    from kiln.cache import TIMINGS_SUFFIX
    from kiln.layout import LOGS

    cache = Cache.open(tmp_path / "cache")
    logs = cache.bucket(LOGS)
    for n in range(3):
        log = logs / f"app-{n}.log"
        log.write_text("log")
        log.with_suffix(TIMINGS_SUFFIX).write_text("<html>")
        os.utime(log, (1000 + n, 1000 + n))
    cache.prune_logs(keep=1)
    assert sorted(p.name for p in logs.iterdir()) == ["app-2.log", "app-2.timings.html"]
