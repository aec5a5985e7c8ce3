"""Builds in a read-only world: every file system read-only except one directory.

Each build runs the real CLI in a private mount namespace (see tests/readonly.py)
where only the test's ``world`` directory can be written. The installers are
left pointed at caches outside it: uv's at the session's ``UV_CACHE_DIR`` (from
conftest), pip's at its default under ``$HOME``; both are read-only in there,
so a build only succeeds if kiln moves them into its own space.

The kiln process runs with a read-only working directory and no ``TMPDIR``, so
nothing can fall back to the working directory or the system temp dir either.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.cache import CACHEDIR_TAG
from tests.helpers import FIXTURES, INSTALLERS, SRC, wheel_files
from tests.readonly import SETUP_FAILED, readonly_world_available, run_in_readonly_world

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _needs_readonly_world() -> None:
    reason = readonly_world_available()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """The one writable directory; ``tmp_path`` around it is read-only in the world."""
    path = tmp_path / "world"
    path.mkdir()
    return path


@pytest.fixture
def environ(world: Path) -> Iterator[dict[str, str]]:
    """The test's environment (offline installers), without anything pointing into the world."""
    env = dict(os.environ)
    for name in ("TMPDIR", "TEMP", "TMP", "PIP_CACHE_DIR", "XDG_CACHE_HOME", "PIP_NO_CACHE_DIR"):
        env.pop(name, None)
    # Run this checkout's kiln, whatever is installed.
    env["PYTHONPATH"] = str(SRC)
    uv_cache = Path(env["UV_CACHE_DIR"])
    assert not uv_cache.is_relative_to(world), "uv's cache must be outside the world"
    assert not Path.home().is_relative_to(world), "pip's default cache must be outside the world"
    yield env


def kiln_in_world(
    world: Path, env: dict[str, str], *args: str | os.PathLike[str], cwd: Path
) -> tuple[int, str]:
    """Run ``python -m kiln ARGS`` where only ``world`` is writable: exit status, stderr."""
    done = run_in_readonly_world(
        [sys.executable, "-m", "kiln", *map(str, args)], world, env=env, cwd=cwd, timeout=60
    )
    assert done.returncode != SETUP_FAILED, done.stderr
    return done.returncode, done.stderr


def copy_project(name: str, world: Path) -> Path:
    target = world / "proj"
    shutil.copytree(FIXTURES / name, target)
    return target


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


PROJECTS = {
    "flit_project": ("kiln_fixture_flit-1.0.0.tar.gz", "kiln_fixture_flit-1.0.0-py3-none-any.whl"),
    "hatchling_project": (
        "kiln_fixture_hatchling-1.0.0.tar.gz",
        "kiln_fixture_hatchling-1.0.0-py3-none-any.whl",
    ),
}


@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_build_with_cache_dir_in_the_world(
    world: Path, environ: dict[str, str], tmp_path: Path, name: str, installer: str
) -> None:
    project = copy_project(name, world)
    environ["KILN_CACHE_DIR"] = str(world / "cache")
    code, stderr = kiln_in_world(
        world, environ, project, "-o", world / "out", "--installer", installer, cwd=tmp_path
    )
    assert code == 0, stderr
    assert sorted(p.name for p in (world / "out").iterdir()) == sorted(PROJECTS[name])
    wheel = world / "out" / PROJECTS[name][1]
    assert any(f.endswith(".dist-info/METADATA") for f in wheel_files(wheel))
    # The installer's own cache could not be written, and kiln said where it went instead.
    assert f"{installer} cache" in stderr and "not writable" in stderr, stderr


@pytest.mark.parametrize("installer", INSTALLERS)
def test_build_with_env_dir_in_the_world(
    world: Path, environ: dict[str, str], tmp_path: Path, installer: str
) -> None:
    project = copy_project("flit_project", world)
    read_only_cache = tmp_path / "kiln-cache-read-only"
    environ["KILN_CACHE_DIR"] = str(read_only_cache)
    code, stderr = kiln_in_world(
        world,
        environ,
        project,
        "-o",
        world / "out",
        "--env-dir",
        world / "env",
        "--installer",
        installer,
        cwd=tmp_path,
    )
    assert code == 0, stderr
    assert sorted(p.name for p in (world / "out").iterdir()) == sorted(PROJECTS["flit_project"])
    # kiln created the environment directory, so it removes it: scratch went in there too.
    assert not (world / "env").exists()
    assert sorted(p.name for p in world.iterdir()) == ["out", "proj"]
    assert not read_only_cache.exists()
    assert f"{installer} cache" in stderr and "not writable" in stderr, stderr


@pytest.mark.parametrize("where", ["KILN_CACHE_DIR", "default", "existing"])
def test_no_writable_cache_is_a_usage_error(
    world: Path, environ: dict[str, str], tmp_path: Path, where: str
) -> None:
    project = copy_project("flit_project", world)
    before = tree(world)
    if where in ("KILN_CACHE_DIR", "existing"):
        cache = tmp_path / "kiln-cache-read-only"
        environ["KILN_CACHE_DIR"] = str(cache)
        if where == "existing":  # a cache made earlier, now on a read-only mount
            (cache / "CACHEDIR.TAG").parent.mkdir()
            (cache / "CACHEDIR.TAG").write_text(CACHEDIR_TAG)  # kiln's, so a kiln cache
    else:
        environ.pop("KILN_CACHE_DIR", None)
        environ["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
        cache = tmp_path / "xdg-cache" / "kiln"
    code, stderr = kiln_in_world(world, environ, project, "-o", world / "out", cwd=tmp_path)
    assert code == 2, stderr
    [line] = stderr.splitlines()
    assert line.startswith("kiln: error: ") and str(cache) in line, stderr
    assert tree(world) == before
    left = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert left == (["CACHEDIR.TAG"] if where == "existing" else [])


def test_installer_cache_environ_sees_the_read_only_mount(world: Path, tmp_path: Path) -> None:
    """``os.access`` reports a read-only mount as not writable, even to root."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from kiln.installers import installer_cache_environ\n"
        "print(json.dumps(installer_cache_environ(json.loads(sys.argv[1]), Path(sys.argv[2]))))\n"
    )
    cases = {
        "read-only": tmp_path / "ro",  # exists
        "read-only, missing": tmp_path / "ro-missing" / "deeper",
        "writable": world / "writable",
        "writable, missing": world / "missing" / "deeper",
    }
    (tmp_path / "ro").mkdir()
    (world / "writable").mkdir()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(SRC)}
    fallback = world / "fallback"
    for case, cache in cases.items():
        given = {
            "PIP_CACHE_DIR": str(cache),
            "UV_CACHE_DIR": str(cache),
            "PIP_CONFIG_FILE": os.devnull,
        }
        done = run_in_readonly_world(
            [sys.executable, "-c", script, json.dumps(given), str(fallback)], world, env=env
        )
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        if case.startswith("read-only"):
            assert got == {
                **given,
                "PIP_CACHE_DIR": str(fallback / "pip"),
                "UV_CACHE_DIR": str(fallback / "uv"),
            }, case
        else:
            assert got == given, case
