"""[build-system] reading and validation, before any environment exists."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kiln.errors import ConfigError, UsageError
from kiln.project import LEGACY_BACKEND, LEGACY_REQUIRES, Project, SourceInput, read_build_system


def write(directory: Path, pyproject: str | None = None, setup_py: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if pyproject is not None:
        (directory / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    if setup_py:
        (directory / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    return directory


def test_full_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "_backend").mkdir()
    write(
        tmp_path,
        '[build-system]\nrequires = ["hatchling>=1", "wheel; python_version<\'4\'"]\n'
        'build-backend = "hatchling.build"\nbackend-path = ["_backend"]\n',
    )
    build_system = read_build_system(tmp_path)
    assert build_system.requires == ("hatchling>=1", "wheel; python_version<'4'")
    assert build_system.build_backend == "hatchling.build"
    assert build_system.backend_path == ("_backend",)
    assert not build_system.legacy


def test_object_reference_backend_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, '[build-system]\nrequires = []\nbuild-backend = "pkg.mod:obj.attr"\n')
    assert read_build_system(tmp_path).build_backend == "pkg.mod:obj.attr"


def test_setup_py_only_gets_the_legacy_backend(tmp_path: Path) -> None:
    build_system = read_build_system(write(tmp_path, None, setup_py=True))
    assert build_system.requires == LEGACY_REQUIRES
    assert build_system.build_backend == LEGACY_BACKEND
    assert build_system.legacy


def test_pyproject_without_table_gets_the_legacy_backend(tmp_path: Path) -> None:
    write(tmp_path, '[project]\nname = "x"\n', setup_py=True)
    assert read_build_system(tmp_path).build_backend == LEGACY_BACKEND


def test_table_without_backend_keeps_its_requires(tmp_path: Path) -> None:
    write(tmp_path, '[build-system]\nrequires = ["setuptools>=70", "cython"]\n', setup_py=True)
    build_system = read_build_system(tmp_path)
    assert build_system.requires == ("setuptools>=70", "cython")
    assert build_system.build_backend == LEGACY_BACKEND


def test_a_directory_that_is_no_project_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not look like a Python project"):
        read_build_system(tmp_path)


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, '[build-system]\nrequires = ["setuptools"\nbuild-backend = "x"\n')
    with pytest.raises(ConfigError) as caught:
        read_build_system(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "pyproject.toml") in message
    assert "line 3" in message
    assert "column" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", ['"setuptools"', "42", '["ok", 3]', '{a = "b"}'])
def test_requires_must_be_a_list_of_strings(tmp_path: Path, value: str) -> None:
    write(tmp_path, f'[build-system]\nrequires = {value}\nbuild-backend = "x"\n')
    with pytest.raises(ConfigError, match=r"build-system\.requires must be a list of strings"):
        read_build_system(tmp_path)


def test_requires_must_be_present(tmp_path: Path) -> None:
    write(tmp_path, '[build-system]\nbuild-backend = "x"\n')
    with pytest.raises(ConfigError, match="no 'requires' key"):
        read_build_system(tmp_path)


def test_invalid_requirement_is_named(tmp_path: Path) -> None:
    write(tmp_path, '[build-system]\nrequires = ["good", "bad >= >= 1"]\nbuild-backend = "x"\n')
    with pytest.raises(ConfigError, match=r"invalid requirement 'bad >= >= 1'"):
        read_build_system(tmp_path)


@pytest.mark.parametrize("backend", ["", "a b", "mod:", ":obj", "mod::obj", "1mod", "a.-b", "42"])
def test_malformed_backend_is_refused(tmp_path: Path, backend: str) -> None:
    value = backend if backend == "42" else f'"{backend}"'
    write(tmp_path, f"[build-system]\nrequires = []\nbuild-backend = {value}\n")
    with pytest.raises(ConfigError, match=r"'module' or 'module:object'"):
        read_build_system(tmp_path)


@pytest.mark.parametrize("entry", ["..", "../elsewhere", "/tmp", "sub/../.."])
def test_backend_path_outside_the_project_is_refused(tmp_path: Path, entry: str) -> None:
    project = write(
        tmp_path / "proj",
        f'[build-system]\nrequires = []\nbuild-backend = "b"\nbackend-path = ["{entry}"]\n',
    )
    (tmp_path / "elsewhere").mkdir()
    (project / "sub").mkdir()
    with pytest.raises(ConfigError, match="outside the project"):
        read_build_system(project)


def test_backend_path_symlink_leaving_the_project_is_refused(tmp_path: Path) -> None:
    project = write(
        tmp_path / "proj",
        '[build-system]\nrequires = []\nbuild-backend = "b"\nbackend-path = ["link"]\n',
    )
    (tmp_path / "outside").mkdir()
    (project / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(ConfigError, match="outside the project"):
        read_build_system(project)


def test_missing_backend_path_is_refused(tmp_path: Path) -> None:
    write(tmp_path, '[build-system]\nrequires = []\nbuild-backend = "b"\nbackend-path = ["gone"]\n')
    with pytest.raises(ConfigError, match="'gone' does not exist"):
        read_build_system(tmp_path)


def test_likely_typos_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(
        tmp_path,
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        'build_backend = "x"\nrequirements = ["y"]\n',
    )
    with caplog.at_level(logging.WARNING, logger="kiln"):
        read_build_system(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'build_backend'" in w and "'build-backend'" in w for w in warnings)
    assert any("'requirements'" in w and "'requires'" in w for w in warnings)


def test_project_load_resolves_the_directory(tmp_path: Path) -> None:
    write(tmp_path / "p", None, setup_py=True)
    loaded = Project.load(tmp_path / "p" / ".." / "p")
    assert loaded.source_dir == (tmp_path / "p").resolve()


def test_source_input_kinds(tmp_path: Path) -> None:
    archive = tmp_path / "pkg-1.0.tar.gz"
    archive.write_bytes(b"")
    assert SourceInput.resolve(tmp_path).default_outdir == tmp_path.absolute() / "dist"
    resolved = SourceInput.resolve(archive)
    assert resolved.is_archive
    assert resolved.default_outdir == tmp_path.absolute()
    assert resolved.label == "pkg-1.0"


def test_source_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        SourceInput.resolve(tmp_path / "nope")


def test_source_that_is_neither_directory_nor_archive(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UsageError, match="neither a project directory nor an sdist archive"):
        SourceInput.resolve(tmp_path / "notes.txt")


# --- paths with a byte that is not UTF-8 (os.fsdecode gives a lone surrogate) -------
