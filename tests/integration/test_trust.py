"""Trust with real builds: no secret left in the cache, owner-only permissions."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import run_kiln
from tests.unit.test_trust import mode, posix_only

STARTED_AHEAD = re.compile(r"hook runner: warm \(worker \d+, [\w.:]+, started ahead\)")


@pytest.mark.integration
def test_a_build_leaves_no_secret_in_the_cache_and_still_starts_ahead(
    project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cr3t")
    source = project("flit_project")
    cache = tmp_path / "cache"
    options = ("--cache-dir", cache, "--hook-runner", "warm", "-vv", "-w")
    remote = ("--compiler-cache-remote", "redis://:pw-b4d@127.0.0.1:1")
    first = run_kiln(source, "-o", tmp_path / "out1", *options, *remote)
    assert first.returncode == 0, first.stderr
    for path in cache.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            assert b"s3cr3t" not in content and b"pw-b4d" not in content, path
    [plans] = (cache / "projects-v1").glob("*.worker.json")
    assert json.loads(plans.read_text()), "a plan was kept"
    second = run_kiln(source, "-o", tmp_path / "out2", *options)
    assert second.returncode == 0, second.stderr
    assert STARTED_AHEAD.search(second.stderr), second.stderr


@posix_only
@pytest.mark.integration
def test_the_cache_is_owner_only_whatever_the_umask(
    project: ProjectFactory, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    previous = os.umask(0)
    try:
        completed = run_kiln(project("flit_project"), "-o", tmp_path / "out", "--cache-dir", cache)
    finally:
        os.umask(previous)
    assert completed.returncode == 0, completed.stderr
    assert mode(cache) == 0o700
    made = [cache, *cache.iterdir()]
    for bucket in ("projects-v1", "runs-v1", "logs-v1"):
        made += (cache / bucket).iterdir()
    made += [p for p in (cache / "envs-v1").iterdir() if p.suffix == ".lock"]
    # In each environment, what kiln writes itself (its record, the warm runner's notes,
    # when it was last used); what the installer writes follows the umask.
    for env in (p for p in (cache / "envs-v1").iterdir() if p.is_dir()):
        made += [p for p in env.iterdir() if p.name.startswith(("kiln-", ".last-used"))]
    assert len(made) > 10
    for path in made:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    # Artifacts are the user's to share: the umask applies to them as to any file.
    assert all(mode(p) & 0o066 for p in (tmp_path / "out").iterdir())
