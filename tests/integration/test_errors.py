"""Every bad input: a clear one-line error, the documented exit code, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import kiln
from kiln.errors import HookFailedError
from tests.conftest import ProjectFactory
from tests.helpers import INSTALLERS, error_line, pid_alive, run_kiln, snapshot, wait_for_file

pytestmark = pytest.mark.integration


def test_typo_keys_warn_but_build(project: ProjectFactory, tmp_path: Path) -> None:
    completed = run_kiln(project("typo_keys"), "-w", "-o", tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "kiln: warning:" in completed.stderr
    assert "'build_backend' is unknown; did you mean 'build-backend'?" in completed.stderr
    assert "'requirements' is unknown; did you mean 'requires'?" in completed.stderr


def test_backend_that_cannot_be_imported(project: ProjectFactory) -> None:
    completed = run_kiln(project("backend_missing"))
    assert completed.returncode == 2, completed.stderr
    line = error_line(completed.stderr)
    assert "'no_such_backend_module.api' could not be imported" in line
    assert "No module named 'no_such_backend_module'" in line


def test_hook_that_raises(project: ProjectFactory) -> None:
    source = project("hook_raises")
    outdir = source / "dist"
    outdir.mkdir()
    (outdir / "earlier-1.0.tar.gz").write_bytes(b"an earlier artifact")
    before = snapshot(outdir)

    completed = run_kiln(source)
    assert completed.returncode == 1
    line = error_line(completed.stderr)
    assert "build_sdist hook failed (exit status 1)" in line
    # The backend's own output and exception reach the user, and the full log is named.
    assert "KILN-FIXTURE-HOOK-RAISES: backend output before the failure" in completed.stderr
    assert "RuntimeError: kiln-fixture-hook-raises: deliberate failure" in completed.stderr
    log_line = next(ln for ln in completed.stderr.splitlines() if "full log:" in ln)
    log = Path(log_line.split("full log:", 1)[1].strip())
    assert "deliberate failure in build_sdist" in log.read_text()
    assert snapshot(outdir) == before


def test_hook_that_raises_through_the_api(project: ProjectFactory, tmp_path: Path) -> None:
    with pytest.raises(HookFailedError) as caught:
        kiln.build(project("hook_raises"), tmp_path, ["wheel"])
    error = caught.value
    assert error.exit_code == 1
    assert error.hook == "build_wheel"
    assert any("deliberate failure in build_wheel" in line for line in error.output_tail)
    assert error.log_path is not None and error.log_path.is_file()


def test_hook_returning_a_missing_file(project: ProjectFactory) -> None:
    source = project("hook_bad_return")
    outdir = source / "dist"
    outdir.mkdir()
    # A file with the name the hook claims: it must survive the failed build untouched.
    (outdir / "kiln_fixture_hook_bad_return-1.0.0-py3-none-any.whl").write_bytes(b"mine")
    before = snapshot(outdir)
    completed = run_kiln(source, "-w")
    assert completed.returncode == 1
    assert (
        "build_wheel hook returned 'kiln_fixture_hook_bad_return-1.0.0-py3-none-any.whl', "
        "but no such file was written" in error_line(completed.stderr)
    )
    assert snapshot(outdir) == before


def test_hook_returning_the_wrong_kind_of_file(project: ProjectFactory, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    completed = run_kiln(project("hook_bad_return"), "-s", "-o", outdir)
    assert completed.returncode == 1
    assert (
        "build_sdist hook returned 'kiln_fixture_hook_bad_return-1.0.0.whl', which is not "
        "a sdist file name" in error_line(completed.stderr)
    )
    assert list(outdir.iterdir()) == []


def test_editable_without_build_editable(project: ProjectFactory) -> None:
    source = project("no_editable")
    completed = run_kiln(source, "--editable")
    assert completed.returncode == 2, completed.stderr
    assert (
        "does not support editable builds (PEP 660): it has no build_editable hook"
        in error_line(completed.stderr)
    )
    assert list((source / "dist").iterdir()) == []


@pytest.mark.parametrize("installer", INSTALLERS)
def test_unresolvable_requirement_shows_the_installer_message(
    project: ProjectFactory, installer: str
) -> None:
    completed = run_kiln(project("unresolvable"), "--installer", installer)
    assert completed.returncode == 3
    assert (
        "kiln: error: " + installer + " could not install the build requirements"
        in completed.stderr
    )
    if installer == "pip":
        assert (
            "No matching distribution found for kiln-no-such-package-xyz==1.0" in completed.stderr
        )
    else:
        assert "kiln-no-such-package-xyz" in completed.stderr
        assert "not found" in completed.stderr or "No solution found" in completed.stderr


def test_interrupt_stops_the_backend_and_leaves_nothing(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("probe_backend")
    pids_file = tmp_path / "pids"
    outdir = tmp_path / "out"
    env = dict(os.environ, KILN_TEST_HANG_PIDS=str(pids_file))
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", str(source), "-w", "-o", str(outdir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    backend_pid, grandchild_pid = map(int, wait_for_file(pids_file, process).split())

    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    for pid in (backend_pid, grandchild_pid):
        assert not pid_alive(pid), f"process {pid} outlived kiln"
    assert list(outdir.iterdir()) == []  # no staging directory, no partial wheel
    # The interrupted build is kept for `kiln debug`, its scratch files cleaned.
    [run] = (Path(os.environ["KILN_CACHE_DIR"]) / "runs-v1").iterdir()
    environment = Path(json.loads((run / "failed.json").read_text())["environment"])
    assert (environment / "pyvenv.cfg").is_file()
    assert list((run / "tmp").iterdir()) == []
    assert f"the build environment is kept at {environment}" in stderr
    assert "kiln debug" in stderr
