"""Every path that can reach a compiler's command line is the same from one build to the next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kiln
from kiln.cache import Cache
from tests.conftest import ProjectFactory
from tests.helpers import run_kiln

pytestmark = pytest.mark.integration


def probe_build(source: Path, tmp_path: Path, round_: int) -> dict[str, object]:
    probe = tmp_path / f"probe{round_}"
    completed = run_kiln(
        source, "-o", tmp_path / "out", env=dict(os.environ, KILN_TEST_PROBE=str(probe))
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, object] = json.loads(Path(f"{probe}-build_wheel.json").read_text())
    return report


def test_paths_a_backend_sees_are_stable(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("probe_backend")
    first = probe_build(source, tmp_path, 1)
    second = probe_build(source, tmp_path, 2)
    # The wheel is built from the unpacked sdist: same directory, same TMPDIR, same prefix.
    for key in ("cwd", "tempdir", "prefix"):
        assert first[key] == second[key], key
    cache = os.environ["KILN_CACHE_DIR"]
    assert str(first["cwd"]).startswith(f"{cache}/projects-v1/probe_backend/from-sdist/")
    # The staging directory is new every build (no compiler sees it): runs with other
    # caches may share the output directory.
    for report in (first, second):
        staging = Path(str(report["output_dir"]))
        assert staging.parent == tmp_path / "out" and staging.name.startswith(".kiln-staging-")
    assert first["output_dir"] != second["output_dir"]


def test_the_stable_place_is_emptied_before_and_after(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("flit_project")
    cache = Path(os.environ["KILN_CACHE_DIR"])
    place = cache / "projects-v1" / "flit_project"
    Cache.open(cache)  # a cache kiln made, as the leftovers of a crashed run are in one
    (place / "from-sdist" / "kiln_fixture_flit-1.0.0" / "kiln_fixture_flit").mkdir(parents=True)
    stale = place / "from-sdist" / "kiln_fixture_flit-1.0.0" / "kiln_fixture_flit" / "stale.py"
    stale.write_text("STALE = True\n")
    result = kiln.build(source, tmp_path / "out")
    [wheel] = [a for a in result.artifacts if a.kind == "wheel"]
    import zipfile

    assert "kiln_fixture_flit/stale.py" not in zipfile.ZipFile(wheel.path).namelist()
    assert list(place.iterdir()) == []


def test_concurrent_builds_of_one_project_take_turns(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("hatchling_project")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "kiln", str(source), "-o", str(tmp_path / f"out{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    for i in range(3):
        assert len(list((tmp_path / f"out{i}").iterdir())) == 2


def test_a_failed_build_takes_its_sources_along(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("probe_backend")
    probe = tmp_path / "no-such-dir" / "probe"  # the probe cannot write there: build_wheel fails
    completed = run_kiln(
        source, "-o", tmp_path / "out", env=dict(os.environ, KILN_TEST_PROBE=str(probe))
    )
    assert completed.returncode == 1
    cache = Path(os.environ["KILN_CACHE_DIR"])
    [run] = (cache / "runs-v1").iterdir()
    hook = json.loads((run / "hook.json").read_text())
    assert hook["hook"] == "build_sdist"  # the first hook that reports fails
    assert hook["cwd"] == str(source)
    assert list((cache / "projects-v1" / "probe_backend").iterdir()) == []


def test_a_failed_wheel_step_keeps_the_unpacked_sdist(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("probe_backend")
    probe = tmp_path / "probe"
    Path(f"{probe}-build_wheel.json").mkdir()  # build_sdist reports; build_wheel cannot
    env = dict(os.environ, KILN_TEST_PROBE=str(probe))
    completed = run_kiln(source, "-o", tmp_path / "out", env=env)
    assert completed.returncode == 1, completed.stderr
    [run] = (Path(os.environ["KILN_CACHE_DIR"]) / "runs-v1").iterdir()
    hook = json.loads((run / "hook.json").read_text())
    assert hook["hook"] == "build_wheel"
    assert hook["cwd"].startswith(str(run / "from-sdist"))
    assert Path(hook["cwd"], "PKG-INFO").is_file()
    debug = run_kiln("debug", "--print")
    assert f"directory:   {hook['cwd']}" in debug.stdout


def test_building_dot_dot_leaves_the_cache_alone(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("flit_project")
    (source / "sub").mkdir()
    cache = Path(os.environ["KILN_CACHE_DIR"])
    kiln.build(source, tmp_path / "first")  # fills the cache
    completed = run_kiln("..", "-o", tmp_path / "out", cwd=source / "sub")
    assert completed.returncode == 0, completed.stderr
    assert (cache / "CACHEDIR.TAG").is_file() and (cache / "envs-v1").is_dir()
    assert (cache / "projects-v1" / "flit_project").is_dir()  # named after the real directory
