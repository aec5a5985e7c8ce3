"""Connecting to the cluster while the run decides (kiln.wheelhouse.run.BackgroundConnection)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from kiln.errors import EXIT_ENVIRONMENT, KilnError
from kiln.wheelhouse import run as run_module
from kiln.wheelhouse.dask_executor import SchedulerUnreachableError
from kiln.wheelhouse.executors import Executor
from kiln.wheelhouse.graph import Graph
from kiln.wheelhouse.model import JobResult, JobSpec, Node, Pin, Provenance, Status
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.run import BackgroundConnection, build_wheelhouse
from kiln.wheelhouse.settings import load_settings
from kiln.wheelhouse.tree import PlannedNode, TreePlan
from tests.helpers import target_interpreter

# A safety net for a broken test, not a speed limit: these waits end at once when it works.
NEVER = 60.0


class FakeExecutor:
    """Runs nothing: each job fails at once. Remembers whether it was closed."""

    def __init__(self) -> None:
        self.closed = False
        self.submitted: list[str] = []

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        self.submitted.append(spec.node)
        future: Future[JobResult] = Future()
        future.set_result(JobResult(spec.node, False, error="fake", worker="w1"))
        return future

    def cancel(self, futures: Collection[Future[JobResult]]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Connector:
    """A connect function that waits for ``go`` (unless it is set) and tells when it began."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.began = threading.Event()
        self.go = threading.Event()
        self.error = error
        self.executor = FakeExecutor()
        self.addresses: list[str] = []

    def __call__(self, address: str) -> Executor:
        self.addresses.append(address)
        self.began.set()
        assert self.go.wait(NEVER)
        if self.error is not None:
            raise self.error
        return self.executor


def kiln_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kiln-connect"]


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    yield
    assert not kiln_threads()


def test_take_waits_for_the_connection_and_gives_its_executor() -> None:
    connector = Connector()
    connection = BackgroundConnection("tcp://farm:8786", connector)
    assert connector.began.wait(NEVER)  # it runs before anyone asks for it
    connector.go.set()
    assert connection.take() is connector.executor
    connection.abandon()  # taken: the taker closes it, not the connection
    assert connector.addresses == ["tcp://farm:8786"] and not connector.executor.closed


def test_the_connections_error_is_raised_by_take() -> None:
    connector = Connector(SchedulerUnreachableError("cannot reach tcp://farm:8786"))
    connector.go.set()
    connection = BackgroundConnection("tcp://farm:8786", connector)
    with pytest.raises(SchedulerUnreachableError, match="cannot reach") as raised:
        connection.take()
    assert raised.value.exit_code == SchedulerUnreachableError.exit_code
    connection.abandon()


def test_an_abandoned_connection_is_closed_once_it_is_made() -> None:
    connector = Connector()
    connection = BackgroundConnection("tcp://farm:8786", connector)
    assert connector.began.wait(NEVER)
    # Abandoned while still connecting: the thread closes what it then makes.
    releaser = threading.Timer(0.05, connector.go.set)
    releaser.start()
    connection.abandon()
    releaser.join()
    assert connector.executor.closed


def test_an_abandoned_connection_that_hangs_is_not_waited_for() -> None:
    # An unreachable scheduler: the run's own error (or its end) does not wait
    # for the connect timeout.
    connector = Connector()
    connection = BackgroundConnection("tcp://farm:8786", connector)
    assert connector.began.wait(NEVER)
    connection.abandon(wait=0.01)
    assert kiln_threads()  # still connecting: left to end on its own
    connector.go.set()
    for thread in kiln_threads():
        thread.join(NEVER)
    assert connector.executor.closed  # closed by its own thread once made


# -- the run ------------------------------------------------------------------


def plan_of(provenance: Provenance) -> TreePlan:
    interpreter = target_interpreter()
    settings = load_settings(None, environ={})
    node = Node(pin=Pin(name="a", version="1.0"), python=interpreter.key, provenance=provenance)
    graph = Graph()
    graph.add(node)
    planned = PlannedNode(node, interpreter, settings.settings_for("a", "1.0"))
    planned.key = "a" * 64
    return TreePlan(graph, {node.id: planned})


def run_with(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connector: Connector,
    decide: BaseException | TreePlan,
) -> run_module.WheelhouseResult:
    """A run against ``--scheduler`` whose deciding gives ``decide`` (or raises it),
    checked to happen while the connection is being made."""

    def fake_decide(self: object) -> TreePlan:
        assert connector.began.wait(NEVER)  # connecting began before deciding ended
        connector.go.set()
        if isinstance(decide, BaseException):
            raise decide
        return decide

    def fake_job_spec(self: object, node_id: str) -> JobSpec:
        return JobSpec(node=node_id, name="a", version="1.0", source="", outdir="", cache_dir="")

    monkeypatch.setattr(run_module, "connect_cluster", connector)
    monkeypatch.setattr(run_module._Run, "_decide", fake_decide)
    monkeypatch.setattr(run_module._Run, "_job_spec", fake_job_spec)
    request = WheelhouseRequest(
        requirements=("a",),
        outdir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        scheduler="tcp://farm:8786",
    )
    return build_wheelhouse(request, environ={})


def test_the_run_builds_on_the_cluster_it_connected_to_while_deciding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = Connector()
    result = run_with(tmp_path, monkeypatch, connector, plan_of(Provenance.SOURCE))
    assert connector.executor.submitted == ["a==1.0@" + target_interpreter().key]
    assert result.count(Status.FAILED) == 1
    assert connector.executor.closed  # the run closes it when the builds are done


def test_the_report_records_the_clusters_slots_as_the_runs_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without -j a cluster runs as many jobs at once as its workers' slots, not as
    # many as the client machine has cores.
    import json

    connector = Connector()
    connector.executor.slots = 7  # type: ignore[attr-defined]
    result = run_with(tmp_path, monkeypatch, connector, plan_of(Provenance.SOURCE))
    assert result.jobs == 7
    assert result.report is not None
    assert json.loads(result.report.read_text())["run"]["jobs"] == 7


def test_with_nothing_to_build_the_connection_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = Connector()
    result = run_with(tmp_path, monkeypatch, connector, plan_of(Provenance.SKIP))
    assert result.count(Status.SKIPPED) == 1
    assert connector.executor.closed and not connector.executor.submitted


def test_an_interrupt_while_deciding_closes_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = Connector()
    with pytest.raises(KeyboardInterrupt):
        run_with(tmp_path, monkeypatch, connector, KeyboardInterrupt())
    assert connector.executor.closed


def test_a_connection_error_is_raised_after_deciding_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = SchedulerUnreachableError("cannot reach the Dask scheduler at tcp://farm:8786")
    connector = Connector(unreachable)
    with pytest.raises(KilnError) as raised:
        run_with(tmp_path, monkeypatch, connector, plan_of(Provenance.SOURCE))
    assert raised.value is unreachable and raised.value.exit_code == EXIT_ENVIRONMENT
