"""Errors found before any build: bad pyproject.toml, unsafe sdists, the error classes."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

import kiln
from kiln.errors import BackendError
from tests.conftest import ProjectFactory
from tests.helpers import error_line, run_kiln, snapshot


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    return info, data


def make_sdist(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def symlink_member(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, b""


PKG_INFO = file_member("evil-1.0/PKG-INFO", b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")


SETUP = file_member("evil-1.0/setup.py", b"from setuptools import setup\nsetup()\n")


def test_toml_syntax_error(project: ProjectFactory) -> None:
    source = project("bad_toml")
    completed = run_kiln(source)
    assert completed.returncode == 2
    line = error_line(completed.stderr)
    assert str(source / "pyproject.toml") in line
    assert "line " in line and "column " in line
    assert "Traceback" not in completed.stderr
    assert not (source / "dist").exists()
    # The log named on failure tells the same story.
    log = completed.stderr.split("full log:", 1)[1].strip()
    assert "kiln: error:" in Path(log).read_text()


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("requires_not_list", "build-system.requires must be a list of strings"),
        ("requires_invalid", "build-system.requires holds an invalid requirement"),
        (
            "backend_path_outside/project",
            "backend-path entry '../elsewhere' is outside the project",
        ),
    ],
)
def test_bad_build_system_table(project: ProjectFactory, fixture: str, message: str) -> None:
    source = project(fixture.split("/", maxsplit=1)[0]) / "/".join(fixture.split("/")[1:])
    completed = run_kiln(source)
    assert completed.returncode == 2, completed.stderr
    assert message in error_line(completed.stderr)
    assert str(source / "pyproject.toml") in completed.stderr


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (file_member("evil-1.0/../../escaped.txt"), "outside"),
        (file_member("/tmp/kiln-absolute-escape.txt"), "absolute"),
        (symlink_member("evil-1.0/link", "../../../etc"), "outside"),
    ],
    ids=["traversal", "absolute", "symlink-out"],
)
def test_unsafe_sdist_is_refused(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], message: str
) -> None:
    inputs = tmp_path / "inputs" / "deeper" / "still"
    inputs.mkdir(parents=True)
    archive = make_sdist(inputs / "evil-1.0.tar.gz", [PKG_INFO, SETUP, member])
    before = snapshot(tmp_path / "inputs")
    completed = run_kiln(archive)
    assert completed.returncode == 2
    line = error_line(completed.stderr)
    assert "evil-1.0.tar.gz" in line and message in line
    assert snapshot(tmp_path / "inputs") == before
    assert not Path("/tmp/kiln-absolute-escape.txt").exists()
    assert list((Path(os.environ["KILN_CACHE_DIR"]) / "runs-v1").iterdir()) == []


def test_sdist_without_pkg_info_is_refused(tmp_path: Path) -> None:
    archive = make_sdist(tmp_path / "evil-1.0.tar.gz", [SETUP])
    completed = run_kiln(archive)
    assert completed.returncode == 2
    assert "has no PKG-INFO" in error_line(completed.stderr)


def test_backend_error_is_a_kiln_error() -> None:
    assert issubclass(BackendError, kiln.errors.KilnError)
