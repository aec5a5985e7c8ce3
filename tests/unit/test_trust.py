"""A cache another local user can write is not trusted, and a cache keeps no secrets.

The tests run as root in CI containers; "another user" is uid 65534 (nobody),
given a planted file or directory with os.chown.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.cache import Cache
from kiln.errors import UsageError
from kiln.headstart import keep_plan, read_plan, start_for_build
from kiln.layout import project_place, worker_plans
from kiln.workspace import Workspace
from tests.helpers import run_kiln, snapshot
from tests.unit.test_headstart import kiln_made_environment, plan_fields

NOBODY = 65534

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a file to another user (os.chown) needs root",
)
posix_only = pytest.mark.skipif(os.name == "nt", reason="ownership and modes are POSIX's")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = Cache.open(tmp_path / "cache").root
    for bucket in ("envs-v1", "projects-v1", "runs-v1", "logs-v1"):
        (root / bucket).mkdir(mode=0o700, exist_ok=True)
    return root


def give_away(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --------------------------------------------------------------------------- the cache root


@posix_only
@needs_root
def test_a_cache_root_owned_by_another_user_is_refused(cache: Path) -> None:
    give_away(cache)
    with pytest.raises(UsageError, match=r"is owned by another user \(uid 65534\)") as error:
        Cache.open(cache)
    assert "--cache-dir" in str(error.value), "the message says what to do"
    with pytest.raises(UsageError, match="owned by another user"):
        Cache.existing(cache)


@posix_only
@pytest.mark.parametrize("bits", [0o770, 0o777, 0o702])
def test_a_cache_root_writable_by_group_or_others_is_refused(cache: Path, bits: int) -> None:
    cache.chmod(bits)
    with pytest.raises(UsageError, match=rf"writable by group or others .*chmod 700 {cache}"):
        Cache.open(cache)


@posix_only
@needs_root
def test_a_cache_root_linked_by_another_user_is_refused(cache: Path, tmp_path: Path) -> None:
    link = tmp_path / "shared-link"
    link.symlink_to(cache)
    assert Cache.open(link).root == link, "the user's own link is fine"
    give_away(link)
    with pytest.raises(UsageError, match="symbolic link owned by another user"):
        Cache.open(link)


@posix_only
@pytest.mark.parametrize("bits", [0o777, 0o775])
def test_a_cache_inside_a_directory_others_can_write_is_refused(tmp_path: Path, bits: int) -> None:
    # Whoever can rename entries in /shared can exchange /shared/cache for a directory
    # of theirs between kiln's checks and its use (RENAME_EXCHANGE, in a loop): a
    # review emptied the victim's files through a planted projects-v1/<label> link so.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(bits)
    with pytest.raises(UsageError, match=rf"inside {shared}, which is writable by group or"):
        Cache.open(shared / "cache")
    with pytest.raises(UsageError, match=rf"inside {shared}, which"):
        Cache.existing(shared / "cache")  # made before the directory was opened up
    link = tmp_path / "link"
    link.symlink_to(shared / "cache")
    with pytest.raises(UsageError, match=rf"inside {shared}, which"):
        Cache.open(link)  # a link of the user's own, into the unsafe directory


@posix_only
def test_a_cache_inside_a_sticky_directory_is_fine(tmp_path: Path) -> None:
    shared = tmp_path / "shared"  # as /tmp: only an entry's owner may rename it
    shared.mkdir()
    shared.chmod(0o1777)
    assert Cache.open(shared / "cache").root == shared / "cache"


@posix_only
@needs_root
def test_a_cache_inside_another_users_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "theirs"
    shared.mkdir(mode=0o755)
    give_away(shared)
    with pytest.raises(UsageError, match=rf"inside {shared}, which is owned by another user"):
        Cache.open(shared / "cache")


@posix_only
def test_an_older_caches_root_is_made_owner_only(cache: Path) -> None:
    cache.chmod(0o755)
    Cache.open(cache)
    assert mode(cache) == 0o700


@posix_only
@needs_root
def test_the_command_line_refuses_an_untrusted_cache_with_one_line(
    cache: Path, tmp_path: Path
) -> None:
    give_away(cache)
    for command in (["cache", "clean"], ["cache", "prune"], ["debug", "--print"]):
        completed = run_kiln(*command, "--cache-dir", cache)
        assert completed.returncode == 2, (command, completed.stderr)
        [line] = completed.stderr.splitlines()
        assert line.startswith(f"kiln: error: cache directory {cache} is owned by another user")


# --------------------------------------------------------------------------- buckets and places


@posix_only
@needs_root
@pytest.mark.parametrize("bucket", ["envs-v1", "projects-v1", "runs-v1", "logs-v1"])
def test_a_bucket_another_user_owns_or_can_write_is_refused(cache: Path, bucket: str) -> None:
    # The environments' bucket included: its check runs before any environment is reused.
    give_away(cache / bucket)
    with pytest.raises(UsageError, match=f"{bucket} in kiln's cache is owned by another user"):
        Cache.open(cache)
    os.chown(cache / bucket, os.geteuid(), os.getegid())
    (cache / bucket).chmod(0o777)
    with pytest.raises(UsageError, match=f"chmod go-w {cache / bucket}"):
        Cache.open(cache)


@posix_only
@needs_root
def test_an_environment_another_user_planted_is_refused_before_any_reuse(cache: Path) -> None:
    planted = cache / "envs-v1" / "f223ef35e22645fd"
    (planted / "bin").mkdir(parents=True)
    (planted / "kiln-env.json").write_text("{}")
    give_away(planted)
    with pytest.raises(UsageError, match="f223ef35e22645fd in kiln's cache is owned by another"):
        Cache.open(cache)
    planted.rename(cache / "theirs")
    (cache / "envs-v1" / "f223ef35e22645fd.lock").symlink_to(cache / "theirs")
    with pytest.raises(UsageError, match="is a symbolic link, which kiln never makes there"):
        Cache.open(cache)


@posix_only
def test_an_environment_made_under_umask_000_in_a_private_bucket_is_fine(cache: Path) -> None:
    made = cache / "envs-v1" / "f223ef35e22645fd"
    made.mkdir()
    made.chmod(0o777)
    assert mode(cache / "envs-v1") == 0o700, "no one else can reach it"
    Cache.open(cache)
    (cache / "envs-v1").chmod(0o711)  # others may enter: now the environment is exposed
    with pytest.raises(UsageError, match="f223ef35e22645fd in kiln's cache is writable by group"):
        Cache.open(cache)


@posix_only
def test_a_place_replaced_by_a_link_is_not_emptied(cache: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "src").mkdir(parents=True)
    (victim / "src" / "main.py").write_text("precious\n")
    before = snapshot(victim)
    (cache / "projects-v1" / "proj").symlink_to(victim, target_is_directory=True)
    with pytest.raises(UsageError, match="is a symbolic link, which kiln never makes there"):
        Workspace.in_cache(Cache.open(cache), "proj").open()
    assert snapshot(victim) == before
    assert list((cache / "runs-v1").iterdir()) == [], "the refused run leaves nothing"


@posix_only
@needs_root
def test_a_place_another_user_owns_is_not_emptied(cache: Path) -> None:
    place = cache / "projects-v1" / "proj"
    place.mkdir()
    (place / "theirs").write_text("x")
    give_away(place)
    with pytest.raises(UsageError, match="owned by another user"):
        Workspace.in_cache(Cache.open(cache), "proj").open()
    assert (place / "theirs").is_file()


# --------------------------------------------------------------------------- the head start


@pytest.fixture
def payload(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A program an attacker names as the interpreter, and the file it would write."""
    marker = tmp_path / "payload-ran"
    script = tmp_path / "payload.sh"
    script.write_text(f"#!/bin/sh\necho pwned > {marker}\n")
    script.chmod(0o755)
    yield script, marker


