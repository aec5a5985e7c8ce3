"""--no-isolation: the current interpreter builds; its requirements are checked, not installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import SRC, run_kiln

pytestmark = pytest.mark.integration

# What kiln itself needs to run in the interpreter under test.
KILN_DEPENDENCIES = ("packaging", "pyproject-hooks")


def make_venv(root: Path, *packages: str) -> Path:
    """A real virtual environment with kiln's dependencies and ``packages``, from the wheelhouse."""
    import kiln.installers

    uv = kiln.installers.find_uv()
    assert uv is not None
    subprocess.run([uv, "venv", "-q", str(root)], check=True)
    python = root / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), *KILN_DEPENDENCIES, *packages],
        check=True,
    )
    return python


def kiln_in(python: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    # kiln runs from the source tree; the venv provides everything else.
    return run_kiln(*args, python=str(python), env=dict(os.environ, PYTHONPATH=str(SRC)))


def test_builds_with_the_current_interpreter(project: ProjectFactory, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", "flit_core")
    source = project("flit_project")
    completed = kiln_in(python, source, "-n", "--report", tmp_path / "report.json")
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in (source / "dist").iterdir()) == [
        "kiln_fixture_flit-1.0.0-py3-none-any.whl",
        "kiln_fixture_flit-1.0.0.tar.gz",
    ]
    assert '"isolated": false' in (tmp_path / "report.json").read_text()
    assert "Creating build environment" not in completed.stderr


def test_missing_requirement_is_listed(project: ProjectFactory, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    completed = kiln_in(python, project("hatchling_project"), "-n")
    assert completed.returncode == 3
    assert "kiln: error: the build requirements are not met" in completed.stderr
    assert "  - hatchling>=1.26 (not installed)" in completed.stderr
    assert "-x/--skip-dependency-check" in completed.stderr


def test_missing_transitive_requirement_is_listed(project: ProjectFactory, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", "hatchling")
    import kiln.installers

    uv = kiln.installers.find_uv()
    assert uv is not None
    subprocess.run([uv, "pip", "uninstall", "-q", "--python", str(python), "pluggy"], check=True)
    completed = kiln_in(python, project("hatchling_project"), "-n")
    assert completed.returncode == 3
    assert "pluggy" in completed.stderr
    assert "required by hatchling>=1.26" in completed.stderr


def test_dynamic_requirements_are_checked(project: ProjectFactory, tmp_path: Path) -> None:
    # The in-tree backend asks for "wheel" from get_requires_for_build_wheel.
    python = make_venv(tmp_path / "venv", "setuptools")
    completed = kiln_in(python, project("intree_backend"), "-n", "-w")
    assert completed.returncode == 3
    assert "  - wheel (not installed)" in completed.stderr


def test_skip_dependency_check(project: ProjectFactory, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", "setuptools")
    completed = kiln_in(python, project("intree_backend"), "-n", "-x", "-w")
    # Unchecked, the build goes ahead: setuptools builds the wheel without the wheel package.
    assert completed.returncode == 0, completed.stderr
    assert "not met" not in completed.stderr


def test_installer_options_are_refused(project: ProjectFactory, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    completed = kiln_in(python, project("flit_project"), "-n", "--installer", "uv")
    assert completed.returncode == 2
    assert "--installer has no effect with --no-isolation" in completed.stderr
