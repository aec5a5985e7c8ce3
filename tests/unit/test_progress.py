"""What a running build is doing, read from kiln's log records, and the heartbeats
of plain output (kiln.progress); when the terminal display is chosen (kiln.terminal)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

from kiln.progress import Activity, ActivityRecorder, Heartbeat, format_seconds, meaningful
from kiln.terminal import live_display_wanted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            "[123/456] Compiling C object foo.so.p/foo.c.o",
            "[123/456] Compiling C object foo.so.p/foo.c.o",
        ),
        ("building 'yaml._yaml' extension", "building 'yaml._yaml' extension"),
        ("", None),
        ("   ", None),
        ("-" * 30, None),
        ("\x1b[32m[ 50%] Building C object x.o\x1b[0m", "[ 50%] Building C object x.o"),
        ("progress 10%\rprogress 90%", "progress 90%"),
        (
            "gcc -pthread -Wsign-compare -DNDEBUG -g -fwrapv -O2 -fPIC -I/x/include "
            "-c src/speed.c -o build/temp/src/speed.o",
            "compiling src/speed.c",
        ),
        (
            "x86_64-linux-gnu-gcc -shared build/a.o -o build/a.so",
            "x86_64-linux-gnu-gcc -shared build/a.o -o build/a.so",
        ),
    ],
)
def test_the_latest_meaningful_line(line: str, shown: str | None) -> None:
    assert meaningful(line) == shown


def test_format_seconds_stays_short() -> None:
    assert [format_seconds(s) for s in (7.25, 65, 3725)] == ["7.2 s", "1m 05s", "1h 02m"]


def test_the_recorder_keeps_the_step_and_the_backends_latest_line() -> None:
    clock = Clock()
    activity = Activity(clock=clock)
    recorder = ActivityRecorder(activity)
    step_logger, output_logger = (
        logging.getLogger("kiln.test-step"),
        logging.getLogger("kiln.output"),
    )
    output_level = output_logger.level
    step_logger.addHandler(recorder)
    step_logger.setLevel(logging.INFO)
    output_logger.addHandler(recorder)
    output_logger.setLevel(logging.INFO)
    try:
        step_logger.info("Building %s from %s", "wheel", "/src")
        clock.now += 12
        output_logger.info("%s", "[1/2] Compiling a.c")
        output_logger.info("%s", "")  # says nothing: the last line stays
        step_logger.debug("a debug record is no step")
    finally:
        step_logger.removeHandler(recorder)
        output_logger.removeHandler(recorder)
        output_logger.setLevel(output_level)
    assert activity.step == "Building wheel from /src"
    assert activity.line == "[1/2] Compiling a.c"
    assert activity.step_seconds() == 12


def test_a_heartbeat_comes_after_30_s_of_one_step_then_every_30_s() -> None:
    clock = Clock()
    activity = Activity(clock=clock)
    said: list[str] = []
    from kiln.progress import step_watch

    beat = Heartbeat(step_watch(activity), said.append, clock=clock)
    activity.set_step("Building wheel from /src")
    activity.set_line("[3/9] Compiling b.c")
    for _ in range(95):  # a tick a second, as the thread does
        clock.now += 1
        said += beat.due()
    assert said == [
        "* still building wheel from /src after 30.0 s (last output: [3/9] Compiling b.c)",
        "* still building wheel from /src after 1m 00s (last output: [3/9] Compiling b.c)",
        "* still building wheel from /src after 1m 30s (last output: [3/9] Compiling b.c)",
    ]
    # A new step starts the count again.
    activity.set_step("Building sdist from /src")
    clock.now += 10
    assert beat.due() == []


def test_a_heartbeat_thread_says_its_lines_and_stops() -> None:
    said: list[str] = []
    beat = Heartbeat(lambda: [("building x", 45.0, None)], said.append, every=30)
    with beat:
        while not said:
            beat._stop.wait(0.05)
    assert said[0] == "* still building x after 45.0 s"
    assert beat._thread is not None and not beat._thread.is_alive()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("verbosity", "environ", "tty", "wanted"),
    [
        (0, {"TERM": "xterm"}, True, True),
        (0, {"TERM": "xterm"}, False, False),  # a pipe, a CI log
        (0, {"TERM": "dumb"}, True, False),
        (-1, {"TERM": "xterm"}, True, False),  # -q
        (1, {"TERM": "xterm"}, True, False),  # -v streams the output instead
        (0, {"TERM": "xterm", "NO_COLOR": "1"}, True, True),  # no colour, still live
    ],
)
def test_the_live_display_is_for_a_terminal_only(
    verbosity: int, environ: dict[str, str], tty: bool, wanted: bool
) -> None:
    stream = FakeTerminal() if tty else io.StringIO()
    assert live_display_wanted(verbosity, stream, environ) is wanted


def test_without_rich_there_is_no_live_display(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert not live_display_wanted(0, FakeTerminal(), {"TERM": "xterm"})


def test_rich_is_not_imported_for_version_or_output_that_is_no_terminal() -> None:
    code = (
        "import sys, kiln.cli, kiln.terminal, kiln.wheelhouse_command\n"
        "kiln.terminal.configure_logging(0)\n"
        "with kiln.terminal.build_progress(0):\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich' or m == 'kiln.live'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert loaded.stdout.strip() == "[]"
    version = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kiln", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "rich" not in version.stderr and "kiln.progress" not in version.stderr
