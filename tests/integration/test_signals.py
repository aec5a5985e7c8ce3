"""Signals: SIGTERM and SIGHUP stop kiln as Ctrl-C does; nothing kiln started outlives
it, even when kiln is SIGKILLed; a hook's background process neither holds the build
nor survives it; an interrupt while kiln starts up is one line, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import HANG_GUARD_SECONDS, pid_alive, run_kiln, wait_for_file


def write_atomically(path: str, text: str) -> str:
    """Source code for a fixture: write ``text`` to ``path`` atomically."""
    return (
        f"with open({path} + '.tmp', 'w') as stream:\n"
        f"    stream.write({text})\n"
        f"os.replace({path} + '.tmp', {path})\n"
    )


# --------------------------------------------------------------------------- SIGTERM, SIGHUP


@pytest.mark.integration
@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"]
)
def test_a_signal_during_a_plain_hook_stops_it_as_ctrl_c_does(
    project: ProjectFactory, tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    # probe_backend is an in-tree backend: its hooks always run the plain way.
    source = project("probe_backend")
    pids_file = tmp_path / "pids"
    outdir = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", str(source), "-w", "-o", str(outdir)],
        env=dict(os.environ, KILN_TEST_HANG_PIDS=str(pids_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    backend, grandchild = map(int, wait_for_file(pids_file, process).split())

    process.send_signal(signum)
    _, stderr = process.communicate(timeout=HANG_GUARD_SECONDS)
    assert process.returncode == status, stderr
    assert f"kiln: interrupted by {signum.name}" in stderr
    assert "Traceback" not in stderr
    for pid in (backend, grandchild):
        assert not pid_alive(pid), f"process {pid} outlived kiln"
    # The hook is gone, so nothing can reach the output directory any more.
    assert list(outdir.iterdir()) == []
    # Kept for `kiln debug`, as after Ctrl-C.
    [run] = (Path(os.environ["KILN_CACHE_DIR"]) / "runs-v1").iterdir()
    assert json.loads((run / "failed.json").read_text())["reason"] == "interrupted"
    assert "kiln debug" in stderr


# A build requirement whose own build (by the installer) writes the pids of its process
# and of every ancestor to $KILN_TEST_SLOW_PIDS, then sleeps: an install under way.
SLOW_SETUP = (
    "import os, time\n"
    "from setuptools import setup\n"
    "pids_file = os.environ.get('KILN_TEST_SLOW_PIDS')\n"
    "if pids_file:\n"
    "    chain, pid = [], os.getpid()\n"
    "    while pid > 1:\n"
    "        chain.append(pid)\n"
    "        with open(f'/proc/{pid}/stat') as stat:\n"
    "            pid = int(stat.read().rsplit(')', 1)[1].split()[1])\n"
    + textwrap.indent(write_atomically("pids_file", "' '.join(map(str, chain))"), "    ")
    + "    time.sleep(300)\n"
    "setup(name='kiln-test-slow', version='1.0', py_modules=[])\n"
)


def slow_requirement_project(root: Path) -> Path:
    slow = root / "slow"
    slow.mkdir(parents=True)
    (slow / "setup.py").write_text(SLOW_SETUP)
    (slow / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    source = root / "needs_slow"
    (source / "needs_slow").mkdir(parents=True)
    (source / "needs_slow" / "__init__.py").write_text("")
    (source / "pyproject.toml").write_text(
        "[build-system]\n"
        f'requires = ["setuptools>=61", "kiln-test-slow @ {slow.as_uri()}"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "needs-slow"\nversion = "1.0"\n'
    )
    return source


@pytest.mark.integration
@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_sigkill_during_an_install_leaves_no_installer_and_no_usable_environment(
    tmp_path: Path, installer: str
) -> None:
    source = slow_requirement_project(tmp_path / "projects")
    pids_file = tmp_path / "pids"
    command = [sys.executable, "-m", "kiln", str(source), "-w", "--installer", installer]
    process = subprocess.Popen(
        [*command, "-o", str(tmp_path / "out1")],
        env=dict(os.environ, KILN_TEST_SLOW_PIDS=str(pids_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    chain = [int(pid) for pid in wait_for_file(pids_file, process).split()]
    assert process.pid in chain, chain
    # The installer's processes: from the build of the requirement up to kiln's child
    # (for pip --python: a second pip, started by the first).
    installer_tree = chain[: chain.index(process.pid)]
    assert len(installer_tree) >= 2, chain

    process.kill()  # SIGKILL: kiln cleans nothing up
    process.communicate(timeout=HANG_GUARD_SECONDS)
    for pid in installer_tree:
        assert not pid_alive(pid, seconds=10), f"process {pid} outlived kiln"

    # The environment kiln was making is not taken for a finished one.
    again = run_kiln(*command[3:], "-o", tmp_path / "out2")
    assert again.returncode == 0, again.stderr
    assert "half made (no record)" in again.stderr
    assert list((tmp_path / "out2").glob("needs_slow-1.0-*.whl"))


# --------------------------------------------------------------------------- background processes


# setup.py of a setuptools project: in build_wheel (setuptools runs it with bdist_wheel),
# start a background process that keeps the hook's stdout, write "<hook pid> <its pid>",
# and go on (or, with KILN_TEST_HANG set, hang).
BACKGROUND_SETUP = (
    "import os, subprocess, sys, time\n"
    "from setuptools import setup\n"
    "pid_file = os.environ.get('KILN_TEST_BACKGROUND_PID')\n"
    "if pid_file and 'bdist_wheel' in sys.argv:\n"
    "    background = subprocess.Popen(['sleep', '300'])\n"
    + textwrap.indent(write_atomically("pid_file", "f'{os.getpid()} {background.pid}'"), "    ")
    + "    print('KILN-TEST: left a background process', flush=True)\n"
    "    if os.environ.get('KILN_TEST_HANG'):\n"
    "        time.sleep(300)\n"
    "setup(name='kiln-test-background', version='1.0', packages=[])\n"
)


def background_project(root: Path) -> Path:
    source = root / "background"
    source.mkdir()
    (source / "setup.py").write_text(BACKGROUND_SETUP)
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    return source


@pytest.mark.integration
@pytest.mark.parametrize("runner", ["plain", "warm"])
def test_a_background_process_a_hook_leaves_neither_holds_the_build_nor_survives_it(
    tmp_path: Path, runner: str
) -> None:
    source = background_project(tmp_path)
    pid_file = tmp_path / "background.pid"
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", str(source), "-w", "-v", "--hook-runner", runner],
        env=dict(os.environ, KILN_TEST_BACKGROUND_PID=str(pid_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Without the fix the plain runner read the hook's output until the background
    # process closed it: 300 s. The guard turns that into a failure.
    _, stderr = process.communicate(timeout=HANG_GUARD_SECONDS)
    assert process.returncode == 0, stderr
    assert "KILN-TEST: left a background process" in stderr
    assert list((source / "dist").glob("kiln_test_background-1.0-*.whl"))
    background = int(pid_file.read_text().split()[1])
    assert not pid_alive(background), "the hook's background process outlived kiln"


@pytest.mark.integration
def test_sigterm_during_a_warm_hook_stops_the_worker_the_hook_and_what_it_started(
    tmp_path: Path,
) -> None:
    source = background_project(tmp_path)
    pid_file = tmp_path / "pids"
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", str(source), "-w", "--hook-runner", "warm"],
        env=dict(os.environ, KILN_TEST_BACKGROUND_PID=str(pid_file), KILN_TEST_HANG="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    hook, background = map(int, wait_for_file(pid_file, process).split())
    worker = int(Path(f"/proc/{hook}/stat").read_text().rsplit(")", 1)[1].split()[1])
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=HANG_GUARD_SECONDS)
    assert process.returncode == 143, stderr
    assert "kiln: interrupted by SIGTERM" in stderr
    assert "Traceback" not in stderr
    for pid in (worker, hook, background):
        assert not pid_alive(pid), f"process {pid} outlived kiln"


# --------------------------------------------------------------------------- early interrupts