def plant_plan(cache: Path, source: Path, **changes: object) -> Path:
    plans = worker_plans(project_place(cache, source.name))
    keep_plan(plans, source, plan_fields(cache.parent, **changes))
    return plans


@posix_only
def test_a_plan_naming_a_program_outside_the_caches_environments_is_not_run(
    cache: Path, tmp_path: Path, payload: tuple[Path, Path]
) -> None:
    script, marker = payload
    source = tmp_path / "proj"
    source.mkdir()
    plant_plan(cache, source, python=str(script))
    assert start_for_build(source, cache, "warm") is None
    assert not marker.exists()


@posix_only
def test_a_plan_naming_an_environment_kiln_did_not_make_is_not_run(
    cache: Path, tmp_path: Path
) -> None:
    source = tmp_path / "proj"
    source.mkdir()
    python = kiln_made_environment(cache)
    plant_plan(cache, source, python=str(python))
    record = python.parent.parent / "kiln-env.json"
    kept = record.read_bytes()
    record.unlink()
    assert start_for_build(source, cache, "warm") is None
    record.write_bytes(kept)
    started = start_for_build(source, cache, "warm")
    assert started is not None, "the environment kiln made is trusted"
    started.discard()


@posix_only
@needs_root
def test_a_plan_another_user_wrote_or_can_write_is_not_run(cache: Path, tmp_path: Path) -> None:
    source = tmp_path / "proj"
    source.mkdir()
    kiln_made_environment(cache)
    plans = plant_plan(cache, source)
    give_away(plans)
    assert read_plan(plans, source) is None
    assert start_for_build(source, cache, "warm") is None
    os.chown(plans, os.geteuid(), os.getegid())
    plans.chmod(0o622)
    assert start_for_build(source, cache, "warm") is None
    give_away(kiln_made_environment(cache, "fedcba9876543210").parent.parent)
    plant_plan(cache, source, python=str(cache / "envs-v1" / "fedcba9876543210" / "bin" / "python"))
    assert start_for_build(source, cache, "warm") is None, "an environment someone else made"


