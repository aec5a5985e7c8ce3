"""Which backends get a stable build directory, decided without a build."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.backends import with_stable_build_dir
from kiln.project import Project


def write_project(root: Path, backend: str, tool: str = "") -> Project:
    root.mkdir()
    (root / "pyproject.toml").write_text(
        f'[build-system]\nrequires = []\nbuild-backend = "{backend}"\n{tool}'
    )
    return Project.load(root)


@pytest.mark.parametrize("backend", ["scikit_build_core.build", "mesonpy"])
def test_backends_that_build_in_a_temporary_dir_get_a_stable_one(
    tmp_path: Path, backend: str
) -> None:
    project = write_project(tmp_path / "p", backend)
    settings = with_stable_build_dir(project, {"other": "x"}, tmp_path / "build", "wheel")
    assert settings == {"other": "x", "build-dir": str(tmp_path / "build")}
    # The user's own choice stands.
    assert with_stable_build_dir(project, {"build-dir": "mine"}, tmp_path / "b", "wheel") == {
        "build-dir": "mine"
    }
    # An editable wheel loads from its build directory later: not kiln's to choose.
    assert with_stable_build_dir(project, {}, tmp_path / "b", "editable") == {}


def test_a_build_dir_in_pyproject_stands(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p", "scikit_build_core.build", '[tool.scikit-build]\nbuild-dir = "build/x"\n'
    )
    assert with_stable_build_dir(project, {}, tmp_path / "b", "wheel") == {}


def test_other_backends_are_left_alone(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", "setuptools.build_meta")
    assert with_stable_build_dir(project, {"a": "b"}, tmp_path / "b", "wheel") == {"a": "b"}


@pytest.mark.parametrize("name", ["..", ".", "...tar.gz"])
def test_dot_names_never_become_the_cache_itself(tmp_path: Path, name: str) -> None:
    from kiln.layout import project_label

    label = project_label(name.removesuffix(".tar.gz"))
    assert label not in ("", ".", "..") and not label.startswith(".")
