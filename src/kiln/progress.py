"""What a running build is doing, read from kiln's log records; and heartbeats.

The library already says everything needed: kiln's INFO records name each step
("Building wheel from …") and every line a backend or installer prints is a
record of the ``kiln.output`` logger (:class:`kiln.process.OutputSink`). An
:class:`ActivityRecorder` handler keeps the latest of each in an
:class:`Activity`, which the terminal's live display and the heartbeats of
plain output read. Nothing here prints: a :class:`Heartbeat` hands its lines to
a callback.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# A step that has run this long gets a heartbeat line in plain output, and another
# each time this much more has passed.
HEARTBEAT_SECONDS = 30.0

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|[\x00-\x08\x0b-\x1f\x7f]")
# A compiler's command line says little in one line; the file it compiles says it all.
_COMPILER = re.compile(
    r"^\S*(?:gcc|g\+\+|clang|clang\+\+|cc|c\+\+|ccache|sccache|gfortran)(?:-[\d.]+)?\s"
)
_COMPILED = re.compile(r"\s-c\s+(\S+)")
_FILLER = re.compile(r"^[\W_]*$")


def meaningful(line: str) -> str | None:
    """The part of an output line worth showing as "what it is doing now", or None.

    Colour codes and control characters go; of a line redrawn with carriage
    returns, the last drawing counts; a blank line or a rule of dashes says
    nothing; a compiler's command line becomes ``compiling FILE``.
    """
    line = line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line
    text = _ESCAPES.sub("", line).strip()
    if _FILLER.match(text):
        return None
    if _COMPILER.match(text):
        compiled = _COMPILED.search(text)
        if compiled:
            return f"compiling {compiled.group(1)}"
    return text


def format_seconds(seconds: float) -> str:
    """``7.3 s``, ``1m 05s``, ``1h 02m``: short and steady for a status line."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def short_step(step: str) -> str:
    """A step for a status line: "Building wheel from /a/long/path" is "Building
    wheel" (the line kiln printed above names the path; the room is for the
    backend's line)."""
    return step.split(" from /", 1)[0]


@dataclass
class Activity:
    """One build: the step it is at, since when, and the backend's latest line."""

    clock: Callable[[], float] = time.monotonic
    step: str | None = None
    line: str | None = None
    started: float = field(init=False)
    since: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.since = self.clock()

    def set_step(self, step: str) -> None:
        self.step, self.line, self.since = step, None, self.clock()

    def set_line(self, raw: str) -> None:
        line = meaningful(raw)
        if line is not None:
            self.line = line

    def step_seconds(self) -> float:
        return self.clock() - self.since


class ActivityRecorder(logging.Handler):
    """Keeps an :class:`Activity` up to date; attach it to the ``kiln`` logger (steps:
    its INFO records) and to ``kiln.output`` (the children's lines). Prints nothing."""

    def __init__(self, activity: Activity) -> None:
        super().__init__(logging.INFO)
        self.activity = activity

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not worth a traceback here
            return
        if record.name == "kiln.output" or record.name.startswith("kiln.output."):
            self.activity.set_line(message)
        elif record.levelno == logging.INFO:
            self.activity.set_step(message)


class Heartbeat:
    """Says, now and then, that a long step is still going (for output that is not a
    terminal, where nothing else moves). ``due()`` gives the lines to print now;
    :meth:`start` calls it once a second in a thread and hands them to ``say``."""

    def __init__(
        self,
        watched: Callable[[], Iterable[tuple[str, float, str | None]]],
        say: Callable[[str], None],
        *,
        every: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # (what, seconds it has run, its latest output line) per thing watched.
        self.watched = watched
        self.say = say
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self) -> list[str]:
        now = self.clock()
        lines = []
        current = set()
        for what, seconds, line in self.watched():
            current.add(what)
            if seconds < self.every:
                self._last.pop(what, None)  # a new step of the same name starts over
                continue
            if now - self._last.get(what, now - self.every) < self.every:
                continue
            self._last[what] = now
            lines.append(
                f"* still {what} after {format_seconds(seconds)}"
                + (f" (last output: {line})" if line else "")
            )
        for gone in set(self._last) - current:
            del self._last[gone]
        return lines

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="kiln-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for line in self.due():
                self.say(line)


def step_watch(activity: Activity) -> Callable[[], list[tuple[str, float, str | None]]]:
    """What a :class:`Heartbeat` watches in a single build: its current step."""

    def watched() -> list[tuple[str, float, str | None]]:
        step = activity.step
        if step is None:
            return []
        return [(_lowered(step), activity.step_seconds(), activity.line)]

    return watched


def _lowered(step: str) -> str:
    """ "Building wheel from x" reads "still building wheel from x"."""
    return step[:1].lower() + step[1:] if step[1:2].islower() else step
