"""Where a wheelhouse run stands, for its live display and heartbeats."""

from __future__ import annotations

import json
from pathlib import Path

from kiln.wheelhouse.executors import job_dir
from kiln.wheelhouse.jobstatus import STATUS_FILE, read_status
from kiln.wheelhouse.model import JobResult, JobSpec, Outcome, Status, node_label
from kiln.wheelhouse.scheduler import Event
from kiln.wheelhouse_progress import RunProgress

PY = "cp312-linux_x86_64-abc"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Screen:
    def spin(self) -> str:
        return "*"


def spec(tmp_path: Path, node: str) -> JobSpec:
    return JobSpec(node, node, "1", "src", str(tmp_path / node / "out"), str(tmp_path))


def test_the_summary_counts_each_outcome_and_estimates_the_time_left(tmp_path: Path) -> None:
    clock = Clock()
    progress = RunProgress(clock)
    progress(Event("finished", f"six==1@{PY}", Outcome(f"six==1@{PY}", Status.CACHED)))
    names = [f"p{n}==1@{PY}" for n in range(6)]
    for n in names[:2]:
        progress(Event("started", n, running=2, total=6, spec=spec(tmp_path, n)))
    assert progress.summary() == "built 0 · cached 1 · running 2 · waiting 4 · 0.0 s"
    for done, n in enumerate(names[:3], start=1):
        clock.now += 10
        result = JobResult(n, ok=True, seconds=10.0)
        progress(Event("finished", n, Outcome(n, Status.BUILT, result=result), done=done, total=6))
        progress(Event("started", names[done + 1], total=6, done=done))
    # Three built in 10 s each, two at a time; one waits and two run.
    assert progress.waiting == 1 and len(progress.running) == 2
    assert progress.eta() == (10 * 1 + 0 + 10) / 2  # one started 10 s ago, one just now
    progress(Event("finished", "x", Outcome("x", Status.FAILED), done=4, total=6))
    progress(Event("finished", "y", Outcome("y", Status.BLOCKED), done=5, total=6))
    assert progress.summary().startswith(
        "built 3 · cached 1 · failed 1 · blocked 1 · running 2 · waiting 0 · 30.0 s"
    )
    assert progress.eta() is not None and "left" in progress.summary()


def test_each_running_job_has_a_line_with_its_step_and_latest_output(tmp_path: Path) -> None:
    clock = Clock()
    progress = RunProgress(clock)
    node = f"numpy==2.0@{PY}"
    job = spec(tmp_path, node)
    progress(Event("started", node, total=1, spec=job))
    clock.now += 75
    place = job_dir(job)
    place.mkdir(parents=True)
    line = "[12/40] Compiling C object numpy/core/x.c.o"
    (place / STATUS_FILE).write_text(
        json.dumps({"step": "Building wheel from /src", "since": 0, "line": line})
    )
    assert read_status(place) is not None
    lines = progress.status_lines(Screen())  # type: ignore[arg-type]
    assert lines[0][0].startswith("* built 0")
    assert lines[1][0] == f"  numpy==2.0 (cp312) · 1m 15s · Building wheel · {line}"
    [(what, seconds, detail)] = progress.watched()
    assert (what, seconds) == ("building numpy==2.0 (cp312)", 75)
    assert detail == f"Building wheel from /src | {line}"


def test_a_job_that_has_said_nothing_yet_has_a_line_all_the_same(tmp_path: Path) -> None:
    progress = RunProgress(Clock())
    progress(Event("started", "a==1", total=1, spec=spec(tmp_path, "a==1")))
    progress(Event("started", "b==1", total=1))  # a job of another executor: no spec
    assert [line for line, _ in progress.status_lines(Screen())[1:]] == [  # type: ignore[arg-type]
        "  a==1 · 0.0 s",
        "  b==1 · 0.0 s",
    ]


def test_node_labels() -> None:
    assert node_label(f"six==1.17.0@{PY}") == "six==1.17.0 (cp312)"
    assert node_label("six==1.17.0") == "six==1.17.0"


def test_a_jobs_status_file_follows_its_steps_and_output(tmp_path: Path) -> None:
    import logging

    from kiln.wheelhouse.jobstatus import StatusFile

    handler = StatusFile(tmp_path / STATUS_FILE)
    step = logging.LogRecord(
        "kiln.builder", logging.INFO, "", 0, "Building wheel from /s", (), None
    )
    handler.handle(step)
    assert read_status(tmp_path)[::2] == ("Building wheel from /s", None)  # type: ignore[index]
    handler._written = 0.0  # as if a while had passed since
    line = logging.LogRecord("kiln.output", logging.INFO, "", 0, "%s", ("[1/9] cc a.c",), None)
    handler.handle(line)
    status = read_status(tmp_path)
    assert status is not None
    assert status[0] == "Building wheel from /s" and status[2] == "[1/9] cc a.c"
    assert status[1] is not None and 0 <= status[1] < 600
    assert read_status(tmp_path / "elsewhere") is None
