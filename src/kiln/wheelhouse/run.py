"""One wheelhouse run, top to bottom.

1. claim the output directory; read the settings; find the interpreters;
2. decide (:mod:`kiln.wheelhouse.tree`): pins, graph, cycle seeds, wheel keys;
3. take what the wheel cache has and the wheels the index gives (--binary, seeds);
4. build the rest on the scheduler, a node as soon as its build dependencies exist,
   each finished wheel stored in the wheel cache at once (so Ctrl-C keeps it);
5. copy the wheels into the wheelhouse, write the simple index and the report.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import KilnError, UsageError
from kiln.layout import LOCK_SUFFIX, WHEELHOUSE_RUNS
from kiln.locks import FileLock
from kiln.wheelhouse.indexes import EMPTY_INDEX, with_index_options
from kiln.wheelhouse.jobspecs import SOURCES
from kiln.wheelhouse.model import JobResult, JobSpec, Outcome, Provenance, Status
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.timeline import Timeline

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kiln.interpreters import Interpreter
    from kiln.wheelhouse.executors import Executor
    from kiln.wheelhouse.scheduler import Event
    from kiln.wheelhouse.tree import PlannedNode, TreePlan
    from kiln.wheelhouse.wheelcache import WheelCache

logger = logging.getLogger(__name__)

# The labels of the wheelhouse bucket that every run shares.
SHARED = (SOURCES, EMPTY_INDEX)

# Statuses that leave a usable wheel (or nothing wanted) behind.
GOOD = frozenset({Status.BUILT, Status.CACHED, Status.BINARY, Status.SKIPPED})


@dataclass
class WheelhouseResult:
    """What a run made: each node's outcome, and where the wheelhouse's files are."""

    outdir: Path
    outcomes: dict[str, Outcome]
    cycles: list[tuple[str, list[str]]] = field(default_factory=list)
    pins_files: dict[str, Path] = field(default_factory=dict)
    report: Path | None = None
    index: Path | None = None
    seconds: float = 0.0
    # How many jobs ran at once (-j, else a cluster's slots, else the CPU count);
    # None when nothing was built.
    jobs: int | None = None

    @property
    def ok(self) -> bool:
        return all(o.status in GOOD for o in self.outcomes.values())

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes.values() if o.status is status)


def build_wheelhouse(
    request: WheelhouseRequest,
    *,
    environ: Mapping[str, str] | None = None,
    on_event: Callable[[Event], None] | None = None,
    executor: Executor | None = None,
) -> WheelhouseResult:
    """Build ``request``'s tree into its wheelhouse. A failed package is an outcome,
    not an exception; KilnError is raised for bad input or a tree that cannot be
    resolved (exit 2), and when a source cannot be fetched, an environment set up or
    the cluster reached (exit 3)."""
    from kiln.cache import Cache
    from kiln.wheelhouse.publish import claimed_outdir

    started = time.monotonic()
    environ = dict(os.environ if environ is None else environ)
    cache = Cache.open(request.cache_dir)
    with claimed_outdir(request.outdir, cache.root) as outdir:
        run = _Run(request, cache.root, outdir, environ, on_event)
        return run.go(executor, started)


class _Run:
    def __init__(
        self,
        request: WheelhouseRequest,
        cache_root: Path,
        outdir: Path,
        environ: dict[str, str],
        on_event: Callable[[Event], None] | None,
    ) -> None:
        from kiln.wheelhouse.wheelcache import WheelCache

        self.request = request
        self.cache_root = cache_root
        self.outdir = outdir
        bucket = cache_root / WHEELHOUSE_RUNS
        self.empty_index = bucket / EMPTY_INDEX
        self.environ = with_index_options(
            environ,
            index_url=request.index_url,
            extra_index_urls=request.extra_index_urls,
            find_links=request.find_links,
            no_index=request.no_index,
            empty_index=self.empty_index,
        )
        self.on_event = on_event or (lambda event: None)
        # When each job ran, and on which lane: for the report's timeline (go() sets it).
        self.timeline = Timeline(time.monotonic())
        self.wheel_cache: WheelCache = WheelCache(cache_root)
        # This run's scratch, job directories and outputs, locked while it lives
        # (kiln cache clean spares it); removed at the end.
        self.place, self.place_lock = new_run_dir(cache_root / WHEELHOUSE_RUNS)
        # Patched sources and the empty index live at stable paths beside the runs,
        # shared by them: held shared, so kiln cache clean spares them.
        self.shared_locks = [FileLock(bucket / f"{label}{LOCK_SUFFIX}") for label in SHARED]
        for lock in self.shared_locks:
            lock.acquire_shared()
        # The patched sources this run builds from, each its own until the run ends.
        self.held_sources: list[FileLock] = []
        self.outcomes: dict[str, Outcome] = {}
        self.plan: TreePlan | None = None
        # How many jobs ran at once, once the run knows (_build).
        self.jobs: int | None = None
        # The cluster --scheduler names, connected to while the run decides.
        self.connection: BackgroundConnection | None = None

    def go(self, executor: Executor | None, started: float) -> WheelhouseResult:
        from kiln.layout import lock_beside
        from kiln.removal import remove_tree
        from kiln.wheelhouse.publish import read_manifest

        written = read_manifest(self.outdir)
        self.timeline = Timeline(started)
        try:
            _check_report_path(self.request.report_path.absolute())
            if executor is None and self.request.scheduler:
                # Connecting (and checking the workers) takes a second or so: meanwhile,
                # decide. Its error is raised when the run takes the executor.
                self.connection = BackgroundConnection(self.request.scheduler, connect_cluster)
            plan = self.plan = self._decide()
            self._take_ready_made(plan)
            self._build(plan, executor)
        finally:
            if self.connection is not None:
                # Nothing to build, or deciding failed: no connection or thread stays.
                self.connection.abandon()
            try:
                # Whatever happened, what is complete reaches the wheelhouse.
                result = self._publish(written, started)
            finally:
                # Even when publishing fails (a user's file in the way): no run left behind.
                remove_tree(self.place)
                self.place_lock.release()
                lock_beside(self.place).unlink(missing_ok=True)
                for lock in [*self.held_sources, *self.shared_locks]:
                    lock.release()
        return result

    # -- deciding -------------------------------------------------------------

    def _decide(self) -> TreePlan:
        from kiln.wheelhouse.settings import load_settings
        from kiln.wheelhouse.tree import TreePlanner

        settings = load_settings(
            self.request.settings, self.request.overrides, environ=self.environ
        )
        planner = TreePlanner(
            self.request,
            cache_root=self.cache_root,
            scratch=self.place / "scratch",
            settings=settings,
            environ=self.environ,
        )
        (self.place / "scratch").mkdir(parents=True, exist_ok=True)
        return planner.plan(self._interpreters(), pins_dir=self.outdir)

    def _interpreters(self) -> list[Interpreter]:
        from kiln.interpreters import find_interpreter

        if not self.request.pythons:
            # The interpreter running kiln, which builds when no --python is given.
            return [find_interpreter(sys.executable, self.environ)]
        found = [find_interpreter(spec, self.environ) for spec in self.request.pythons]
        return list({i.key: i for i in found}.values())

    def _take_ready_made(self, plan: TreePlan) -> None:
        """Outcomes for what needs no build: skipped, from the index, in the wheel cache
        (``on_event`` hears of each, outside the scheduler's count)."""
        from kiln.wheelhouse.scheduler import Event
        from kiln.wheelhouse.sources import fetch

        for node_id in plan.graph.topological():
            planned = plan.planned[node_id]
            provenance = planned.node.provenance
            if provenance is Provenance.SKIP:
                self.outcomes[node_id] = Outcome(node_id, Status.SKIPPED, reason="settings")
            elif provenance in (Provenance.BINARY, Provenance.SEED):
                assert planned.wheel is not None
                wheel = fetch(planned.wheel, self.cache_root, allowed=planned.allowed)
                self.outcomes[node_id] = Outcome(node_id, Status.BINARY, wheel=wheel)
            else:
                assert planned.key is not None
                hit = self.wheel_cache.lookup(planned.key)
                if hit is not None:
                    self.outcomes[node_id] = Outcome(
                        node_id, Status.CACHED, wheel=hit, key=planned.key
                    )
            if node_id in self.outcomes:
                self.on_event(Event("finished", node_id, self.outcomes[node_id]))

    # -- doing ----------------------------------------------------------------

    def _build(self, plan: TreePlan, executor: Executor | None) -> None:
        from kiln.wheelhouse.scheduler import schedule

        wanted = [n for n in plan.graph.topological() if n not in self.outcomes]
        # Compiled packages first, larger sdists before smaller (the order breaks
        # the scheduler's ties): the longest builds start at once instead of
        # ending the run on one core.
        wanted.sort(key=lambda n: _expected_length(plan.planned[n]), reverse=True)
        if not wanted:
            return
        deps = {n: [d for d in plan.planned[n].node.build_deps if d in wanted] for n in wanted}
        pool = executor if executor is not None else self._executor()
        # On a cluster, unless -j says otherwise, as many as its workers run at once.
        jobs = self.request.jobs or getattr(pool, "slots", None) or self.request.job_count
        self.jobs = jobs
        try:
            built = schedule(
                deps,
                self._job_spec,
                pool,
                jobs=jobs,
                fail_fast=self.request.fail_fast,
                on_event=self._heard,
                finish=self._finish,
            )
        finally:
            if executor is None:
                pool.close()
        for node_id, outcome in built.items():
            previous = self.outcomes.get(node_id)
            if previous is None or previous.status is not Status.BUILT:
                self.outcomes[node_id] = outcome

    def _heard(self, event: Event) -> None:
        self.timeline(event)
        self.on_event(event)

    def _executor(self) -> Executor:
        """The Dask cluster --scheduler names (connected to while deciding, its
        workers checked), or the local pool."""
        from kiln.wheelhouse.executors import LocalPool

        if self.connection is not None:
            return self.connection.take()
        return LocalPool(self.request.job_count)

    def _job_spec(self, node_id: str) -> JobSpec:
        from kiln.wheelhouse.jobspecs import job_spec

        assert self.plan is not None
        planned = self.plan.planned[node_id]
        return job_spec(
            planned,
            request=self.request,
            place=self.place / "jobs" / _safe(node_id),
            cache_root=self.cache_root,
            environ=self.environ,
            dep_wheels=self._dep_wheels(planned),
            empty_index=self.empty_index,
            held=self.held_sources,
        )

    def _dep_wheels(self, planned: PlannedNode) -> list[Path]:
        """The wheels of the node's in-tree build dependencies (--build-deps source)."""
        wheels = []
        for dep in planned.node.build_deps:
            outcome = self.outcomes.get(dep)
            if outcome is not None and outcome.wheel is not None:
                wheels.append(outcome.wheel)
        return wheels

    def _finish(self, node_id: str, result: JobResult) -> bool:
        """Store a finished wheel in the wheel cache at once; True when it is kept."""
        assert self.plan is not None
        planned = self.plan.planned[node_id]
        if not result.ok or result.wheel is None:
            self.outcomes[node_id] = Outcome(node_id, Status.FAILED, result=result)
            return False
        assert planned.key is not None
        try:
            stored = self.wheel_cache.store(
                planned.key, Path(result.wheel), _cache_entry(planned, result)
            )
        except KilnError as error:
            logger.error("%s: %s", node_id, error)
            return False
        self.outcomes[node_id] = Outcome(
            node_id, Status.BUILT, wheel=stored, key=planned.key, result=result
        )
        return True

    # -- the wheelhouse ---------------------------------------------------------

    def _publish(self, written: set[str], started: float) -> WheelhouseResult:
        from kiln.wheelhouse.index import write_index
        from kiln.wheelhouse.publish import place_wheel, write_manifest

        plan = self.plan
        for outcome in self.outcomes.values():
            if outcome.wheel is not None and outcome.status in GOOD:
                outcome.wheel = place_wheel(outcome.wheel, self.outdir, written)
        write_manifest(self.outdir, written)
        index = write_index(self.outdir) if written else None
        result = WheelhouseResult(
            outdir=self.outdir,
            outcomes=self.outcomes,
            cycles=plan.cycles if plan else [],
            pins_files=plan.pins_files if plan else {},
            index=index,
            seconds=time.monotonic() - started,
            jobs=self.jobs,
        )
        if plan is not None:
            result.report = self.request.report_path.absolute()
            _write_report(result.report, self.request, plan, result, self.timeline)
        return result


# How long a run that needs no cluster (nothing to build, or deciding failed) waits
# for a connection still being made before it goes on without it.
ABANDON_WAIT_SECONDS = 2.0


def connect_cluster(address: str) -> Executor:
    """The Dask cluster at ``address``, its workers checked."""
    from kiln.wheelhouse.dask_executor import DaskExecutor

    return DaskExecutor.connect(address)


class BackgroundConnection:
    """``connect(address)`` run in a thread of its own from the start: :meth:`take`
    waits for its executor (or raises its error); :meth:`abandon` waits for the
    thread and closes an executor nobody took."""

    def __init__(self, address: str, connect: Callable[[str], Executor]) -> None:
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(
            target=self._connect, args=(address, connect), name="kiln-connect", daemon=True
        )
        self._thread.start()

    def _connect(self, address: str, connect: Callable[[str], Executor]) -> None:
        try:
            executor = connect(address)
        except BaseException as error:  # handed to the run's thread, which raises it
            self._error = error
            return
        with self._lock:
            abandoned = self._abandoned
            if not abandoned:
                self._executor = executor
        if abandoned:  # the run ended while this connected
            _close_quietly(executor)

    def take(self) -> Executor:
        """The connected executor, now the caller's to close; the connection's error."""
        self._thread.join()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            error = self._error or RuntimeError("the connection was taken already")
            raise error
        return executor

    def abandon(self, wait: float = ABANDON_WAIT_SECONDS) -> None:
        """Close the executor unless it was taken. A connection still being made
        is waited for ``wait`` seconds at most (an unreachable scheduler must not
        hold back the run's own error, or a run with nothing to build, for the
        connect timeout); after that its thread closes what it makes."""
        with self._lock:
            self._abandoned = True
            executor, self._executor = self._executor, None
        if executor is not None:
            _close_quietly(executor)
        self._thread.join(wait)


def _close_quietly(executor: Executor) -> None:
    """Close an executor no job ran on; its failure must not hide the run's own error."""
    try:
        executor.close()
    except Exception as error:
        logger.debug("closing the unused cluster connection failed: %s", error)


def _write_report(
    path: Path,
    request: WheelhouseRequest,
    plan: TreePlan,
    result: WheelhouseResult,
    timeline: Timeline | None = None,
) -> None:
    """The JSON report: the run, the graph, and each package's inputs and outcome."""
    from datetime import datetime, timedelta, timezone

    from kiln import __version__
    from kiln.digests import file_sha256
    from kiln.wheelhouse.report import write_report

    seconds = round(result.seconds, 3)
    finished = datetime.now(timezone.utc)
    run = {
        "kiln_version": __version__,
        "outdir": str(result.outdir),
        "build_deps": request.build_deps,
        "jobs": result.jobs or request.job_count,
        "started": (finished - timedelta(seconds=seconds)).isoformat(),
        "finished": finished.isoformat(),
        "seconds": seconds,
        "pythons": sorted({p.interpreter.tag for p in plan.planned.values()}),
        "pins": {key: str(path) for key, path in result.pins_files.items()},
    }
    inputs = {
        node_id: {
            "sdist_sha256": planned.sdist_sha256,
            "patches": [str(p) for p in planned.patches],
            "settings": planned.settings.key_material(),
            "build_env": list(planned.build_pins),
        }
        for node_id, planned in plan.planned.items()
    }
    for node_id, planned in plan.planned.items():
        # A binary or seed package's input is the wheel taken, not the sdist it names.
        outcome = result.outcomes.get(node_id)
        if planned.wheel is not None:
            sha256 = planned.wheel.sha256
            if sha256 is None and outcome is not None and outcome.wheel is not None:
                sha256 = file_sha256(outcome.wheel)
            inputs[node_id]["wheel"] = {
                "url": planned.wheel.url,
                "filename": planned.wheel.filename,
                "sha256": sha256,
            }
    nodes = [planned.node for planned in plan.planned.values()]
    for node_id, outcome in result.outcomes.items():
        # A failed, blocked or cancelled build's key too: the wheel it was meant to be.
        decided = plan.planned.get(node_id)
        if outcome.key is None and decided is not None:
            outcome.key = decided.key
    spans = timeline.to_json() if timeline is not None else None
    write_report(path, run, result.outcomes, nodes, result.cycles, inputs=inputs, timeline=spans)


def _check_report_path(path: Path) -> None:
    """Before anything is built: the report can be written at ``path`` (its
    directory made if missing) and replaces no file of the user's."""
    from kiln.wheelhouse.publish import REPORT_MARK, refuse_foreign

    if path.is_dir():
        raise UsageError(f"the report {path} is a directory; --report names a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot make the report's directory {path.parent}: {error}") from error
    refuse_foreign(path, REPORT_MARK)


def _expected_length(planned: PlannedNode) -> tuple[bool, int]:
    """What the build's length is guessed from, before any build: compiled or not,
    then the sdist's size."""
    size = planned.sdist.stat().st_size if planned.sdist is not None else 0
    return planned.compiled, size


def _cache_entry(planned: PlannedNode, result: JobResult) -> dict[str, Any]:
    return {
        "node": planned.node.id,
        "sdist_sha256": planned.sdist_sha256,
        "build_env": list(planned.build_pins),
        "seconds": result.seconds,
    }


def new_run_dir(bucket: Path) -> tuple[Path, FileLock]:
    """A new directory for one run, with its lock held (see kiln.layout's convention)."""
    import secrets

    from kiln.layout import lock_beside
    from kiln.locks import FileLock

    bucket.mkdir(parents=True, exist_ok=True, mode=0o700)
    while True:
        place = bucket / f"run-{os.getpid()}-{secrets.token_hex(4)}"
        lock = FileLock(lock_beside(place))
        lock.acquire_exclusive()
        try:
            place.mkdir(mode=0o700)
        except FileExistsError:
            lock.release()
            continue
        return place, lock


def _safe(node_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id)
