"""Signals without a build: process groups, and an interrupt while kiln starts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiln.process_group import stop_process_group
from tests.helpers import HANG_GUARD_SECONDS, pid_alive, wait_for_file


def test_a_child_group_ends_when_the_process_running_it_is_sigkilled(tmp_path: Path) -> None:
    # What kiln's installers and hooks run in: a session and process group of their own.
    pids_file = tmp_path / "pids"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kiln.process import BuildLog, run_logged\n"
        "run_logged(['sh', '-c', 'sleep 300 & echo \"$$ $!\" > \"$0.tmp\"; "
        'mv "$0.tmp" "$0"; wait\', sys.argv[1]],\n'
        "           log=BuildLog(Path(sys.argv[2])), env={'PATH': '/usr/bin:/bin'})\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(pids_file), str(tmp_path / "log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    shell, sleeper = map(int, wait_for_file(pids_file, process).split())
    process.kill()
    process.communicate(timeout=HANG_GUARD_SECONDS)
    for pid in (shell, sleeper):
        assert not pid_alive(pid, seconds=10), f"process {pid} outlived its parent"


def test_stopping_a_child_that_has_exited_still_ends_what_it_left(tmp_path: Path) -> None:
    # Ctrl-C while kiln drains the output of a hook that has exited but left a process.
    process = subprocess.Popen(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    background = int(process.stdout.readline())
    process.wait()
    process.stdout.close()
    stop_process_group(process)
    assert not pid_alive(background)


@pytest.mark.parametrize(
    ("signum", "ready", "statuses"),
    [
        # kiln's code runs once `import kiln` is done and the next import too.
        (signal.SIGINT, ("| kiln", None), {130}),
        # kiln's handler is set once kiln.errors is imported (SIGTERM is silent before).
        (signal.SIGTERM, ("| kiln.errors",), {143, -signal.SIGTERM}),
    ],
    ids=["INT", "TERM"],
)
def test_an_interrupt_while_kiln_starts_is_one_line_never_a_traceback(
    tmp_path: Path,
    signum: signal.Signals,
    ready: tuple[str | None, ...],
    statuses: set[int],
) -> None:
    """From the moment kiln's code runs: what comes before (the interpreter's own
    startup, `site`, runpy) prints its own traceback, which kiln cannot prevent."""
    empty = tmp_path / "empty"  # not a project: kiln imports most of itself, then stops
    empty.mkdir()
    reported = 0
    for delay in (0, 0, 0.001, 0.002, 0.004, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05):
        process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "kiln", str(empty)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        lines = iter(process.stderr.readline, "")
        for wanted in ready:  # the import line that says so, or (None) the next one
            next(line for line in lines if wanted is None or line.rstrip().endswith(wanted))
        time.sleep(delay)
        process.send_signal(signum)
        stderr = process.stderr.read()
        process.communicate(timeout=HANG_GUARD_SECONDS)
        assert "Traceback" not in stderr, stderr
        if process.returncode == 2:
            continue  # kiln was done (not a project) before the signal came
        assert process.returncode in statuses, stderr
        said = [line for line in stderr.splitlines() if line.strip() and "import time:" not in line]
        assert len(said) <= 1, said
        if process.returncode > 0:
            assert said == [f"kiln: interrupted{'' if signum == signal.SIGINT else ' by SIGTERM'}"]
            reported += 1
    assert reported >= 3, "too few signals came while kiln ran to show anything"
