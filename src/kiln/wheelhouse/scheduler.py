"""The scheduler: each build starts as soon as the builds it needs have succeeded.

A ready queue, not rounds: whenever a job ends, the nodes it was the last
missing dependency of become ready, and ready nodes start while there is a free
slot, whatever else is still running. Failures are data: a failed node blocks
the nodes that need it (directly or not), and everything else goes on, unless
``fail_fast`` stops the run. An interrupt (Ctrl-C, :class:`kiln.errors.Terminated`)
stops every job through the executor before it propagates.

The scheduler knows nodes, dependencies and an :class:`Executor`; nothing of
processes, machines, or what a job does.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from typing import Literal

from kiln.errors import KilnError
from kiln.wheelhouse.executors import Executor
from kiln.wheelhouse.graph import dependents, reverse, topological
from kiln.wheelhouse.model import JobResult, JobSpec, Outcome, Status

logger = logging.getLogger("kiln.wheelhouse")

# The longest the scheduler waits for a job to end before it looks again. Waiting is
# not polling (it wakes when a job ends); this only keeps an interrupt prompt on
# systems where a signal does not cut a lock's wait short.
WAIT_SECONDS = 0.5

INTERRUPTED = "interrupted"

# An executor with a preference among ready jobs (``prefer``, optional) chooses among
# this many of them, the most waited-for first; one passed over this often is
# started next whatever the preference, so that none waits for ever.
CHOICE_WINDOW = 8


@dataclass(frozen=True)
class Event:
    """A node started, or got its outcome (built, failed, blocked, cancelled)."""

    kind: Literal["started", "finished"]
    node: str
    # The node's outcome, when finished.
    outcome: Outcome | None = None
    # Where the run stands, this event counted: jobs running, nodes with an
    # outcome, and nodes in all.
    running: int = 0
    done: int = 0
    total: int = 0
    # The job, when started (a progress display finds its status through it).
    spec: JobSpec | None = None


def schedule(
    graph_deps: Mapping[str, Collection[str]],
    start: Callable[[str], JobSpec],
    executor: Executor,
    *,
    jobs: int,
    fail_fast: bool = False,
    on_event: Callable[[Event], None] | None = None,
    finish: Callable[[str, JobResult], bool] | None = None,
) -> dict[str, Outcome]:
    """Run the node of every key of ``graph_deps`` once the nodes it lists have
    succeeded (an id that is not a key is taken as there already); at most ``jobs``
    at once, those that most other nodes wait for first.

    ``start(id)``, called when the node is ready, gives its job (a KilnError there
    fails the node). ``finish(id, result)`` is called with each job's result, in
    this thread (the run keeps the wheel there); it may turn a successful result
    into a failure by returning False or raising a KilnError. ``on_event`` hears of
    every start and outcome. Returns every node's outcome, in ``graph_deps``' order.

    A cycle in ``graph_deps`` is a ValueError, before anything starts (break cycles
    with :meth:`kiln.wheelhouse.graph.Graph.break_cycles` first). On an interrupt
    (or any exception from a callback) every job is stopped, the nodes without an
    outcome are CANCELLED (``on_event`` hears of them), and it propagates.
    """
    run = _Run(graph_deps, start, executor, jobs, fail_fast, on_event, finish)
    return run.go()


class _Run:
    def __init__(
        self,
        graph_deps: Mapping[str, Collection[str]],
        start: Callable[[str], JobSpec],
        executor: Executor,
        jobs: int,
        fail_fast: bool,
        on_event: Callable[[Event], None] | None,
        finish: Callable[[str, JobResult], bool] | None,
    ) -> None:
        if jobs < 1:
            raise ValueError(f"the scheduler runs at least one job at once, not {jobs}")
        self.deps = {
            node: tuple(d for d in dict.fromkeys(needs) if d in graph_deps)
            for node, needs in graph_deps.items()
        }
        topological(self.deps)  # a cycle is refused here, before any job starts
        self.start = start
        self.executor = executor
        self.jobs = jobs
        self.fail_fast = fail_fast
        self.on_event = on_event
        self.finish = finish
        self.users = reverse(self.deps)
        self.missing = {node: len(needs) for node, needs in self.deps.items()}
        # Most waited-for first (what unblocks most nodes), then the given order.
        self.priority = {
            node: (-len(dependents(self.deps, node)), position)
            for position, node in enumerate(self.deps)
        }
        self.ready = [(self.priority[n], n) for n, count in self.missing.items() if count == 0]
        heapq.heapify(self.ready)
        self.running: dict[Future[JobResult], str] = {}
        # For an executor with a preference: the ready nodes' jobs, made once, and
        # how often each node was passed over.
        self.prefer: Callable[[Sequence[JobSpec]], int] | None = getattr(executor, "prefer", None)
        self.made: dict[str, JobSpec] = {}
        self.passed: dict[str, int] = {}
        self.outcomes: dict[str, Outcome] = {}
        # Why the run stopped early, once it has.
        self.stopped: str | None = None

    def go(self) -> dict[str, Outcome]:
        try:
            while self.ready or self.running:
                self._start_ready()
                if self.running:
                    self._take_ended()
        except BaseException as error:
            reason = INTERRUPTED if isinstance(error, KeyboardInterrupt) else f"stopped: {error!r}"
            self._stop(reason)
            raise
        return {node: self.outcomes[node] for node in self.deps}

    def _start_ready(self) -> None:
        while self.ready and len(self.running) < self.jobs and self.stopped is None:
            if self.prefer is not None:
                picked = self._preferred()
                if picked is None:
                    continue
                node, spec = picked
            else:
                _, node = heapq.heappop(self.ready)
                try:
                    spec = self.start(node)
                except KilnError as error:
                    self._failed(node, _failure(node, error))
                    continue
            self.running[self.executor.submit(spec)] = node
            self._event("started", node, spec=spec)

    def _preferred(self) -> tuple[str, JobSpec] | None:
        """The ready node the executor prefers among the most waited-for few, with
        its job; None when the jobs of those could not be made (they failed)."""
        assert self.prefer is not None
        candidates: list[tuple[tuple[tuple[int, int], str], JobSpec]] = []
        for entry in heapq.nsmallest(CHOICE_WINDOW, self.ready):
            node = entry[1]
            spec = self.made.get(node)
            if spec is None:
                try:
                    spec = self.made[node] = self.start(node)
                except KilnError as error:
                    self._take_ready(entry)
                    self._failed(node, _failure(node, error))
                    if self.stopped is not None:
                        return None
                    continue
            candidates.append((entry, spec))
        if not candidates or self.stopped is not None:
            return None
        overdue = [
            position
            for position, (entry, _) in enumerate(candidates)
            if self.passed.get(entry[1], 0) >= CHOICE_WINDOW
        ]
        if overdue:
            chosen = overdue[0]
        elif len(candidates) == 1:  # nothing to choose between
            chosen = 0
        else:
            chosen = self.prefer([spec for _, spec in candidates])
        if not 0 <= chosen < len(candidates):
            chosen = 0
        for entry, _ in candidates[:chosen]:  # overtaken by the chosen one
            self.passed[entry[1]] = self.passed.get(entry[1], 0) + 1
        entry, spec = candidates[chosen]
        self._take_ready(entry)
        del self.made[entry[1]]
        return entry[1], spec

    def _take_ready(self, entry: tuple[tuple[int, int], str]) -> None:
        if entry in self.ready:
            self.ready.remove(entry)
            heapq.heapify(self.ready)

    def _take_ended(self) -> None:
        ended, _ = wait_for(self.running, timeout=WAIT_SECONDS, return_when=FIRST_COMPLETED)
        for future in [f for f in self.running if f in ended]:  # in the order they started
            node = self.running.pop(future, None)
            if node is not None:  # else a --fail-fast stop took it already
                self._ended(node, future)

    def _ended(self, node: str, future: Future[JobResult]) -> None:
        result = _result_of(node, future)
        if result is None:  # cancelled before it ran
            self._record(Outcome(node, Status.CANCELLED, reason=self.stopped or "cancelled"))
            if self.stopped is None:  # by the executor itself: what needs it cannot start
                self._block_users(node)
            return
        result = self._finish(node, result)
        if result.ok:
            self._record(Outcome(node, Status.BUILT, result=result))
            self._release_users(node)
        elif self.stopped is not None:  # a job stopped on purpose did not fail
            self._record(Outcome(node, Status.CANCELLED, result=result, reason=self.stopped))
        else:
            self._failed(node, result)

    def _finish(self, node: str, result: JobResult) -> JobResult:
        """The result as the run takes it: ``finish`` may refuse a successful one."""
        if self.finish is None:
            return result
        try:
            kept = self.finish(node, result)
        except KilnError as error:
            logger.warning("%s: %s", node, error)
            return dataclasses.replace(
                result, ok=False, exit_code=error.exit_code, error=str(error)
            )
        if result.ok and not kept:
            return dataclasses.replace(
                result, ok=False, exit_code=1, error="the run did not accept the wheel"
            )
        return result

    def _failed(self, node: str, result: JobResult) -> None:
        self._record(Outcome(node, Status.FAILED, result=result))
        self._block_users(node)
        if self.fail_fast and self.stopped is None:
            self._stop(f"fail-fast: {node} failed")

    def _release_users(self, node: str) -> None:
        for user in self.users[node]:
            self.missing[user] -= 1
            if self.missing[user] == 0 and user not in self.outcomes:
                heapq.heappush(self.ready, (self.priority[user], user))

    def _block_users(self, node: str) -> None:
        """Every node that needs ``node`` is blocked by it: none of them has started."""
        blocked = dependents(self.deps, node)
        for user in [n for n in self.deps if n in blocked and n not in self.outcomes]:
            self._record(Outcome(user, Status.BLOCKED, reason=node))

    def _stop(self, reason: str) -> None:
        """Stop every job and cancel every node without an outcome. A job that ended
        before the executor stopped it keeps its result (and its wheel)."""
        self.stopped = self.stopped or reason
        self.ready.clear()
        if self.running:
            self.executor.cancel(list(self.running))
        while self.running:
            future, node = next(iter(self.running.items()))
            del self.running[future]
            self._ended(node, future)
        for node in self.deps:
            if node not in self.outcomes:
                self._record(Outcome(node, Status.CANCELLED, reason=reason))

    def _record(self, outcome: Outcome) -> None:
        self.outcomes[outcome.node] = outcome
        self._event("finished", outcome.node, outcome)

    def _event(
        self,
        kind: Literal["started", "finished"],
        node: str,
        outcome: Outcome | None = None,
        spec: JobSpec | None = None,
    ) -> None:
        if self.on_event is not None:
            done, total = len(self.outcomes), len(self.deps)
            self.on_event(Event(kind, node, outcome, len(self.running), done, total, spec))


def _result_of(node: str, future: Future[JobResult]) -> JobResult | None:
    """The job's result; None if its future was cancelled; a job the executor could
    not run at all is a failed result."""
    if future.cancelled():
        return None
    try:
        return future.result()
    except Exception as error:
        logger.warning("%s: the job could not run: %r", node, error)
        return JobResult(node=node, ok=False, exit_code=1, error=f"the job could not run: {error}")


def _failure(node: str, error: KilnError) -> JobResult:
    """The result of a node whose job could not even be made (``start`` failed)."""
    return JobResult(
        node=node,
        ok=False,
        exit_code=error.exit_code,
        error=str(error),
        log_path=str(error.log_path) if error.log_path else None,
    )
