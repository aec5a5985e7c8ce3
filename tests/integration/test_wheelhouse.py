"""`kiln wheelhouse` end to end: real trees from a local index, real backends, offline.

The index is made per session from tests/fixtures/tree (sdists built with kiln, and
wheels for the cycle's seeds) beside the test wheelhouse's sdists (six, tomli,
markupsafe, flit_core...).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kiln.installers import find_uv
from tests.conftest import installer_offline_environ
from tests.helpers import FIXTURES, pid_alive, run_kiln, wait_for_file, wheel_files

TREE = FIXTURES / "tree"


@pytest.fixture(scope="session")
def tree_index(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """A find-links directory: an sdist of every tree project, and wheels of the
    cycle's two packages (a seed comes from the index as a wheel). flit_core makes
    them directly, in a venv of its own: several projects' build requirements
    (each other, the tree's own packages) are on no index."""
    root = tmp_path_factory.mktemp("tree-index")
    index = root / "index"
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "KILN_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    environ.update(installer_offline_environ(wheelhouse, root / "uv-cache"))
    venv = root / "flit-venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "flit_core"], check=True, env=environ)
    code = (
        "import flit_core.buildapi as b, sys; b.build_sdist(sys.argv[1]); "
        "sys.argv[2:] and b.build_wheel(sys.argv[1])"
    )
    for project in sorted(p for p in TREE.iterdir() if p.is_dir()):
        copy = root / "projects" / project.name
        shutil.copytree(project, copy)
        wheel = ["wheel"] if "cycle" in project.name else []
        subprocess.run([python, "-c", code, index, *wheel], cwd=copy, env=environ, check=True)
    return index


def wheelhouse_args(tree_index: Path, wheelhouse: Path, *args: str | Path) -> list[str | Path]:
    return [
        "wheelhouse",
        *args,
        "-f",
        tree_index,
        "-f",
        wheelhouse / "sdists",
        "-j",
        "2",
    ]


def report(outdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((outdir / "report.json").read_text())
    return data


def statuses(outdir: Path) -> dict[str, str]:
    return {p["name"]: p["status"] for p in report(outdir)["packages"]}


def test_a_tree_builds_into_an_installable_wheelhouse(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    done = run_kiln(*wheelhouse_args(tree_index, wheelhouse, "kt-base", "six", "tomli", "-o", out))
    assert done.returncode == 0, done.stderr
    assert statuses(out) == {"kt-base": "built", "six": "built", "tomli": "built"}
    wheels = sorted(p.name for p in out.glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["kt_base", "six", "tomli"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert (out / f"pylock.{tag}.toml").is_file()
    # The simple index installs offline, with uv, in a new environment.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    environ.update(UV_NO_CONFIG="1", UV_OFFLINE="1", UV_CACHE_DIR=str(tmp_path / "uvc"))
    install = subprocess.run(
        [
            find_uv() or "uv",
            "pip",
            "install",
            "--python",
            venv / "bin" / "python",
            "--index-url",
            (out / "simple").as_uri(),
            "kt-base",
            "six",
            "tomli",
        ],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    check = subprocess.run(
        [venv / "bin" / "python", "-c", "import kt_base, six, tomli; print(kt_base.VALUE)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.stdout.strip() == "1", check.stderr


def test_a_second_run_with_nothing_changed_builds_nothing(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    first = run_kiln(*wheelhouse_args(tree_index, wheelhouse, "kt-base", "six", "-o", out))
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.glob("*.whl")}
    second = run_kiln(*wheelhouse_args(tree_index, wheelhouse, "kt-base", "six", "-o", out))
    assert second.returncode == 0, second.stderr
    assert statuses(out) == {"kt-base": "cached", "six": "cached"}
    assert "2 cached" in second.stdout
    assert {p.name: p.read_bytes() for p in out.glob("*.whl")} == before


def test_a_changed_patch_rebuilds_that_package_only(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    patch = tmp_path / "kt-base.patch"
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[packages.kt-base]\npatches = ["{patch.name}"]\n')

    def write_patch(value: int) -> None:
        patch.write_text(
            "--- a/kt_base.py\n+++ b/kt_base.py\n@@ -1,3 +1,3 @@\n"
            ' """A wheelhouse test package."""\n \n'
            f"-VALUE = 1\n+VALUE = {value}\n"
        )

    out = tmp_path / "wh"
    args = wheelhouse_args(
        tree_index, wheelhouse, "kt-base", "six", "-o", out, "--settings", settings
    )
    write_patch(2)
    first = run_kiln(*args)
    assert first.returncode == 0, first.stderr
    assert statuses(out) == {"kt-base": "built", "six": "built"}
    write_patch(3)
    second = run_kiln(*args)
    assert second.returncode == 0, second.stderr
    assert statuses(out) == {"kt-base": "built", "six": "cached"}
    (wheel,) = out.glob("kt_base-*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        assert "VALUE = 3" in archive.read("kt_base.py").decode()


def test_a_changed_build_dependency_rebuilds_what_was_built_with_it(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    patch = tmp_path / "kt-base.patch"
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[packages.kt-base]\npatches = ["{patch.name}"]\n')

    def write_patch(round_: int) -> None:
        patch.write_text(
            "--- a/kt_base.py\n+++ b/kt_base.py\n@@ -1,3 +1,3 @@\n"
            '-"""A wheelhouse test package."""\n'
            f'+"""A wheelhouse test package, round {round_}."""\n \n VALUE = 1\n'
        )

    out = tmp_path / "wh"
    args = wheelhouse_args(
        tree_index,
        wheelhouse,
        "kt-plugin",
        "six",
        "-o",
        out,
        "--build-deps",
        "source",
        # The test wheelhouse has no sdist of setuptools: six's backend comes as a wheel.
        "--binary",
        "setuptools",
        "--settings",
        settings,
    )
    write_patch(1)
    first = run_kiln(*args)
    assert first.returncode == 0, first.stderr
    assert set(statuses(out).values()) == {"built", "binary"}
    write_patch(2)
    second = run_kiln(*args)
    assert second.returncode == 0, second.stderr
    # kt-plugin was built with kt-base in its build environment: it is built again;
    # six and the build backends did not change, and are not.
    assert statuses(out) == {
        "kt-base": "built",
        "kt-plugin": "built",
        "six": "cached",
        "flit-core": "cached",
        "setuptools": "binary",
    }


def test_a_patch_that_does_not_apply_is_named(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    patch = tmp_path / "bad.patch"
    patch.write_text(
        "--- a/kt_base.py\n+++ b/kt_base.py\n@@ -1,1 +1,1 @@\n-nothing like this\n+x\n"
    )
    settings = tmp_path / "settings.toml"
    settings.write_text('[packages.kt-base]\npatches = ["bad.patch"]\n')
    out = tmp_path / "wh"
    out.mkdir()
    (out / "mine.txt").write_text("the user's")
    done = run_kiln(
        *wheelhouse_args(tree_index, wheelhouse, "kt-base", "-o", out, "--settings", settings)
    )
    # The package fails (the rest of a tree would be built): exit 1, as documented.
    assert done.returncode == 1, done.stderr
    assert str(patch) in done.stderr or "bad.patch" in done.stderr, done.stderr
    assert (out / "mine.txt").read_text() == "the user's"


def test_build_requirements_from_source_are_built_first(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    done = run_kiln(
        *wheelhouse_args(tree_index, wheelhouse, "kt-plugin", "-o", out, "--build-deps", "source")
    )
    assert done.returncode == 0, done.stderr
    packages = {p["name"]: p for p in report(out)["packages"]}
    # kt-plugin's backend imports kt_base, which no index has as a wheel: only the
    # tree's own kt-base wheel can have been in its build environment.
    assert {n: p["status"] for n, p in packages.items()} == {
        "kt-base": "built",
        "kt-plugin": "built",
        "flit-core": "built",
    }
    assert packages["flit-core"]["kind"] == "build"
    assert any(d.startswith("kt-base==") for d in packages["kt-plugin"]["build_deps"])
    assert any(d.startswith("flit-core==") for d in packages["kt-base"]["build_deps"])


def test_a_failure_blocks_its_dependents_and_nothing_else(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    done = run_kiln(
        *wheelhouse_args(
            tree_index,
            wheelhouse,
            "kt-needs-broken",
            "kt-base",
            "-o",
            out,
            "--build-deps",
            "source",
        )
    )
    assert done.returncode == 1, done.stderr
    found = statuses(out)
    assert found["kt-broken"] == "failed"
    assert found["kt-needs-broken"] == "blocked"
    assert found["kt-base"] == "built"
    assert "kiln debug kt-broken" in done.stderr
    debug = run_kiln("debug", "kt-broken", "--print")
    assert debug.returncode == 0, debug.stderr
    assert "kt-broken cannot be built" in debug.stdout or "kt_broken" in debug.stdout


def test_a_build_cycle_is_broken_by_a_named_seed(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    done = run_kiln(
        *wheelhouse_args(tree_index, wheelhouse, "kt-cycle-a", "-o", out, "--build-deps", "source")
    )
    assert done.returncode == 0, done.stderr
    cycles = report(out)["cycles"]
    assert len(cycles) == 1
    seed = cycles[0]["seed"]
    assert seed.split("==")[0] in ("kt-cycle-a", "kt-cycle-b")
    assert "seed" in done.stderr
    assert statuses(out)[seed.split("==")[0]] == "binary"


def test_ctrl_c_mid_tree_stops_every_job_and_keeps_finished_wheels(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    pidfile = tmp_path / "slow.pid"
    environ = dict(os.environ, KT_SLOW_PIDFILE=str(pidfile))
    args = wheelhouse_args(tree_index, wheelhouse, "kt-base", "kt-slow", "-o", out)
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", *map(str, args)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        slow_pid = int(wait_for_file(pidfile, process))
        cache = Path(os.environ["KILN_CACHE_DIR"])
        deadline = time.monotonic() + 120
        # A stored entry, named by its key alone: not <key>.<pid>.partial, which
        # Ctrl-C would still remove.
        while not [p for p in cache.glob("wheels-v1/*/kt_base-*.whl") if "." not in p.parent.name]:
            assert time.monotonic() < deadline, "kt-base was never stored"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert not pid_alive(slow_pid)
    again = run_kiln(*wheelhouse_args(tree_index, wheelhouse, "kt-base", "-o", out))
    assert again.returncode == 0, again.stderr
    assert statuses(out) == {"kt-base": "cached"}


def test_two_concurrent_runs_share_one_cache(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiln",
                *map(str, wheelhouse_args(tree_index, wheelhouse, "kt-base", "six", "-o", out)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in (tmp_path / "one", tmp_path / "two")
    ]
    for process in runs:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    for out in (tmp_path / "one", tmp_path / "two"):
        assert sorted(p.name.split("-")[0] for p in out.glob("*.whl")) == ["kt_base", "six"]
        assert set(statuses(out).values()) <= {"built", "cached"}


def test_a_package_with_no_sdist_is_named_and_binary_takes_its_wheel(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    refused = run_kiln(*wheelhouse_args(tree_index, wheelhouse, "ninja", "-o", out))
    assert refused.returncode == 2, refused.stderr
    assert "ninja" in refused.stderr and "--binary ninja" in refused.stderr
    taken = run_kiln(
        *wheelhouse_args(tree_index, wheelhouse, "ninja", "--binary", "ninja", "-o", out)
    )
    assert taken.returncode == 0, taken.stderr
    assert statuses(out) == {"ninja": "binary"}
    assert wheel_files(next(out.glob("ninja-*.whl")))


@pytest.mark.parametrize("pythons", [("3.10", "3.12")])
def test_one_run_builds_for_several_interpreters(
    tmp_path: Path, tree_index: Path, wheelhouse: Path, pythons: tuple[str, str]
) -> None:
    out = tmp_path / "wh"
    args = [a for p in pythons for a in ("-p", p)]
    done = run_kiln(*wheelhouse_args(tree_index, wheelhouse, "markupsafe", "-o", out, *args))
    assert done.returncode == 0, done.stderr
    tags = sorted(p.name.split("-")[2] for p in out.glob("markupsafe-*.whl"))
    assert tags == ["cp310", "cp312"]
    assert (out / "pylock.cp310.toml").is_file()
    assert (out / "pylock.cp312.toml").is_file()


def test_a_hash_given_for_a_package_taken_as_a_wheel_checks_the_wheel(
    tmp_path: Path, wheelhouse: Path
) -> None:
    import hashlib

    sdist = next((wheelhouse / "sdists").glob("tomli-*.tar.gz"))
    version = sdist.name.removesuffix(".tar.gz").split("-")[1]
    requirements = tmp_path / "requirements.txt"

    def run_with_hashes(*files: Path) -> subprocess.CompletedProcess[str]:
        hashes = " ".join(
            f"--hash=sha256:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files
        )
        requirements.write_text(f"tomli=={version} {hashes}\n")
        args: list[str | Path] = ["-r", requirements, "--binary", "tomli", "-o", tmp_path / "wh"]
        return run_kiln("wheelhouse", *args, "-f", wheelhouse, "-f", wheelhouse / "sdists")

    # Only the sdist's hash: the wheel taken instead matches no --hash, as pip refuses it.
    refused = run_with_hashes(sdist)
    assert refused.returncode == 2, refused.stderr
    assert "tomli" in refused.stderr and "--hash" in refused.stderr
    taken = run_with_hashes(*wheelhouse.glob(f"tomli-{version}-*.whl"))
    assert taken.returncode == 0, taken.stderr
    assert statuses(tmp_path / "wh") == {"tomli": "binary"}


def test_a_run_stopped_by_a_users_file_leaves_no_run_directory_behind(
    tmp_path: Path, wheelhouse: Path
) -> None:
    from kiln.layout import WHEELHOUSE_RUNS

    out = tmp_path / "wh"
    out.mkdir()
    for wheel in wheelhouse.glob("tomli-*.whl"):
        (out / wheel.name).write_text("the user's")
    cache = tmp_path / "cache"
    args: list[str | Path] = ["tomli", "--binary", "tomli", "-o", out, "--cache-dir", cache]
    done = run_kiln("wheelhouse", *args, "-f", wheelhouse, "-f", wheelhouse / "sdists")
    assert done.returncode == 2, done.stderr
    assert "kiln did not write it" in done.stderr
    assert {p.read_text() for p in out.glob("tomli-*.whl")} == {"the user's"}
    assert not list((cache / WHEELHOUSE_RUNS).glob("run-*"))


@pytest.mark.parametrize("name", ["report.json", "pylock.{tag}.toml"])
def test_a_users_file_named_like_the_report_or_pins_is_not_overwritten(
    tmp_path: Path, wheelhouse: Path, name: str
) -> None:
    out = tmp_path / "wh"
    out.mkdir()
    theirs = out / name.format(tag=f"cp{sys.version_info.major}{sys.version_info.minor}")
    theirs.write_text("the user's")
    args: list[str | Path] = ["tomli", "--binary", "tomli", "-o", out]
    done = run_kiln("wheelhouse", *args, "-f", wheelhouse, "-f", wheelhouse / "sdists")
    assert done.returncode == 2, done.stderr
    assert str(theirs) in done.stderr and "kiln did not write it" in done.stderr
    assert theirs.read_text() == "the user's"
    # What kiln wrote itself, it writes again.
    theirs.unlink()
    assert run_kiln("wheelhouse", *args, "-f", wheelhouse).returncode == 0
    again = run_kiln("wheelhouse", *args, "-f", wheelhouse)
    assert again.returncode == 0, again.stderr


def test_a_project_directory_built_twice_is_built_once(tmp_path: Path, wheelhouse: Path) -> None:
    # `cd project && kiln wheelhouse .`: the wheelhouse lands inside the project, and
    # setuptools leaves build/ and *.egg-info there; neither is a change to rebuild for.
    project = tmp_path / "proj"
    (project / "src" / "stp").mkdir(parents=True)
    (project / "src" / "stp" / "__init__.py").write_text("X = 1\n")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "stp"\nversion = "1.0"\n'
    )
    args: list[str | Path] = ["wheelhouse", ".", "-f", wheelhouse, "-f", wheelhouse / "sdists"]
    first = run_kiln(*args, cwd=project)
    assert first.returncode == 0, first.stderr
    second = run_kiln(*args, cwd=project)
    assert second.returncode == 0, second.stderr
    assert statuses(project / "wheelhouse") == {"stp": "cached"}
    # A real change is still one.
    (project / "src" / "stp" / "__init__.py").write_text("X = 2\n")
    third = run_kiln(*args, cwd=project)
    assert third.returncode == 0, third.stderr
    assert statuses(project / "wheelhouse") == {"stp": "built"}


def test_the_report_goes_where_report_says_or_the_run_is_refused_first(
    tmp_path: Path, wheelhouse: Path
) -> None:
    base: list[str | Path] = ["wheelhouse", "tomli", "--binary", "tomli", "-f", wheelhouse]
    path = tmp_path / "reports" / "today" / "report.json"
    done = run_kiln(*base, "-o", tmp_path / "wh", "--report", path)
    assert done.returncode == 0, done.stderr
    assert json.loads(path.read_text())["summary"]["ok"] is True
    refused = run_kiln(*base, "-o", tmp_path / "wh", "--report", tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
