"""The live progress display, as a person at a terminal sees it: kiln runs in a real
pseudo-terminal (a tmux pane) and the tests read the pane's screen.

The probe backend (KILN_TEST_PROGRESS) prints two ninja-like lines and waits for a
file, so the screen can be read while the build is under way.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import HANG_GUARD_SECONDS, run_kiln
from tests.integration.test_wheelhouse import tree_index, wheelhouse_args

__all__ = ["tree_index"]  # the session fixture, shared with the wheelhouse tests

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)"
)

WIDTH, HEIGHT = 64, 24
EXITED = re.compile(r"^EXIT=(\d+)$", re.MULTILINE)


class Pane:
    """A tmux pane of its own server (a socket in the test's directory) running one command."""

    def __init__(self, socket: Path, command: list[str], environ: dict[str, str]) -> None:
        self.socket = socket
        # The exit status shows after the command, and the pane stays, for the final
        # screen. The shell traps SIGINT (a handler, which kiln does not inherit, unlike
        # an ignored signal), so that Ctrl-C in the pane ends kiln alone.
        line = f"trap : INT; {shlex.join(command)}; echo EXIT=$?; sleep {HANG_GUARD_SECONDS}"
        self.tmux(
            "new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "sh", "-c", line, env=environ
        )

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=60,
        )
        return done.stdout

    def screen(self, *, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []))

    def wait_for(self, seen: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while True:
            screen = self.screen()
            if seen(screen):
                return screen
            assert time.monotonic() < deadline, f"never saw {what}; the screen:\n{screen}"
            time.sleep(0.1)

    def exit_status(self) -> tuple[int, str]:
        screen = self.wait_for(lambda s: EXITED.search(s) is not None, "kiln exit")
        match = EXITED.search(screen)
        assert match is not None
        return int(match.group(1)), screen

    def cursor_visible(self) -> bool:
        return self.tmux("display-message", "-p", "#{cursor_flag}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], check=False)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Callable[..., Pane]]:
    panes: list[Pane] = []

    def start(*args: str | Path, **variables: str) -> Pane:
        environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        environ.update(TERM="xterm-256color", **variables)
        made = Pane(
            tmp_path / f"tmux-{len(panes)}",
            [sys.executable, "-m", "kiln", *map(str, args)],
            environ,
        )
        panes.append(made)
        return made

    yield start
    for made in panes:
        made.close()


def status_lines(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if "Building wheel · " in line]


def test_a_build_on_a_terminal_shows_one_updating_status_line_and_leaves_a_clean_screen(
    project: ProjectFactory, tmp_path: Path, pane: Callable[..., Pane]
) -> None:
    source = project("probe_backend")
    go = tmp_path / "go"
    shown = pane(source, "-w", "-o", tmp_path / "out", KILN_TEST_PROGRESS=str(go))

    during = shown.wait_for(lambda s: "[2/3] Compiling" in s, "the backend's latest line")
    [status] = status_lines(during)
    # The step, the time in it, and the backend's latest meaningful line (not the rule
    # of dashes printed after it), all on one line no wider than the terminal.
    assert re.search(r"Building wheel · \d+\.\d s · \[2/3\] Compiling probe_two\.c", status)
    assert len(status) <= WIDTH
    assert "-----" not in during
    # kiln's own messages stay above it.
    assert during.index("* Building wheel from") < during.index(status)
    later = shown.wait_for(
        lambda s: status_lines(s) not in ([], [status]), "the status line updating"
    )
    assert "[2/3] Compiling" in status_lines(later)[0]

    go.touch()
    exit_status, after = shown.exit_status()
    assert exit_status == 0, after
    assert "Successfully built kiln_fixture_probe-1.0.0" in after
    assert status_lines(after) == [] and "Compiling" not in after
    assert shown.cursor_visible()


def test_ctrl_c_on_a_terminal_leaves_it_clean(
    project: ProjectFactory, tmp_path: Path, pane: Callable[..., Pane]
) -> None:
    source = project("probe_backend")
    shown = pane(source, "-w", "-o", tmp_path / "out", KILN_TEST_PROGRESS=str(tmp_path / "go"))
    shown.wait_for(lambda s: "[2/3] Compiling" in s, "the backend's latest line")
    shown.tmux("send-keys", "C-c")
    status, after = shown.exit_status()
    assert status == 130, after
    assert "kiln: interrupted" in after
    assert status_lines(after) == [] and "Compiling" not in after
    assert shown.cursor_visible()


def test_no_color_keeps_the_status_line_without_colour(
    project: ProjectFactory, tmp_path: Path, pane: Callable[..., Pane]
) -> None:
    source = project("probe_backend")
    lines = {}
    for name, variables in [("coloured", {}), ("plain", {"NO_COLOR": "1"})]:
        go = tmp_path / f"go-{name}"
        shown = pane(source, "-w", "-o", tmp_path / name, KILN_TEST_PROGRESS=str(go), **variables)
        shown.wait_for(lambda s: "[2/3] Compiling" in s, "the status line")
        [lines[name]] = status_lines(shown.screen(escapes=True))
        go.touch()
        assert shown.exit_status()[0] == 0
    assert "\x1b[" in lines["coloured"]
    assert "\x1b[" not in lines["plain"]


def test_output_that_is_no_terminal_stays_line_by_line(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("probe_backend")
    (tmp_path / "go").touch()
    done = run_kiln(
        source,
        "-w",
        "-o",
        tmp_path / "out",
        env=dict(os.environ, KILN_TEST_PROGRESS=str(tmp_path / "go"), TERM="xterm-256color"),
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr and "\r" not in done.stderr
    assert "Compiling" not in done.stderr  # the backend's output shows with -v only
    assert "* Building wheel from" in done.stderr


def test_a_wheelhouse_on_a_terminal_shows_a_summary_and_a_line_per_running_job(
    tmp_path: Path, tree_index: Path, wheelhouse: Path, pane: Callable[..., Pane]
) -> None:
    pidfile = tmp_path / "slow.pid"
    args = wheelhouse_args(tree_index, wheelhouse, "kt-base", "kt-slow", "-o", tmp_path / "wh")
    shown = pane(*args, KT_SLOW_PIDFILE=str(pidfile))
    during = shown.wait_for(
        lambda s: pidfile.exists() and "built 1" in s and "kt-slow==1.0" in s,
        "kt-base built and kt-slow running",
    )
    lines = during.splitlines()
    [summary] = [line for line in lines if "waiting" in line]
    assert re.search(r"built 1 · running 1 · waiting 0 · \d+\.\d s", summary)
    [job] = [line for line in lines if line.startswith("  kt-slow==1.0")]
    assert re.search(r"kt-slow==1\.0 \(cp3\d+\) · \d+\.\d s · Building wheel$", job), job
    assert lines.index(summary) < lines.index(job)
    assert any(line.startswith("* [1/2] built kt-base==1.0") for line in lines)

    shown.tmux("send-keys", "C-c")
    status, after = shown.exit_status()
    assert status == 130, after
    assert "waiting" not in after and "  kt-slow" not in after
    assert shown.cursor_visible()


def test_output_that_is_no_terminal_gets_a_heartbeat_when_a_step_runs_long(
    project: ProjectFactory, tmp_path: Path
) -> None:
    """Half a minute of a silent-looking step: one line says it is alive (this test
    waits that long, on purpose)."""
    source = project("probe_backend")
    go = tmp_path / "go"
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", source, "-w", "-o", tmp_path / "out"],
        env=dict(os.environ, KILN_TEST_PROGRESS=str(go)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        lines = []
        for line in process.stderr:  # line by line, as a CI log gets it
            lines.append(line)
            if line.startswith("* still "):
                break
        go.touch()
        _, rest = process.communicate(timeout=HANG_GUARD_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, "".join(lines) + rest
    assert re.fullmatch(
        r"\* still building wheel from \S+ after (3\d\.\d s|\dm \d\ds) "
        r"\(last output: \[2/3\] Compiling probe_two\.c\)\n",
        lines[-1],
    ), lines[-1]
    assert "\x1b[" not in "".join(lines) + rest
