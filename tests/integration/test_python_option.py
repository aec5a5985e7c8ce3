"""--python: real builds for interpreters other than the one running kiln (pyenv's)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kiln
from kiln.errors import UsageError
from kiln.interpreters import Interpreter, find_interpreter
from tests.conftest import ProjectFactory
from tests.helpers import error_line, run_kiln, wheel_files

pytestmark = pytest.mark.integration


def target(version: str) -> Interpreter:
    """The interpreter for ``version``, or a skip naming how to get one."""
    try:
        found = find_interpreter(version, os.environ)
    except UsageError:
        pytest.skip(f"needs Python {version} (pyenv install {version})")
    if found.version[:2] == sys.version_info[:2]:
        pytest.skip(f"kiln itself runs on {version}: nothing to tell apart")
    return found


def environment_versions(cache: Path) -> set[str]:
    """The Python version of each cached build environment."""
    versions = set()
    for python in sorted((cache / "envs-v1").glob("*/bin/python")):
        completed = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        )
        versions.add(completed.stdout.strip())
    return versions


@pytest.mark.needs("gcc")
@pytest.mark.parametrize(("version", "installer"), [("3.10", "pip"), ("3.12", "uv")])
def test_a_c_extension_is_built_for_the_interpreter_asked_for(
    project: ProjectFactory, tmp_path: Path, version: str, installer: str
) -> None:
    interpreter = target(version)
    tag = interpreter.tag
    report = tmp_path / "report.json"
    completed = run_kiln(
        project("c_extension"),
        "-p",
        version,
        "--installer",
        installer,
        "-o",
        tmp_path / "out",
        "--report",
        report,
    )
    assert completed.returncode == 0, completed.stderr
    [wheel] = (tmp_path / "out").glob("*.whl")
    assert wheel.name.endswith(f"-{tag}-{tag}-linux_x86_64.whl"), wheel.name
    # The extension module was compiled against that interpreter's headers and ABI.
    assert any(f".cpython-{tag[2:]}-" in name for name in wheel_files(wheel))
    assert f"Building for CPython {interpreter.dotted_version}" in completed.stderr
    written = json.loads(report.read_text())
    assert written["python"] == str(interpreter.path)
    assert written["python_version"] == interpreter.dotted_version
    assert environment_versions(Path(os.environ["KILN_CACHE_DIR"])) == {version}


def test_one_project_built_for_two_interpreters_gets_two_environments(
    project: ProjectFactory, tmp_path: Path
) -> None:
    py310, py312 = target("3.10"), target("3.12")
    source = project("hatchling_project")
    for interpreter in (py310, py312):
        result = kiln.build(source, tmp_path / "out", "wheel", python=interpreter.dotted_version)
        assert result.python_version == interpreter.dotted_version
        assert result.python == str(interpreter.path)
    assert environment_versions(Path(os.environ["KILN_CACHE_DIR"])) == {"3.10", "3.12"}


def test_the_running_interpreter_named_by_python_reuses_its_environment(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("hatchling_project")
    kiln.build(source, tmp_path / "out", "wheel")
    running = ".".join(map(str, sys.version_info[:3]))
    result = kiln.build(source, tmp_path / "out", "wheel", python=running)
    assert result.python_version == running
    # The same interpreter gives the same environment key: still one environment.
    assert len(list((Path(os.environ["KILN_CACHE_DIR"]) / "envs-v1").glob("*/bin/python"))) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["-p", "3.99"], "kiln: error: --python 3.99: no such interpreter on PATH or under pyenv"),
        (["--python", "/no/such/python"], "kiln: error: --python /no/such/python: "),
        (["-n", "-p", "3.12"], "kiln: error: --python makes a build environment"),
    ],
)
def test_a_bad_python_is_one_line_and_exit_2(
    project: ProjectFactory, tmp_path: Path, arguments: list[str], message: str
) -> None:
    source = project("hatchling_project")
    completed = run_kiln(source, *arguments, "-o", tmp_path / "out")
    assert completed.returncode == 2, completed.stderr
    assert error_line(completed.stderr).startswith(message)
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert not (tmp_path / "out").exists()


STARTED_AHEAD = re.compile(r"hook runner: warm \(worker \d+, hatchling.build, started ahead\)")


def test_each_interpreter_keeps_its_own_worker_plan(
    project: ProjectFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version = target("3.12").dotted_version
    source = project("hatchling_project")

    def build(**options: str) -> str:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="kiln.hooks.warm"):
            kiln.build(source, tmp_path / "out", "wheel", hook_runner="warm", **options)  # type: ignore[arg-type]
        return caplog.text

    assert not STARTED_AHEAD.search(build(python=version))
    build()  # another interpreter's build of the same project in between
    # The 3.12 build's plan was not replaced by the other: its worker starts ahead.
    assert STARTED_AHEAD.search(build(python=version))
