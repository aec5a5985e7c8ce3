"""What an isolated build's hooks see, and what reaches the installer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import kiln
from kiln.errors import InstallerError
from kiln.request import Installer
from tests.conftest import ProjectFactory
from tests.helpers import INSTALLERS, WHEELHOUSE, run_kiln, wheel_files

pytestmark = pytest.mark.integration


def probe(path: Path, hook: str) -> dict[str, object]:
    report: dict[str, object] = json.loads(Path(f"{path}-{hook}.json").read_text())
    return report


@pytest.mark.parametrize("installer", INSTALLERS)
def test_hooks_run_in_the_build_environment_only(
    project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installer: str
) -> None:
    source = project("probe_backend")
    outer = tmp_path / "outer-site"
    outer.mkdir()
    (outer / "kiln_outer_marker.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(outer))
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-such-home"))
    monkeypatch.setenv("KILN_TEST_MARKER", "passed through")
    monkeypatch.setenv("KILN_TEST_PROBE", str(tmp_path / "probe"))
    monkeypatch.delenv("PYTHONHOME")  # kiln itself must start; the hook check is PYTHONPATH

    completed = run_kiln(source, "-w", "-o", tmp_path / "out", "--installer", installer)
    assert completed.returncode == 0, completed.stderr

    seen = probe(tmp_path / "probe", "build_wheel")
    environ = seen["environ"]
    assert isinstance(environ, dict)
    prefix = str(seen["prefix"])
    assert prefix != str(seen["base_prefix"]), "hooks must run in a virtual environment"
    assert str(seen["executable"]).startswith(prefix)
    assert environ["VIRTUAL_ENV"] == prefix
    assert str(environ["PATH"]).split(os.pathsep)[0] == str(Path(prefix) / "bin")
    assert environ["PYTHONPATH"] is None
    assert environ["PYTHONHOME"] is None
    assert seen["outer_module_importable"] is False
    assert str(outer) not in seen["sys_path"]  # type: ignore[operator]
    assert seen["enable_user_site"] is False
    assert seen["pip_importable"] is False, "the build environment must not contain pip"
    # Unrelated variables pass through; temporary files go to kiln's cache.
    assert environ["KILN_TEST_MARKER"] == "passed through"
    cache = os.environ["KILN_CACHE_DIR"]
    assert str(seen["tempdir"]).startswith(cache)
    assert environ["TMPDIR"] == environ["TEMP"] == environ["TMP"] == seen["tempdir"]
    assert seen["cwd"] == str(source)


def test_config_settings_arrive_intact(
    project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project("probe_backend")
    monkeypatch.setenv("KILN_TEST_PROBE", str(tmp_path / "probe"))
    completed = run_kiln(
        source,
        "-w",
        "-o",
        tmp_path / "out",
        "--config-json",
        '{"from-json": {"nested": [1, 2]}, "k": "a"}',
        "-C",
        "k=b",
        "-Cflag",
        "-C",
        "x=1=2",
    )
    assert completed.returncode == 0, completed.stderr
    assert probe(tmp_path / "probe", "build_wheel")["config_settings"] == {
        "from-json": {"nested": [1, 2]},
        "k": ["a", "b"],
        "flag": "",
        "x": "1=2",
    }


def make_private_index(root: Path) -> Path:
    """A PEP 503-style local index holding one package that no public index has."""
    project_dir = root / "private-src"
    (project_dir / "kiln_private_dep").mkdir(parents=True)
    (project_dir / "kiln_private_dep" / "__init__.py").write_text('"""Private."""\n')
    (project_dir / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.9"]\nbuild-backend = "flit_core.buildapi"\n'
        '[project]\nname = "kiln-private-dep"\nversion = "3.1.4"\ndescription = "private"\n'
    )
    index = root / "simple"
    kiln.build(project_dir, index / "kiln-private-dep", distributions=["wheel"])
    return index


@pytest.mark.parametrize("installer", INSTALLERS)
def test_user_index_configuration_reaches_the_installer(
    project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installer: str
) -> None:
    index = make_private_index(tmp_path)
    source = project("setuptools_pyproject")
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'requires = ["setuptools>=77"]',
            'requires = ["setuptools>=77", "kiln-private-dep==3.1.4"]',
        )
    )
    # Without the private location, the requirement cannot be found...
    failed = run_kiln(source, "-w", "--installer", installer)
    assert failed.returncode == 3, failed.stderr
    assert "kiln-private-dep" in failed.stderr
    # ...and the user's own settings, untouched by kiln, make it work.
    monkeypatch.setenv("PIP_FIND_LINKS", f"{WHEELHOUSE} {index / 'kiln-private-dep'}")
    monkeypatch.setenv("UV_FIND_LINKS", f"{WHEELHOUSE},{index / 'kiln-private-dep'}")
    completed = run_kiln(source, "-w", "--installer", installer, "-v")
    assert completed.returncode == 0, completed.stderr
    assert "kiln-private-dep" in completed.stderr.lower().replace("_", "-")


@pytest.mark.parametrize("installer", INSTALLERS)
def test_constraints_reach_the_installer(
    project: ProjectFactory, tmp_path: Path, installer: Installer
) -> None:
    source = project("intree_backend")  # its backend asks for "wheel", unpinned
    impossible = tmp_path / "impossible.txt"
    impossible.write_text("wheel==0.0.1\n")
    with pytest.raises(InstallerError) as caught:
        kiln.build(source, tmp_path / "a", ["wheel"], installer=installer, constraints=[impossible])
    assert caught.value.exit_code == 3
    assert "wheel" in str(caught.value)

    [wheel_file] = WHEELHOUSE.glob("wheel-*.whl")
    version = wheel_file.name.split("-")[1]
    pinned = tmp_path / "pinned.txt"
    pinned.write_text(f"wheel=={version}\n")
    result = kiln.build(
        source, tmp_path / "b", ["wheel"], installer=installer, constraints=[pinned]
    )
    assert [a.kind for a in result.artifacts] == ["wheel"]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_constraint_hashes_are_kept(
    project: ProjectFactory, tmp_path: Path, installer: str
) -> None:
    import hashlib

    source = project("flit_project")
    [flit_core] = WHEELHOUSE.glob("flit_core-*.whl")
    version = flit_core.name.split("-")[1]
    good = hashlib.sha256(flit_core.read_bytes()).hexdigest()
    constraints = tmp_path / "constraints.txt"

    constraints.write_text(f"flit-core=={version} --hash=sha256:{'0' * 64}\n")
    bad = run_kiln(
        source, "-w", "-o", tmp_path / "bad", "--installer", installer, "-c", constraints
    )
    assert bad.returncode == 3, bad.stderr
    assert "hash" in bad.stderr.lower()

    constraints.write_text(f"flit-core=={version} --hash=sha256:{good}\n")
    ok = run_kiln(
        source,
        "-w",
        "-o",
        tmp_path / "ok",
        "--installer",
        installer,
        "--dependency-constraints-txt",
        constraints,
    )
    assert ok.returncode == 0, ok.stderr
    [wheel] = (tmp_path / "ok").glob("*.whl")
    assert "kiln_fixture_flit/__init__.py" in wheel_files(wheel)
