"""When each job ran, and on which lane: the data of the timings report.

:class:`Timeline` listens to the scheduler's events (it is an ``on_event``): a
job's span runs from its start to its outcome, in seconds since the run began,
on the lowest lane free when it started (lanes are the ``-j`` slots; a job that
ran on a remote worker is placed by its worker name in the report instead).
:func:`critical_path` reads those spans back out of the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kiln.wheelhouse.scheduler import Event


@dataclass
class Span:
    start: float
    lane: int
    end: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3) if self.end is not None else None,
            "lane": self.lane,
        }


class Timeline:
    """Each started node's span; ``started`` is the run's start (``clock``'s time)."""

    def __init__(self, started: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.started = started
        self.clock = clock
        self.spans: dict[str, Span] = {}
        self._busy: set[int] = set()

    def __call__(self, event: Event) -> None:
        now = self.clock() - self.started
        if event.kind == "started":
            lane = next(n for n in range(len(self._busy) + 1) if n not in self._busy)
            self._busy.add(lane)
            self.spans[event.node] = Span(now, lane)
            return
        span = self.spans.get(event.node)
        if span is not None and span.end is None:
            span.end = now
            self._busy.discard(span.lane)

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {node: span.to_json() for node, span in self.spans.items()}


def critical_path(packages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The chain of builds that decided when the run ended, first to last.

    It ends with the package that finished last; before each package comes the
    build dependency it waited for longest (the one that finished last), as long
    as that one has a span. Packages are report entries (``id``, ``build_deps``,
    ``start``, ``end``); those without an ``end`` did not run.
    """
    ran = {p["id"]: p for p in packages if p.get("end") is not None}
    if not ran:
        return []
    last = max(ran.values(), key=lambda p: (p["end"], p["id"]))
    path = [last["id"]]
    while True:
        deps = [ran[d] for d in last.get("build_deps", ()) if d in ran and d not in path]
        if not deps:
            break
        last = max(deps, key=lambda p: (p["end"], p["id"]))
        path.append(last["id"])
    return path[::-1]
