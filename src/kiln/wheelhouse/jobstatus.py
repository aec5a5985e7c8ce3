"""What a running job is doing, told across processes: a small file in its job directory.

A job's process (:mod:`kiln.wheelhouse.job`) keeps ``status.json`` there up to
date through a :class:`StatusFile` logging handler: its step, when the step
began (wall-clock time: the reader is another process) and the backend's latest
line (see :mod:`kiln.progress`). The command line reads it for its live display
and heartbeats. A job elsewhere (a remote worker) has none: readers get None.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from kiln.progress import Activity, ActivityRecorder

STATUS_FILE = "status.json"
# At most this often a new output line is written out (a step change at once).
WRITE_SECONDS = 0.5


class StatusFile(ActivityRecorder):
    """Writes the job's :class:`kiln.progress.Activity` to ``path`` as it changes."""

    def __init__(self, path: Path) -> None:
        super().__init__(Activity(clock=time.time))
        self.path = path
        self._written = 0.0
        self._step: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        activity = self.activity
        now = time.time()
        if activity.step == self._step and now - self._written < WRITE_SECONDS:
            return
        self._step, self._written = activity.step, now
        from kiln.jsonfiles import write_json

        # A status line is worth showing, not worth failing a build for.
        with contextlib.suppress(OSError):
            write_json(
                self.path,
                {"step": activity.step, "since": activity.since, "line": activity.line},
                private=True,
            )


def read_status(job_dir: Path) -> tuple[str | None, float | None, str | None] | None:
    """(step, seconds it has run, latest output line) of the job, or None when it
    has said nothing yet."""
    from kiln.jsonfiles import read_json_object

    data: dict[str, Any] = read_json_object(job_dir / STATUS_FILE)
    if not data:
        return None
    since = data.get("since")
    seconds = time.time() - since if isinstance(since, (int, float)) else None
    step, line = data.get("step"), data.get("line")
    return (
        step if isinstance(step, str) else None,
        seconds,
        line if isinstance(line, str) else None,
    )
