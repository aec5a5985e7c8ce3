"""kiln.wheelhouse.resolution with real uv, offline: against the test wheelhouse, and
against a find-links directory of tiny hand-made distributions."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln.errors import EnvironmentSetupError
from kiln.wheelhouse.model import Pin
from kiln.wheelhouse.resolution import NoSdistError, resolve
from kiln.wheelhouse.sources import build_requirements, fetch


@dataclass(frozen=True)
class Python:
    path: Path
    key: str
    version: tuple[int, int, int]


PYTHON = Python(Path(sys.executable).resolve(), "running-python", sys.version_info[:3])


def metadata(name: str, version: str, requires: tuple[str, ...]) -> str:
    lines = ["Metadata-Version: 2.2", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    return "\n".join(lines) + "\n"


def make_sdist(links: Path, name: str, version: str, *requires: str) -> None:
    """An sdist whose metadata uv reads without building it (static PKG-INFO 2.2)."""
    top = f"{name}-{version}"
    dependencies = ", ".join(f'"{r}"' for r in requires)
    files = {
        f"{top}/PKG-INFO": metadata(name, version, requires),
        f"{top}/pyproject.toml": (
            '[build-system]\nrequires = ["flit_core>=3.2"]\nbuild-backend = "flit_core.buildapi"\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\ndescription = "x"\n'
            f"dependencies = [{dependencies}]\n"
        ),
        f"{top}/{name}.py": "",
    }
    with tarfile.open(links / f"{top}.tar.gz", "w:gz") as tar:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_wheel(links: Path, name: str, version: str, *requires: str) -> None:
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "",
        f"{info}/METADATA": metadata(name, version, requires),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for member, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{member},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(links / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)


@pytest.fixture
def links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A find-links directory of the test's own, the only place uv looks."""
    directory = tmp_path / "links"
    directory.mkdir()
    monkeypatch.setenv("UV_FIND_LINKS", str(directory))
    return directory


def run_resolve(tmp_path: Path, requirements: list[str], **options: object) -> dict[str, str]:
    arguments: dict[str, object] = {
        "sdists": True,
        "environ": dict(os.environ),
        "scratch": tmp_path / "scratch",
    }
    arguments.update(options)
    pins = resolve(requirements, PYTHON, **arguments)  # type: ignore[arg-type]
    return {pin.name: pin.version for pin in pins}


def test_the_test_wheelhouse_resolves_to_sdists(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_FIND_LINKS", f"{wheelhouse},{wheelhouse / 'sdists'}")
    pins = resolve(
        ["six", "tomli", "tomlkit"],
        PYTHON,
        sdists=True,
        environ=dict(os.environ),
        scratch=tmp_path / "scratch",
    )
    assert {pin.id for pin in pins} == {"six==1.17.0", "tomli==2.5.0", "tomlkit==0.15.2"}
    for pin in pins:
        assert pin.sdist is not None
        assert pin.sdist.sha256 is not None
    tomli = next(pin for pin in pins if pin.name == "tomli")
    assert tomli.sdist is not None
    # The pinned sdist is what the build gets: fetched, checked, its build requirements read.
    kept = fetch(tomli.sdist, tmp_path / "cache")
    assert build_requirements(kept) == ["flit_core>=3.12,<5"]


def test_a_package_whose_newest_version_has_only_a_wheel_gets_its_older_sdist(
    tmp_path: Path, links: Path
) -> None:
    make_sdist(links, "leaf", "1.0")
    make_wheel(links, "leaf", "2.0")
    make_sdist(links, "top", "1.0", "leaf")
    make_wheel(links, "top", "1.0", "leaf")
    # A plain resolution takes the newest, a wheel.
    assert run_resolve(tmp_path, ["top"], sdists=False) == {"top": "1.0", "leaf": "2.0"}
    # leaf is found only through top: the second round asks for its sdist.
    assert run_resolve(tmp_path, ["top"]) == {"top": "1.0", "leaf": "1.0"}


def test_a_package_with_no_sdist_at_all_is_named_unless_taken_as_a_wheel(
    tmp_path: Path, links: Path
) -> None:
    make_wheel(links, "wheelonly", "1.0")
    make_sdist(links, "top", "1.0", "wheelonly")
    with pytest.raises(NoSdistError) as caught:
        run_resolve(tmp_path, ["top"])
    assert caught.value.names == ["wheelonly"]
    assert "--binary wheelonly" in str(caught.value)
    assert run_resolve(tmp_path, ["top"], binary=frozenset({"WheelOnly"})) == {
        "top": "1.0",
        "wheelonly": "1.0",
    }


def test_a_second_resolution_with_nothing_changed_does_not_run_uv(
    tmp_path: Path, links: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_sdist(links, "leaf", "1.0")
    first = run_resolve(tmp_path, ["leaf"], cache_dir=tmp_path / "cache")
    assert first == {"leaf": "1.0"}
    missing_uv = str(tmp_path / "no-uv")
    again = run_resolve(tmp_path, ["leaf"], cache_dir=tmp_path / "cache", uv=missing_uv)
    assert again == first
    # Another index configuration is another resolution.
    monkeypatch.setenv("UV_PRERELEASE", "allow")
    with pytest.raises(EnvironmentSetupError, match="no-uv"):
        run_resolve(tmp_path, ["leaf"], cache_dir=tmp_path / "cache", uv=missing_uv)


def test_projects_are_pinned_to_their_directories_with_their_dependencies(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiln.wheelhouse.inputs import read_inputs

    monkeypatch.setenv("UV_FIND_LINKS", f"{wheelhouse},{wheelhouse / 'sdists'}")
    static = tmp_path / "static"
    static.mkdir()
    (static / "static.py").write_text("")
    (static / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.2"]\nbuild-backend = "flit_core.buildapi"\n'
        '[project]\nname = "static"\nversion = "1.5"\ndescription = "x"\n'
        'dependencies = ["six", "dynamic"]\n'
    )
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    (dynamic / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "dynamic"\nversion = "2.0"\ndynamic = ["dependencies"]\n'
    )
    # Dependencies only the backend knows: uv asks it.
    (dynamic / "setup.py").write_text(
        "from setuptools import setup\nsetup(install_requires=['tomli'])\n"
    )
    inputs = read_inputs([str(static), str(dynamic)])
    pins = resolve(
        inputs.requirements,
        PYTHON,
        sdists=True,
        environ=dict(os.environ),
        scratch=tmp_path / "scratch",
    )
    by_name = {pin.name: pin for pin in pins}
    assert sorted(by_name) == ["dynamic", "six", "static", "tomli"]
    assert by_name["static"].project_dir == static
    assert by_name["static"].version == "1.5"
    assert by_name["dynamic"].project_dir == dynamic
    assert by_name["tomli"].sdist is not None


def test_a_local_archive_keeps_its_absolute_place_in_a_kept_resolution(
    tmp_path: Path, links: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_sdist(tmp_path, "local", "3.0")
    monkeypatch.chdir(tmp_path)

    def pins(uv: str | None = None) -> list[Pin]:
        return resolve(
            ["./local-3.0.tar.gz"],
            PYTHON,
            sdists=True,
            environ=dict(os.environ),
            scratch=tmp_path / "scratch",
            cache_dir=tmp_path / "cache",
            uv=uv,
        )

    [pin] = pins()
    assert pin.sdist is not None
    assert pin.sdist.url == (tmp_path / "local-3.0.tar.gz").as_uri()
    # Kept with the absolute place, not uv's path relative to its scratch lock.
    assert pins(uv=str(tmp_path / "no-uv")) == [pin]