# --------------------------------------------------------------------------- secrets


def test_a_plan_keeps_no_variable_of_the_users_environment(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cr3t")
    source = tmp_path / "proj"
    environ = {**os.environ, "VIRTUAL_ENV": "/env", "TMPDIR": "/place/tmp"}
    del environ["HOME"]
    plans = plant_plan(cache, source, environ=environ)
    assert b"s3cr3t" not in plans.read_bytes()
    # Rebuilt whole from this process's variables and what kiln changed.
    fields = read_plan(plans, source)
    assert fields is not None and fields["environ"] == environ
    # Another token: not the environment the plan was kept for.
    monkeypatch.setenv("MY_TOKEN", "another")
    assert read_plan(plans, source) is None


def test_no_plan_is_kept_when_a_variable_kiln_set_holds_a_credential(
    cache: Path, tmp_path: Path
) -> None:
    source = tmp_path / "proj"
    plans = plant_plan(cache, source)
    for name, value in [
        ("SCCACHE_REDIS_ENDPOINT", "redis://:pw@127.0.0.1:1"),
        ("CCACHE_REMOTE_STORAGE", "redis://pw@127.0.0.1:1"),
        ("SCCACHE_WEBDAV_PASSWORD", "pw"),
    ]:
        environ = {**os.environ, name: value}
        keep_plan(plans, source, plan_fields(tmp_path, environ=environ))
        assert b"pw" not in plans.read_bytes(), name
        assert read_plan(plans, source) is None


# --------------------------------------------------------------------------- modes


@posix_only
def test_a_run_and_its_place_are_owner_only_whatever_the_umask(cache: Path) -> None:
    previous = os.umask(0)
    try:
        workspace = Workspace.in_cache(Cache.open(cache), "proj").open()
        workspace.fail("test", source=cache, environment=None)
    finally:
        os.umask(previous)
    run = workspace.root
    for path in [run, *run.iterdir(), cache / "projects-v1" / "proj.lock"]:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


@posix_only
def test_an_untrusted_env_dir_record_is_refused_naming_the_env_dir(tmp_path: Path) -> None:
    # The refusal said "in kiln's cache ... choose another cache directory with
    # --cache-dir" for a record in an --env-dir, which no cache option changes.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "failed.json").write_text("{}")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / ".kiln-run").symlink_to(elsewhere)
    completed = run_kiln("debug", "--print", "--env-dir", env_dir)
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert f"in --env-dir {env_dir} is a symbolic link" in line
    assert line.endswith("or choose another --env-dir"), line
