"""Real builds of the good fixture projects, with real backends, pip and uv."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import kiln
from kiln.request import Installer
from tests.conftest import ProjectFactory
from tests.helpers import INSTALLERS, run_kiln, wheel_files, wheel_metadata

pytestmark = pytest.mark.integration

# fixture directory -> (distribution name, import package)
GOOD_FIXTURES = {
    "setuptools_pyproject": ("kiln_fixture_setuptools", "kiln_fixture_setuptools"),
    "setuptools_legacy": ("kiln_fixture_legacy", "kiln_fixture_legacy"),
    "hatchling_project": ("kiln_fixture_hatchling", "kiln_fixture_hatchling"),
    "flit_project": ("kiln_fixture_flit", "kiln_fixture_flit"),
    "pdm_project": ("kiln_fixture_pdm", "kiln_fixture_pdm"),
    "poetry_project": ("kiln_fixture_poetry", "kiln_fixture_poetry"),
    "intree_backend": ("kiln_fixture_intree", "kiln_fixture_intree"),
    "c_extension": ("kiln_fixture_c", "kiln_fixture_c"),
}


def load_report(path: Path) -> dict[str, object]:
    report: dict[str, object] = json.loads(path.read_text())
    return report


@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize("fixture", sorted(GOOD_FIXTURES))
def test_default_build_makes_sdist_then_wheel_from_it(
    project: ProjectFactory, tmp_path: Path, fixture: str, installer: str
) -> None:
    source = project(fixture)
    dist_name, package = GOOD_FIXTURES[fixture]
    report_path = tmp_path / "report.json"
    completed = run_kiln(source, "--installer", installer, "--report", report_path)
    assert completed.returncode == 0, completed.stderr

    outdir = source / "dist"
    built = sorted(p.name for p in outdir.iterdir())
    assert len(built) == 2, built
    sdist = outdir / f"{dist_name}-1.0.0.tar.gz"
    wheels = list(outdir.glob(f"{dist_name}-1.0.0-*.whl"))
    assert sdist.is_file() and len(wheels) == 1, built
    with tarfile.open(sdist) as archive:
        assert f"{dist_name}-1.0.0/PKG-INFO" in archive.getnames()
    files = wheel_files(wheels[0])
    assert f"{package}/__init__.py" in files
    assert "Version: 1.0.0" in wheel_metadata(wheels[0])
    if fixture == "c_extension":
        assert any(name.startswith(f"{package}/_speed.") and name.endswith(".so") for name in files)
        assert "-linux_" in wheels[0].name or "-macosx_" in wheels[0].name

    report = load_report(report_path)
    assert report["installer"] == installer
    steps = report["steps"]
    assert isinstance(steps, list)
    assert [s["distribution"] for s in steps] == ["sdist", "wheel"]
    # The wheel was built from the unpacked sdist, not from the project directory.
    assert steps[0]["source_dir"] == str(source)
    assert steps[1]["source_dir"] != str(source)
    assert Path(steps[1]["source_dir"]).name == f"{dist_name}-1.0.0"
    assert f"{sdist.name} and {wheels[0].name}" in completed.stdout


def test_wheel_from_sdist_sees_only_what_the_sdist_holds(project: ProjectFactory) -> None:
    source = project("hatchling_project")
    (source / "kiln_fixture_hatchling" / "not_in_sdist.py").write_text("X = 1\n")
    with (source / "pyproject.toml").open("a") as pyproject:
        pyproject.write(
            "\n[tool.hatch.build.targets.sdist]\n"
            'exclude = ["kiln_fixture_hatchling/not_in_sdist.py"]\n'
        )
    default = kiln.build(source, source / "default")
    direct = kiln.build(source, source / "direct", distributions=["wheel"])
    [default_wheel] = [a for a in default.artifacts if a.kind == "wheel"]
    [direct_wheel] = direct.artifacts
    assert "kiln_fixture_hatchling/not_in_sdist.py" not in wheel_files(default_wheel.path)
    assert "kiln_fixture_hatchling/not_in_sdist.py" in wheel_files(direct_wheel.path)


@pytest.mark.parametrize("flags", [["-s"], ["-w"], ["-s", "-w"]])
def test_explicit_distributions_build_from_the_project(
    project: ProjectFactory, tmp_path: Path, flags: list[str]
) -> None:
    source = project("flit_project")
    outdir = tmp_path / "out"
    completed = run_kiln(source, *flags, "-o", outdir, "--report", tmp_path / "r.json")
    assert completed.returncode == 0, completed.stderr
    kinds = sorted("sdist" if p.name.endswith(".tar.gz") else "wheel" for p in outdir.iterdir())
    assert kinds == sorted("sdist" if f == "-s" else "wheel" for f in flags)
    steps = load_report(tmp_path / "r.json")["steps"]
    assert isinstance(steps, list)
    assert all(step["source_dir"] == str(source) for step in steps)


@pytest.mark.parametrize("fixture", ["setuptools_pyproject", "hatchling_project", "flit_project"])
def test_editable_wheel(project: ProjectFactory, fixture: str) -> None:
    source = project(fixture)
    result = kiln.build(source, distributions=["editable"], installer="uv")
    [artifact] = result.artifacts
    assert artifact.kind == "editable"
    assert artifact.path.parent == source / "dist"
    files = wheel_files(artifact.path)
    package = GOOD_FIXTURES[fixture][1]
    # An editable wheel points at the source tree instead of carrying the package.
    assert f"{package}/__init__.py" not in files
    assert any(name.endswith(".pth") or "editable" in name for name in files), files


def test_wheel_from_an_sdist_archive_lands_next_to_it(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("setuptools_pyproject")
    sdist_result = kiln.build(source, tmp_path / "archives", distributions=["sdist"])
    [sdist] = sdist_result.artifacts
    completed = run_kiln(sdist.path)
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in sdist.path.parent.iterdir()) == [
        "kiln_fixture_setuptools-1.0.0-py3-none-any.whl",
        "kiln_fixture_setuptools-1.0.0.tar.gz",
    ]


def test_sdist_archive_refuses_to_build_an_sdist(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("setuptools_pyproject")
    [sdist] = kiln.build(source, tmp_path, distributions=["sdist"]).artifacts
    completed = run_kiln(sdist.path, "-s")
    assert completed.returncode == 2
    assert "is already an sdist" in completed.stderr


@pytest.mark.parametrize("installer", INSTALLERS)
def test_dynamic_requirements_are_installed(
    project: ProjectFactory, tmp_path: Path, installer: Installer
) -> None:
    source = project("intree_backend")
    result = kiln.build(source, tmp_path, distributions=["wheel"], installer=installer)
    [step] = result.steps
    # The backend's get_requires_for_build_wheel asked for wheel; it had to be installed.
    assert "wheel" in step.requirements
    assert result.log_path is not None
    log = result.log_path.read_text()
    assert "install" in log and " wheel" in log


def test_metadata_is_printed_as_json(project: ProjectFactory) -> None:
    source = project("hatchling_project")
    completed = run_kiln(source, "--metadata")
    assert completed.returncode == 0, completed.stderr
    metadata = json.loads(completed.stdout)
    assert metadata["name"] == "kiln-fixture-hatchling"
    assert metadata["version"] == "1.0.0"
    assert metadata["requires_python"] == ">=3.10"
    assert not (source / "dist").exists()


def test_metadata_without_a_prepare_hook_falls_back_to_a_wheel(project: ProjectFactory) -> None:
    source = project("hook_raises")
    backend = source / "_backend" / "kiln_hook_raises.py"
    # A backend with build_wheel but no prepare_metadata_for_build_wheel.
    backend.write_text(
        "from setuptools.build_meta import build_wheel, build_sdist\n", encoding="utf-8"
    )
    pyproject = (source / "pyproject.toml").read_text()
    (source / "pyproject.toml").write_text(
        pyproject.replace("requires = []", 'requires = ["setuptools"]')
    )
    metadata = kiln.get_metadata(source)
    assert metadata["name"] == "kiln-fixture-hook-raises"


def test_config_settings_reach_the_backend(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("setuptools_pyproject")
    # setuptools turns --build-option style settings into a build tag on the wheel.
    completed = run_kiln(source, "-w", "-o", tmp_path, "-C--build-option=--build-number=7")
    assert completed.returncode == 0, completed.stderr
    assert [p.name for p in tmp_path.glob("*.whl")] == [
        "kiln_fixture_setuptools-1.0.0-7-py3-none-any.whl"
    ]


def test_report_describes_each_artifact(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("flit_project")
    report_path = tmp_path / "nested" / "report.json"
    completed = run_kiln(source, "--report", report_path)
    assert completed.returncode == 0, completed.stderr
    report = load_report(report_path)
    artifacts = report["artifacts"]
    assert isinstance(artifacts, list) and len(artifacts) == 2
    for entry in artifacts:
        path = Path(entry["path"])
        assert entry["name"] == path.name
        assert entry["size"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [a["kind"] for a in artifacts] == ["sdist", "wheel"]
    assert report["isolated"] is True
    assert report["kiln_version"] == kiln.__version__
    # Where the time went: the environment and each hook (what --timings draws).
    timings = report["timings"]
    assert isinstance(timings, dict)
    assert {"environment", "build_sdist", "build_wheel"} <= set(timings)
    assert timings["environment"] > 0 and all(seconds >= 0 for seconds in timings.values())


def test_verbose_streams_backend_output(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("setuptools_pyproject")
    quiet = run_kiln(source, "-w", "-o", tmp_path / "a")
    loud = run_kiln(source, "-w", "-o", tmp_path / "b", "-v")
    assert quiet.returncode == loud.returncode == 0
    # setuptools announces what it does; that output is only shown with -v.
    assert "running bdist_wheel" not in quiet.stderr
    assert "running bdist_wheel" in loud.stderr


def test_quiet_shows_only_the_result(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("flit_project")
    completed = run_kiln(source, "-q", "-o", tmp_path)
    assert completed.returncode == 0
    assert completed.stderr == ""
    assert completed.stdout.startswith("Successfully built")
    silent = run_kiln(source, "-qq", "-o", tmp_path)
    assert silent.returncode == 0
    assert silent.stdout == silent.stderr == ""


def test_rebuild_replaces_artifacts_and_keeps_other_files(project: ProjectFactory) -> None:
    source = project("flit_project")
    outdir = source / "dist"
    outdir.mkdir()
    (outdir / "keep-me.txt").write_text("mine")
    kiln.build(source)
    kiln.build(source)
    assert (outdir / "keep-me.txt").read_text() == "mine"
    assert sorted(p.name for p in outdir.iterdir()) == [
        "keep-me.txt",
        "kiln_fixture_flit-1.0.0-py3-none-any.whl",
        "kiln_fixture_flit-1.0.0.tar.gz",
    ]


def test_nothing_is_left_in_the_cache_scratch(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("flit_project")
    cache = tmp_path / "cache"
    kiln.build(source, cache_dir=cache)
    assert (cache / "CACHEDIR.TAG").is_file()
    assert list((cache / "runs-v1").iterdir()) == []
    assert len(list((cache / "logs-v1").glob("*.log"))) == 1


def test_a_bare_string_names_one_distribution(project: ProjectFactory, tmp_path: Path) -> None:
    result = kiln.build(project("flit_project"), tmp_path, "wheel")
    assert [a.kind for a in result.artifacts] == ["wheel"]


def test_unwritable_report_is_an_error_not_a_crash(project: ProjectFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    completed = run_kiln(
        project("flit_project"), "-w", "-o", tmp_path / "out", "--report", blocker / "report.json"
    )
    assert completed.returncode == 2
    assert f"kiln: error: cannot write report {blocker / 'report.json'}" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(list((tmp_path / "out").glob("*.whl"))) == 1


def test_wheel_from_a_legacy_zip_sdist(project: ProjectFactory, tmp_path: Path) -> None:
    import zipfile

    [sdist] = kiln.build(project("setuptools_legacy"), tmp_path / "tar", ["sdist"]).artifacts
    archive = tmp_path / "zip" / sdist.name.replace(".tar.gz", ".zip")
    archive.parent.mkdir()
    with tarfile.open(sdist.path) as tar, zipfile.ZipFile(archive, "w") as repacked:
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                repacked.writestr(member.name, extracted.read())
    completed = run_kiln(archive)
    assert completed.returncode == 0, completed.stderr
    [wheel] = archive.parent.glob("*.whl")
    assert "kiln_fixture_legacy/__init__.py" in wheel_files(wheel)


# --- the output directory: staging, shared use, what kiln refuses ---------------------------


@pytest.mark.parametrize("fixture", ["hatchling_project", "flit_project"])
def test_parallel_builds_with_their_own_caches_share_an_outdir(
    project: ProjectFactory, tmp_path: Path, fixture: str
) -> None:
    """Building for several Pythons at once: one project, a cache each, one outdir."""
    source = project(fixture)
    outdir = tmp_path / "out"
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "kiln", str(source), "-o", str(outdir)],
            env={**os.environ, "KILN_CACHE_DIR": str(tmp_path / f"cache-{i}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for run in runs:
        _, stderr = run.communicate()
        assert run.returncode == 0, stderr
    dist, package = GOOD_FIXTURES[fixture]
    # Each run published whole artifacts, and no run left a staging directory behind.
    [sdist, wheel] = sorted(outdir.iterdir(), key=lambda p: p.suffix)
    assert sdist.name == f"{dist}-1.0.0.tar.gz" and wheel.name == f"{dist}-1.0.0-py3-none-any.whl"
    with tarfile.open(sdist) as archive:
        assert f"{dist}-1.0.0/PKG-INFO" in archive.getnames()
    with zipfile.ZipFile(wheel) as archive:
        assert archive.testzip() is None
    assert f"{package}/__init__.py" in wheel_files(wheel)


@pytest.mark.parametrize("where", ["the project's place", "the cache itself", "a link into it"])
def test_an_outdir_inside_the_cache_is_refused(
    project: ProjectFactory, tmp_path: Path, where: str
) -> None:
    source = project("flit_project")
    cache = tmp_path / "cache"
    place = cache / "projects-v1" / "flit_project"
    (place / "wheels").mkdir(parents=True)
    (place / "wheels" / "mine.txt").write_text("mine")
    (tmp_path / "link").symlink_to(place)
    outdir = {
        "the project's place": place / "wheels",
        "the cache itself": cache,
        "a link into it": tmp_path / "link" / "wheels",
    }[where]
    completed = run_kiln(source, "-o", outdir, "--cache-dir", cache)
    assert completed.returncode == 2, completed.stderr
    assert (
        f"kiln: error: output directory {outdir} is inside kiln's cache directory {cache}"
        in completed.stderr
    )
    assert "choose an output directory outside it" in completed.stderr
    assert (place / "wheels" / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in (place / "wheels").iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("leftover", ["file", "link to a directory", "dangling link"])
def test_a_leftover_staging_name_never_stops_a_build(
    project: ProjectFactory, tmp_path: Path, leftover: str
) -> None:
    source = project("flit_project")
    outdir = tmp_path / "out"
    outdir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine")
    # The name earlier kilns gave this project's staging directory, and others like it.
    for name in (".kiln-staging-flit_project", ".kiln-staging-abcd1234"):
        path = outdir / name
        if leftover == "file":
            path.write_text("not kiln's")
        else:
            path.symlink_to(elsewhere if leftover == "link to a directory" else tmp_path / "none")
    completed = run_kiln(source, "-o", outdir)
    assert completed.returncode == 0, completed.stderr
    assert (elsewhere / "precious.txt").read_text() == "mine"  # never followed
    assert sorted(p.name for p in outdir.iterdir()) == [
        ".kiln-staging-abcd1234",  # not a directory: not kiln's to remove
        ".kiln-staging-flit_project",
        "kiln_fixture_flit-1.0.0-py3-none-any.whl",
        "kiln_fixture_flit-1.0.0.tar.gz",
    ]


def test_a_dead_runs_staging_directory_is_removed(project: ProjectFactory, tmp_path: Path) -> None:
    source = project("flit_project")
    outdir = tmp_path / "out"
    (outdir / ".kiln-staging-k1lled00" / "half").mkdir(parents=True)
    (outdir / ".kiln-staging-k1lled00" / "half" / "x.whl").write_bytes(b"partial")
    completed = run_kiln(source, "-w", "-o", outdir)
    assert completed.returncode == 0, completed.stderr
    assert [p.name for p in outdir.iterdir()] == ["kiln_fixture_flit-1.0.0-py3-none-any.whl"]


@pytest.mark.parametrize("distribution", ["-w", "-s"])
@pytest.mark.parametrize("target", ["a file beside it", "a file outside", "nothing"])
def test_a_symlink_returned_as_the_artifact_is_refused(
    project: ProjectFactory, tmp_path: Path, distribution: str, target: str
) -> None:
    source = project("hook_returns_symlink")
    outdir = tmp_path / "out"
    outside = tmp_path / "outside.whl"
    outside.write_bytes(b"not an artifact")
    env = dict(os.environ)
    if target == "a file outside":
        env["KILN_TEST_LINK_TARGET"] = str(outside)
    elif target == "nothing":
        env["KILN_TEST_LINK_TARGET"] = str(tmp_path / "no-such-file")
    # Else a file the hook wrote beside the link, by a relative name: it dangles once moved.
    completed = run_kiln(source, distribution, "-o", outdir, env=env)
    assert completed.returncode == 1, completed.stderr
    assert "Successfully built" not in completed.stdout + completed.stderr
    hook = "build_wheel" if distribution == "-w" else "build_sdist"
    error = f"kiln: error: the build backend's {hook} hook returned 'kiln_fixture_hook_returns_"
    assert error in completed.stderr
    assert "', which is a symbolic link to " in completed.stderr
    assert list(outdir.iterdir()) == []  # nothing published, no staging left
    assert outside.read_bytes() == b"not an artifact"
