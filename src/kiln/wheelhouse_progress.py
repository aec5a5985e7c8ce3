"""Where a ``kiln wheelhouse`` run stands, for its live display and heartbeats.

:class:`RunProgress` hears the run's events (it is an ``on_event``) and counts:
built, cached, failed, blocked, running, waiting, and an estimate of the time
left once a few packages have been built. Each running job's step and latest
output line come from its status file (:mod:`kiln.wheelhouse.jobstatus`).
It prints nothing: :mod:`kiln.wheelhouse_command` shows what it says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kiln.progress import format_seconds, short_step
from kiln.wheelhouse.model import node_label

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kiln.live import LiveScreen
    from kiln.wheelhouse.model import JobSpec
    from kiln.wheelhouse.scheduler import Event

# Packages built before the summary line gives an estimate of the time left.
ETA_AFTER = 3
_SOMETIMES = ("cached", "failed", "blocked")


@dataclass
class _Running:
    started: float
    spec: JobSpec | None


class RunProgress:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.counts: dict[str, int] = {}
        self.running: dict[str, _Running] = {}
        # Nodes the scheduler runs, and how many of them have an outcome.
        self.total = 0
        self.done = 0
        self.build_seconds: list[float] = []
        # The most jobs seen at once: the run's parallelism, as far as it shows.
        self.slots = 1

    def __call__(self, event: Event) -> None:
        if event.total:  # the scheduler's (ready-made outcomes come with none)
            self.total, self.done = event.total, event.done
        if event.kind == "started":
            self.running[event.node] = _Running(self.clock(), event.spec)
            self.slots = max(self.slots, len(self.running))
            return
        self.running.pop(event.node, None)
        outcome = event.outcome
        if outcome is None:
            return
        status = outcome.status.value
        self.counts[status] = self.counts.get(status, 0) + 1
        if status == "built" and outcome.result is not None:
            self.build_seconds.append(outcome.result.seconds)

    @property
    def waiting(self) -> int:
        return max(0, self.total - self.done - len(self.running))

    def eta(self) -> float | None:
        """Seconds left, roughly: the mean build time for what waits or runs, spread
        over the slots; None until :data:`ETA_AFTER` packages have been built."""
        if len(self.build_seconds) < ETA_AFTER:
            return None
        mean = sum(self.build_seconds) / len(self.build_seconds)
        now = self.clock()
        running_left = sum(max(0.0, mean - (now - r.started)) for r in self.running.values())
        return (mean * self.waiting + running_left) / self.slots

    def summary(self) -> str:
        # Cached, failed and blocked once there are any: the line must fit a narrow terminal.
        parts = [f"built {self.counts.get('built', 0)}"]
        parts += [f"{s} {self.counts[s]}" for s in _SOMETIMES if self.counts.get(s)]
        parts += [f"running {len(self.running)}", f"waiting {self.waiting}"]
        line = " · ".join(parts) + f" · {format_seconds(self.clock() - self.started)}"
        eta = self.eta()
        if eta is not None and (self.running or self.waiting):
            line += f" · about {format_seconds(eta)} left"
        return line

    def jobs(self) -> list[tuple[str, float, str | None, str | None]]:
        """(node, seconds it has run, its step, its latest output line) per running job."""
        from kiln.wheelhouse.executors import job_dir
        from kiln.wheelhouse.jobstatus import read_status

        now = self.clock()
        jobs = []
        for node, running in list(self.running.items()):
            status = read_status(job_dir(running.spec)) if running.spec is not None else None
            step, _, line = status if status is not None else (None, None, None)
            jobs.append((node, now - running.started, step, line))
        return jobs

    def status_lines(self, screen: LiveScreen) -> list[tuple[str, str]]:
        """The live display: the summary, then one line per running job."""
        lines = [(f"{screen.spin()} {self.summary()}", "bold")]
        for node, seconds, step, line in self.jobs():
            parts = [f"  {node_label(node)}", format_seconds(seconds)]
            parts += [part for part in (step and short_step(step), line) if part]
            lines.append((" · ".join(parts), "cyan"))
        return lines

    def watched(self) -> list[tuple[str, float, str | None]]:
        """What the heartbeats of plain output watch: each running job."""
        return [
            (
                f"building {node_label(node)}",
                seconds,
                " | ".join(p for p in (step, line) if p) or None,
            )
            for node, seconds, step, line in self.jobs()
        ]
