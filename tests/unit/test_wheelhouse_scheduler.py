"""Tests for kiln.wheelhouse.scheduler, with an in-memory executor whose jobs end
when the test says so: ready queue, blocking, fail-fast, interrupts, seeds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
from typing import Any

import pytest

from kiln.errors import ConfigError, KilnError, Terminated
from kiln.wheelhouse.graph import Graph
from kiln.wheelhouse.model import JobResult, JobSpec, Node, NodeKind, Outcome, Pin, Status
from kiln.wheelhouse.scheduler import INTERRUPTED, Event, schedule
from tests.helpers import HANG_GUARD_SECONDS


def spec(node: str) -> JobSpec:
    return JobSpec(
        node=node, name=node, version="1.0", source="/src", outdir="/out", cache_dir="/c"
    )


def built(node: str) -> JobResult:
    return JobResult(node=node, ok=True, wheel=f"/out/{node}-1.0-py3-none-any.whl")


def failed(node: str) -> JobResult:
    return JobResult(node=node, ok=False, exit_code=1, error=f"{node}: the backend failed")


class FakeExecutor:
    """Jobs in memory. ``ends`` maps a node to its result, given as the job starts
    (the job ends at once); every other job runs until :meth:`end` ends it."""

    def __init__(self, ends: Mapping[str, JobResult | Exception] | None = None) -> None:
        self.ends = dict(ends or {})
        self.futures: dict[str, Future[JobResult]] = {}
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.most_at_once = 0
        self.lock = threading.Lock()
        # What a job that is cancelled ends with (default: a cancelled result).
        self.on_cancel: Callable[[str], JobResult] = lambda node: JobResult(
            node=node, ok=False, exit_code=130, error="cancelled"
        )

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        future: Future[JobResult] = Future()
        future.set_running_or_notify_cancel()
        with self.lock:
            self.futures[spec.node] = future
            self.started.append(spec.node)
            self.most_at_once = max(self.most_at_once, len(self.running()))
        end = self.ends.get(spec.node)
        if isinstance(end, Exception):
            future.set_exception(end)
        elif end is not None:
            future.set_result(end)
        return future

    def running(self) -> set[str]:
        return {node for node, future in self.futures.items() if not future.done()}

    def end(self, node: str, result: JobResult | None = None) -> None:
        self.futures[node].set_result(result or built(node))

    def cancel(self, futures: Collection[Future[JobResult]]) -> None:
        for node, future in list(self.futures.items()):
            if future in futures and not future.done():
                self.cancelled.append(node)
                future.set_result(self.on_cancel(node))

    def close(self) -> None:
        pass

    def wait_until_running(self, *nodes: str) -> None:
        """Wait until exactly ``nodes`` run (the scheduler is in another thread)."""
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while True:
            with self.lock:
                if self.running() == set(nodes):
                    return
            assert time.monotonic() < deadline, f"running {self.running()}, not {set(nodes)}"
            time.sleep(0.01)


class InBackground:
    """``schedule`` in a thread of its own, so that the test can play the executor."""

    def __init__(self, deps: Mapping[str, Collection[str]], executor: FakeExecutor, **kw: Any):
        self.events: list[Event] = []
        self.outcomes: dict[str, Outcome] = {}
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.outcomes = schedule(
                    deps, spec, executor, on_event=self.events.append, **{"jobs": 2, **kw}
                )
            except BaseException as error:
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> dict[str, Outcome]:
        self.thread.join(HANG_GUARD_SECONDS)
        assert not self.thread.is_alive(), "the scheduler never returned"
        if self.error is not None:
            raise self.error
        return self.outcomes


def statuses(outcomes: Mapping[str, Outcome]) -> dict[str, str]:
    return {node: outcome.status.value for node, outcome in outcomes.items()}


# --------------------------------------------------------------------------- order


def test_a_build_dependency_is_built_before_every_node_that_needs_it() -> None:
    deps = {"app": ["lib", "tool"], "lib": ["tool"], "tool": ["base"], "base": [], "x": []}
    executor = FakeExecutor({n: built(n) for n in deps})
    outcomes = schedule(deps, spec, executor, jobs=1)

    order = executor.started
    assert sorted(order) == sorted(deps)
    for user, needs in deps.items():
        for dep in needs:
            assert order.index(dep) < order.index(user), order
    assert statuses(outcomes) == dict.fromkeys(deps, "built")
    assert list(outcomes) == list(deps)  # in the given order
    assert outcomes["app"].result == built("app")


def test_the_ready_node_most_others_wait_for_starts_first() -> None:
    # "leaf" and "base" are ready at once; "base" unblocks three nodes, "leaf" none;
    # then "a" (which "b" waits for) before the others, which are taken in order.
    deps = {"leaf": [], "base": [], "a": ["base"], "b": ["a"], "c": ["base"]}
    executor = FakeExecutor({n: built(n) for n in deps})
    schedule(deps, spec, executor, jobs=1)
    assert executor.started == ["base", "a", "leaf", "b", "c"]


def test_a_ready_node_starts_while_an_unrelated_slow_one_still_runs() -> None:
    # Not rounds: "user" needs only "quick", so it must not wait for "slow".
    deps = {"slow": [], "quick": [], "user": ["quick"]}
    executor = FakeExecutor()
    run = InBackground(deps, executor, jobs=2)

    executor.wait_until_running("slow", "quick")
    executor.end("quick")
    executor.wait_until_running("slow", "user")
    executor.end("user")
    executor.wait_until_running("slow")
    executor.end("slow")

    assert statuses(run.result()) == dict.fromkeys(deps, "built")
    assert executor.started == ["quick", "slow", "user"]


def test_no_more_than_jobs_run_at_once() -> None:
    deps: dict[str, list[str]] = {n: [] for n in "abcde"}
    executor = FakeExecutor()
    run = InBackground(deps, executor, jobs=2)
    executor.wait_until_running("a", "b")
    for ended, running in [("b", "ac"), ("a", "cd"), ("c", "de"), ("d", "e"), ("e", "")]:
        executor.end(ended)
        executor.wait_until_running(*running)
    assert statuses(run.result()) == dict.fromkeys(deps, "built")
    assert executor.most_at_once == 2


def test_events_tell_each_start_and_outcome_with_the_counts() -> None:
    deps = {"a": [], "b": ["a"]}
    events: list[Event] = []
    schedule(deps, spec, FakeExecutor({n: built(n) for n in deps}), jobs=1, on_event=events.append)
    assert [(e.kind, e.node, e.running, e.done, e.total) for e in events] == [
        ("started", "a", 1, 0, 2),
        ("finished", "a", 0, 1, 2),
        ("started", "b", 1, 1, 2),
        ("finished", "b", 0, 2, 2),
    ]
    assert events[1].outcome is not None and events[1].outcome.status is Status.BUILT
    # A started event carries its job, so that a progress display can find its status.
    assert events[0].spec == spec("a") and events[1].spec is None


def test_a_dependency_outside_the_mapping_is_taken_as_there_already() -> None:
    executor = FakeExecutor({"app": built("app")})
    outcomes = schedule({"app": ["cached-elsewhere"]}, spec, executor, jobs=1)
    assert statuses(outcomes) == {"app": "built"}


# --------------------------------------------------------------------------- cycles and seeds


def test_a_cycle_is_refused_before_any_job_starts() -> None:
    executor = FakeExecutor()
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        schedule({"a": ["b"], "b": ["a"], "c": []}, spec, executor, jobs=2)
    assert executor.started == []


def test_a_seeded_cycle_builds_every_other_node_in_order() -> None:
    def node(name: str, *needs: str, kind: NodeKind = NodeKind.BUILD) -> Node:
        return Node(Pin(name, "1"), "py", kind=kind, build_deps=tuple(f"{n}==1@py" for n in needs))

    # flit-core builds itself; wheel needs flit-core; app needs wheel.
    graph = Graph(
        [
            node("app", "wheel", kind=NodeKind.RUNTIME),
            node("wheel", "flit-core"),
            node("flit-core", "flit-core"),
        ]
    )
    [(seed, cycle)] = graph.break_cycles()
    assert (seed, cycle) == ("flit-core==1@py", ["flit-core==1@py"])
    executor = FakeExecutor({n.id: built(n.id) for n in graph})
    outcomes = schedule(graph.to_build(), spec, executor, jobs=2)
    assert executor.started == ["wheel==1@py", "app==1@py"]  # the seed is not built
    assert statuses(outcomes) == {"app==1@py": "built", "wheel==1@py": "built"}


# --------------------------------------------------------------------------- failures


def test_a_failure_blocks_the_nodes_that_need_it_and_the_rest_is_built() -> None:
    deps = {"base": [], "broken": ["base"], "user": ["broken"], "user2": ["user"], "other": []}
    executor = FakeExecutor({**{n: built(n) for n in deps}, "broken": failed("broken")})
    events: list[Event] = []
    outcomes = schedule(deps, spec, executor, jobs=2, on_event=events.append)

    assert statuses(outcomes) == {
        "base": "built",
        "broken": "failed",
        "user": "blocked",
        "user2": "blocked",
        "other": "built",
    }
    assert outcomes["broken"].result == failed("broken")
    assert outcomes["user2"].reason == outcomes["user"].reason == "broken"
    assert "user" not in executor.started and "user2" not in executor.started
    assert {e.node for e in events if e.kind == "finished"} == set(deps)


def test_a_job_that_cannot_be_made_or_run_is_a_failure_not_an_exception() -> None:
    def start(node: str) -> JobSpec:
        if node == "unpatchable":
            raise ConfigError("patch fix.patch does not apply to unpatchable")
        return spec(node)

    deps = {"unpatchable": [], "lost": [], "user": ["lost"], "fine": []}
    executor = FakeExecutor({"lost": OSError("worker lost"), "fine": built("fine")})
    outcomes = schedule(deps, start, executor, jobs=2)

    assert statuses(outcomes) == {
        "unpatchable": "failed",
        "lost": "failed",
        "user": "blocked",
        "fine": "built",
    }
    unpatchable = outcomes["unpatchable"].result
    assert unpatchable is not None
    assert (unpatchable.exit_code, unpatchable.error) == (
        2,
        "patch fix.patch does not apply to unpatchable",
    )
    lost = outcomes["lost"].result
    assert lost is not None and lost.error == "the job could not run: worker lost"


def test_finish_sees_every_result_and_may_refuse_a_wheel() -> None:
    seen: list[tuple[str, bool]] = []

    def finish(node: str, result: JobResult) -> bool:
        seen.append((node, result.ok))
        if node == "raises":
            raise KilnError(f"cannot store the wheel of {node}")
        return node != "refused"

    deps = {"kept": [], "refused": [], "raises": [], "broken": [], "user": ["refused"]}
    executor = FakeExecutor({**{n: built(n) for n in deps}, "broken": failed("broken")})
    outcomes = schedule(deps, spec, executor, jobs=1, finish=finish)

    assert statuses(outcomes) == {
        "kept": "built",
        "refused": "failed",
        "raises": "failed",
        "broken": "failed",
        "user": "blocked",
    }
    assert sorted(seen) == [("broken", False), ("kept", True), ("raises", True), ("refused", True)]
    raises = outcomes["raises"].result
    assert raises is not None and raises.error == "cannot store the wheel of raises"
    refused = outcomes["refused"].result
    assert refused is not None and not refused.ok and refused.wheel == built("refused").wheel


def test_finish_is_called_in_the_schedulers_thread() -> None:
    threads: set[threading.Thread] = set()

    def finish(node: str, result: JobResult) -> bool:
        threads.add(threading.current_thread())
        return True

    executor = FakeExecutor()
    run = InBackground({"a": [], "b": []}, executor, finish=finish)
    executor.wait_until_running("a", "b")
    executor.end("a")  # from this thread: the one the executor's jobs end in
    executor.end("b")
    run.result()
    assert threads == {run.thread}


def test_fail_fast_stops_the_running_jobs_and_cancels_the_rest() -> None:
    deps = {"broken": [], "slow": [], "user": ["broken"], "later": [], "after-slow": ["slow"]}
    executor = FakeExecutor()
    run = InBackground(deps, executor, jobs=2, fail_fast=True)
    executor.wait_until_running("broken", "slow")
    executor.end("broken", failed("broken"))
    outcomes = run.result()

    assert executor.cancelled == ["slow"]
    assert statuses(outcomes) == {
        "broken": "failed",
        "slow": "cancelled",
        "user": "blocked",
        "later": "cancelled",
        "after-slow": "cancelled",
    }
    assert outcomes["later"].reason == "fail-fast: broken failed"
    assert executor.started == ["broken", "slow"]


def test_without_fail_fast_the_same_failure_stops_nothing() -> None:
    deps: dict[str, list[str]] = {"broken": [], "slow": [], "later": []}
    executor = FakeExecutor({"later": built("later")})
    run = InBackground(deps, executor, jobs=2)
    executor.wait_until_running("broken", "slow")
    executor.end("broken", failed("broken"))
    executor.wait_until_running("slow")
    executor.end("slow")
    assert statuses(run.result()) == {"broken": "failed", "slow": "built", "later": "built"}
    assert executor.cancelled == []


# --------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize(
    "interrupt",
    [KeyboardInterrupt(), Terminated(15, "SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupt_stops_every_job_cancels_every_node_and_propagates(
    interrupt: KeyboardInterrupt,
) -> None:
    deps = {"a": [], "b": [], "c": [], "user": ["a"]}
    executor = FakeExecutor()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if event.kind == "started" and event.node == "b":  # Ctrl-C with a and b running
            raise interrupt

    with pytest.raises(KeyboardInterrupt) as raised:
        schedule(deps, spec, executor, jobs=2, on_event=on_event)

    assert raised.value is interrupt
    assert sorted(executor.cancelled) == ["a", "b"]
    assert executor.running() == set()
    finished = {e.node: e.outcome for e in events if e.kind == "finished"}
    assert {n: o.status.value for n, o in finished.items() if o} == dict.fromkeys(deps, "cancelled")
    assert {o.reason for o in finished.values() if o} == {INTERRUPTED}


def test_a_job_that_ended_before_the_interrupt_stopped_it_keeps_its_wheel() -> None:
    kept: list[str] = []
    executor = FakeExecutor()
    # "a" finished just as the interrupt came: its result wins over the cancellation.
    executor.on_cancel = lambda node: built(node) if node == "a" else failed(node)

    def finish(node: str, result: JobResult) -> bool:
        if result.ok:
            kept.append(node)
        return True

    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if event.kind == "started" and event.node == "b":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        schedule({"a": [], "b": []}, spec, executor, jobs=2, on_event=on_event, finish=finish)
    assert kept == ["a"]
    outcomes = {e.node: e.outcome.status.value for e in events if e.outcome}
    assert outcomes == {"a": "built", "b": "cancelled"}


# ---------------------------------------------------------------- executor's choice


class PreferringExecutor(FakeExecutor):
    """Every job ends at once; prefers the ready job named in ``liked`` (else the first)."""

    def __init__(self, liked: set[str]) -> None:
        super().__init__()
        self.liked = liked
        self.offers: list[list[str]] = []

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        self.ends[spec.node] = built(spec.node)
        return super().submit(spec)

    def prefer(self, specs: Any) -> int:
        names = [s.node for s in specs]
        self.offers.append(names)
        return next((i for i, n in enumerate(names) if n in self.liked), 0)


def test_an_executor_with_a_preference_chooses_among_the_ready_jobs() -> None:
    deps: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    executor = PreferringExecutor({"c"})
    made: list[str] = []

    def start(node: str) -> JobSpec:
        made.append(node)
        return spec(node)

    outcomes = schedule(deps, start, executor, jobs=1)
    assert executor.started == ["c", "a", "b"]
    assert executor.offers[0] == ["a", "b", "c"]  # the scheduler's order
    assert sorted(made) == ["a", "b", "c"]  # each job made once
    assert statuses(outcomes) == dict.fromkeys(deps, "built")


def test_a_job_the_executor_never_prefers_is_not_starved() -> None:
    from kiln.wheelhouse.scheduler import CHOICE_WINDOW

    # "first" is the most waited-for, but the executor always likes another job.
    others = [f"n{i}" for i in range(CHOICE_WINDOW * 3)]
    deps: dict[str, list[str]] = {"first": [], **{n: [] for n in others}}
    executor = PreferringExecutor(set(others))
    schedule(deps, spec, executor, jobs=1)
    assert executor.started.index("first") == CHOICE_WINDOW


def test_an_executor_that_prefers_the_first_keeps_the_schedulers_order() -> None:
    from kiln.wheelhouse.scheduler import CHOICE_WINDOW

    deps: dict[str, list[str]] = {f"n{i:02}": [] for i in range(CHOICE_WINDOW * 3)}
    executor = PreferringExecutor(set())
    schedule(deps, spec, executor, jobs=1)
    assert executor.started == list(deps)


def test_a_job_that_cannot_be_made_fails_while_the_executor_chooses() -> None:
    deps: dict[str, list[str]] = {"bad": [], "good": [], "user": ["bad"]}
    executor = PreferringExecutor({"good"})

    def start(node: str) -> JobSpec:
        if node == "bad":
            raise ConfigError("bad: no such backend")
        return spec(node)

    outcomes = schedule(deps, start, executor, jobs=1)
    assert statuses(outcomes) == {"bad": "failed", "good": "built", "user": "blocked"}
    assert executor.started == ["good"]


def test_without_a_preference_the_executor_is_offered_nothing() -> None:
    deps: dict[str, list[str]] = {"a": [], "b": []}
    executor = FakeExecutor({n: built(n) for n in deps})
    made: list[str] = []

    def start(node: str) -> JobSpec:
        made.append(node)
        return spec(node)

    schedule(deps, start, executor, jobs=1)
    assert not hasattr(executor, "prefer") and made == executor.started == ["a", "b"]
