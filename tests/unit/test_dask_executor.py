"""The Dask executor's parts that need no cluster: shipping a job, the worker's
environment, the identity check, the warm-worker choice, the missing extra."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kiln.errors import UsageError
from kiln.wheelhouse import dask_executor
from kiln.wheelhouse.dask_executor import (
    DaskExecutor,
    DaskMissingError,
    WorkerMismatchError,
    environment_key,
    identity,
    mismatch,
    ship,
    worker_environ,
)
from kiln.wheelhouse.model import JobSpec
from kiln.wheelhouse.request import WheelhouseRequest


def test_the_same_identity_is_no_mismatch() -> None:
    assert mismatch(identity(), identity()) is None


def test_a_mismatch_names_what_differs_and_the_clients_own() -> None:
    mine = {"kiln": "1.0", "python": "cpython 3.12.1", "platform": "linux-x86_64"}
    theirs = {**mine, "python": "cpython 3.11.9"}
    assert mismatch(mine, theirs) == "python cpython 3.11.9 (the client: cpython 3.12.1)"


def test_the_worker_keeps_its_machine_paths_and_takes_the_jobs_settings() -> None:
    job = {
        "PATH": "/client/bin",
        "HOME": "/client/home",
        "KILN_CACHE_DIR": "/client/cache",
        "CCACHE_DIR": "/client/ccache",
        "SSH_AUTH_SOCK": "/client/agent",
        "CFLAGS": "-O2",
        "UV_FIND_LINKS": "/client/cache/wheelhouse-v1/run-1/jobs/x/wheels",
        "UV_DEFAULT_INDEX": "file:///client/cache/wheelhouse-v1/empty-index",
    }
    worker = {"PATH": "/worker/bin", "HOME": "/worker/home", "CCACHE_DIR": "/w/ccache"}
    renames = {
        "/client/cache/wheelhouse-v1/run-1/jobs/x": "/w/cache/wheelhouse-v1/run-9/jobs/job",
        "/client/cache": "/w/cache",
    }
    environ = worker_environ(job, worker, renames)
    assert environ["PATH"] == "/worker/bin"
    assert environ["HOME"] == "/worker/home"
    assert environ["CCACHE_DIR"] == "/w/ccache"
    assert "KILN_CACHE_DIR" not in environ and "SSH_AUTH_SOCK" not in environ
    assert environ["CFLAGS"] == "-O2"
    assert environ["UV_FIND_LINKS"] == "/w/cache/wheelhouse-v1/run-9/jobs/job/wheels"
    assert environ["UV_DEFAULT_INDEX"] == "file:///w/cache/wheelhouse-v1/empty-index"


def _job(tmp_path: Path, source: Path) -> JobSpec:
    place = tmp_path / "client-cache" / "wheelhouse-v1" / "run-1" / "jobs" / "pkg"
    (place / "out").mkdir(parents=True)
    (place / "wheels").mkdir()
    (place / "wheels" / "dep-1.0-py3-none-any.whl").write_bytes(b"a wheel")
    constraints = place / "build-env.txt"
    constraints.write_text("flit-core==3.9.0\n")
    return JobSpec(
        node="pkg==1.0@cp3",
        name="pkg",
        version="1.0",
        source=str(source),
        outdir=str(place / "out"),
        cache_dir=str(tmp_path / "client-cache"),
        python=str(tmp_path / "no-such-python"),
        constraints=(str(constraints),),
        environ={"UV_FIND_LINKS": str(place / "wheels"), "PATH": "/client/bin"},
    )


def test_a_shipped_directory_lands_at_a_stable_path_with_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "patched" / "pkg-1.0"
    source.mkdir(parents=True)
    (source / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    spec = _job(tmp_path, source)
    shipment = ship(spec)
    assert shipment.source_is_directory
    assert shipment.links == {"dep-1.0-py3-none-any.whl": b"a wheel"}
    monkeypatch.setattr(dask_executor, "_cpu_share", lambda: 3)
    monkeypatch.setenv("PATH", "/worker/bin")
    cache = tmp_path / "worker-cache"
    (cache / "wheelhouse-v1").mkdir(parents=True)
    places = [cache / "wheelhouse-v1" / "run-2" / "jobs" / "job", cache / "other" / "job"]
    local = [dask_executor._unpack_shipment(shipment, spec, p, cache) for p in places]
    first, second = local
    # The same content unpacks once, at one path: the compiler cache sees one source.
    assert first.source == second.source
    assert Path(first.source).is_relative_to(cache)
    assert (Path(first.source) / "pyproject.toml").read_text() == "[project]\nname = 'pkg'\n"
    assert first.cache_dir == str(cache) and first.cpu_share == 3
    assert first.python is None and first.interpreter is None  # no such path here
    assert Path(first.outdir).is_dir() and not any(Path(first.outdir).iterdir())
    assert Path(first.constraints[0]).read_text() == "flit-core==3.9.0\n"
    links = places[0] / "wheels"
    assert first.environ["UV_FIND_LINKS"] == str(links)
    assert (links / "dep-1.0-py3-none-any.whl").read_bytes() == b"a wheel"
    assert first.environ["PATH"] == "/worker/bin"


@pytest.mark.parametrize("name", ["../../escape.tar.gz", "", "..", "a/b.tar.gz"])
@pytest.mark.parametrize("directory", [False, True])
def test_a_shipped_source_name_that_is_a_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, directory: bool
) -> None:
    # The worker writes the source under its own cache by that name: never elsewhere.
    sdist = tmp_path / "pkg-1.0.tar.gz"
    sdist.write_bytes(b"an sdist")
    spec = _job(tmp_path, sdist)
    shipment = replace(ship(spec), source_name=name, source_is_directory=directory)
    monkeypatch.setattr(dask_executor, "_cpu_share", lambda: 1)
    cache = tmp_path / "worker-cache"
    (cache / "wheelhouse-v1").mkdir(parents=True)
    place = cache / "wheelhouse-v1" / "run-2" / "jobs" / "job"
    with pytest.raises(dask_executor.WorkerRefused, match="not a file name"):
        dask_executor._unpack_shipment(shipment, spec, place, cache)
    assert not (tmp_path / "escape.tar.gz").exists()


def test_an_sdist_ships_as_its_bytes(tmp_path: Path) -> None:
    sdist = tmp_path / "pkg-1.0.tar.gz"
    sdist.write_bytes(b"sdist bytes")
    shipment = ship(_job(tmp_path, sdist))
    assert (shipment.source_name, shipment.source) == ("pkg-1.0.tar.gz", b"sdist bytes")
    assert not shipment.source_is_directory


def test_the_same_build_pins_are_the_same_environment(tmp_path: Path) -> None:
    sdist = tmp_path / "pkg-1.0.tar.gz"
    sdist.write_bytes(b"")
    spec = _job(tmp_path, sdist)
    other = tmp_path / "other.txt"
    other.write_text("setuptools==80\n")
    assert environment_key(spec) == environment_key(spec)
    changed = JobSpec(**{**spec.to_json(), "constraints": (str(other),)})
    assert environment_key(changed) != environment_key(spec)


def test_without_dask_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(DaskMissingError, match=r"kiln-build\[dask\]") as raised:
        dask_executor.connect("tcp://127.0.0.1:8786")
    assert isinstance(raised.value, UsageError)


def test_kiln_scheduler_names_the_cluster() -> None:
    request = WheelhouseRequest(requirements=("six",))
    filled = request.with_environment_defaults({"KILN_SCHEDULER": "tcp://farm:8786"})
    assert filled.scheduler == "tcp://farm:8786"
    explicit = WheelhouseRequest(requirements=("six",), scheduler="tcp://mine:1")
    assert explicit.with_environment_defaults({"KILN_SCHEDULER": "x"}).scheduler == "tcp://mine:1"


class FakeClient:
    """Just the calls the executor makes before it submits anything."""

    def __init__(
        self, answers: dict[str, dict[str, str] | Exception], busy: dict[str, int]
    ) -> None:
        self.answers = answers
        self.busy = busy
        self.calls: list[str] = []

    def wait_for_workers(self, n: int, timeout: float) -> None:
        pass

    def run(self, function: Any, *args: Any, on_error: str = "raise") -> dict[str, Any]:
        """As Dask's: a worker's exception is raised, unless on_error="return"."""
        failed = [a for a in self.answers.values() if isinstance(a, Exception)]
        if failed and on_error == "raise":
            raise failed[0]
        return self.answers

    def scheduler_info(self, n_workers: int) -> dict[str, Any]:
        self.calls.append("scheduler_info")
        return {
            "workers": {
                address: {"name": address[-1], "resources": {"kiln": 2}, "nthreads": 4}
                for address in self.answers
            }
        }

    def processing(self, workers: list[str]) -> dict[str, tuple[str, ...]]:
        self.calls.append("processing")
        return {w: ("task",) * self.busy.get(w, 0) for w in workers}


def test_a_worker_with_another_python_is_refused_before_any_job() -> None:
    other = {**identity(), "python": "cpython 3.0.1"}
    client = FakeClient({"tcp://h:1": identity(), "tcp://h:2": other}, {})
    with pytest.raises(WorkerMismatchError, match=r"tcp://h:2 runs python cpython 3\.0\.1"):
        DaskExecutor(client)


def test_a_worker_that_cannot_run_kiln_is_refused_by_name() -> None:
    # Its kiln is missing (or broken): Dask's own exception would end the run with
    # a traceback.
    client = FakeClient(
        {"tcp://h:1": identity(), "tcp://h:2": ImportError("No module named 'kiln'")}, {}
    )
    with pytest.raises(WorkerMismatchError, match=r"tcp://h:2 cannot run kiln: .*'kiln'"):
        DaskExecutor(client)


def test_the_warm_worker_is_preferred_only_while_it_has_a_free_slot() -> None:
    client = FakeClient({"tcp://h:1": identity(), "tcp://h:2": identity()}, {})
    executor = DaskExecutor(client)
    assert executor.resources == {"kiln": 1} and executor.slots == 4
    assert executor._free_warm_worker("env") is None  # nobody built it yet
    executor._warm["env"] = "tcp://h:1"
    assert executor._free_warm_worker("env") == "tcp://h:1"
    client.busy["tcp://h:1"] = 2  # both of its slots taken: any worker will do
    assert executor._free_warm_worker("env") is None


def test_the_workers_are_asked_for_again_only_when_one_is_unknown() -> None:
    client = FakeClient({"tcp://h:1": identity(), "tcp://h:2": identity()}, {})
    executor = DaskExecutor(client)
    client.calls.clear()
    executor._warm["env"] = "tcp://h:1"
    assert executor._free_warm_worker("env") == "tcp://h:1"
    assert executor._address_of("2") == "tcp://h:2"  # by its name
    assert client.calls == ["processing"]  # what the connection learnt is enough
    client.answers["tcp://h:3"] = identity()  # a worker joins
    assert executor._address_of("tcp://h:3") == "tcp://h:3"
    assert client.calls == ["processing", "scheduler_info"]


def test_a_ready_worker_has_asked_the_clients_interpreter_already(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kiln import interpreters

    asked: list[Path] = []
    monkeypatch.setattr(interpreters, "query", asked.append)
    assert dask_executor.ready_worker(sys.executable) == identity()
    assert asked == [Path(sys.executable)]
    assert dask_executor.ready_worker("/no/such/python") == identity()
    assert asked == [Path(sys.executable)]


def _client_python_job(interpreter: dict[str, Any]) -> JobSpec:
    """A job whose client builds with this machine's ``sys.executable``, for
    ``interpreter``."""
    return JobSpec(
        node="pkg==1.0@cp3",
        name="pkg",
        version="1.0",
        source="/client/pkg-1.0.tar.gz",
        outdir="/client/out",
        cache_dir="/client/cache",
        python=sys.executable,
        interpreter=interpreter,
    )


def test_a_worker_without_the_clients_interpreter_refuses_the_job() -> None:
    from kiln.interpreters import find_interpreter, to_json

    mine = to_json(find_interpreter(sys.executable, os.environ))
    spec = _client_python_job(mine)
    here = dask_executor._worker_python(spec)
    assert here["interpreter"]["version"] == mine["version"] and here["python"]
    elsewhere = JobSpec(**{**spec.to_json(), "interpreter": {**mine, "platform": "other-arch"}})
    with pytest.raises(dask_executor.WorkerRefused, match="other-arch"):
        dask_executor._worker_python(elsewhere)


def test_the_scheduler_option_reaches_the_request() -> None:
    from kiln.wheelhouse_command import build_parser, request_from_args

    args = build_parser().parse_args(["six", "--scheduler", "tcp://farm:8786"])
    assert request_from_args(args).scheduler == "tcp://farm:8786"


def test_a_free_worker_takes_a_job_warm_there_else_the_first(tmp_path: Path) -> None:
    client = FakeClient({"tcp://h:1": identity(), "tcp://h:2": identity()}, {})
    executor = DaskExecutor(client)

    def job(name: str, pins: str) -> JobSpec:
        constraints = tmp_path / f"{name}.txt"
        constraints.write_text(pins)
        return JobSpec(
            node=name,
            name=name,
            version="1",
            source="",
            outdir="",
            cache_dir="",
            constraints=(str(constraints),),
        )

    on_busy, on_free, cold = (
        job("x", "flit-core==3\n"),
        job("y", "hatchling==1\n"),
        job("z", "setuptools==80\n"),
    )
    executor._warm[dask_executor.environment_key(on_busy)] = "tcp://h:1"
    executor._warm[dask_executor.environment_key(on_free)] = "tcp://h:2"
    client.busy["tcp://h:1"] = 2  # both of its slots taken
    assert executor.prefer([on_busy, cold, on_free]) == 2
    # A cold job does not overtake the first (a long build may head the queue).
    assert executor.prefer([on_busy, cold]) == 0
    assert executor.prefer([on_busy]) == 0  # a free worker still takes it
    assert executor.prefer([cold, on_busy]) == 0  # nothing warm anywhere free: the order


@pytest.mark.parametrize(
    "address", ["foo", "", "http://farm:8786", "tcp://farm", "tcp://farm:port", "tcp://:8786"]
)
def test_a_malformed_scheduler_address_is_bad_usage_before_anything_runs(address: str) -> None:
    # Dask itself raises a bare ValueError for these, from deep in its connect.
    with pytest.raises(UsageError, match="--scheduler"):
        WheelhouseRequest(requirements=("six",), scheduler=address)
    with pytest.raises(UsageError, match="KILN_SCHEDULER"):
        WheelhouseRequest(requirements=("six",)).with_environment_defaults(
            {"KILN_SCHEDULER": address or " "}
        )


@pytest.mark.parametrize(
    "address", ["tcp://farm.example:8786", "farm:8786", "tls://10.0.0.7:8786", "tcp://[::1]:8786"]
)
def test_a_scheduler_address_dask_takes_is_taken(address: str) -> None:
    assert WheelhouseRequest(requirements=("six",), scheduler=address).scheduler == address


def _project_with_a_venv(tmp_path: Path) -> Path:
    """A project directory as people have them: a virtualenv inside, whose python
    is a link to the machine's own (an absolute path), and an in-tree link."""
    project = tmp_path / "projects" / "pkg-1.0"
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    (project / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (project / "README").symlink_to("pyproject.toml")
    return project


def test_a_project_with_links_out_of_its_tree_unpacks_on_the_worker_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local build of it works: its links to the client's own files mean nothing
    # on a worker, and must not fail the job there.
    spec = _job(tmp_path, _project_with_a_venv(tmp_path))
    monkeypatch.setattr(dask_executor, "_cpu_share", lambda: 1)
    cache = tmp_path / "worker-cache"
    (cache / "wheelhouse-v1").mkdir(parents=True)
    place = cache / "wheelhouse-v1" / "run-2" / "jobs" / "job"
    local = dask_executor._unpack_shipment(ship(spec), spec, place, cache)
    source = Path(local.source)
    assert (source / "pyproject.toml").read_text() == "[project]\nname = 'pkg'\n"
    assert (source / "README").is_symlink() and (source / "README").read_text()
    assert not (source / ".venv" / "bin" / "python").is_symlink()


def test_a_shipped_directory_unpacks_on_a_python_without_extraction_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python before 3.10.12 and 3.11.4 (kiln supports them) has no filter= argument.
    import tarfile

    from kiln import sdist

    extractall = tarfile.TarFile.extractall

    def old_extractall(self: tarfile.TarFile, *args: Any, **kwargs: Any) -> None:
        if "filter" in kwargs:
            raise TypeError("extractall() got an unexpected keyword argument 'filter'")
        extractall(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    monkeypatch.setattr(sdist, "_HAS_FILTERS", False)
    monkeypatch.setattr(sdist, "_USE_DATA_FILTER", False)
    monkeypatch.setattr(dask_executor, "_cpu_share", lambda: 1)
    source = tmp_path / "patched" / "pkg-1.0"
    source.mkdir(parents=True)
    (source / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    spec = _job(tmp_path, source)
    cache = tmp_path / "worker-cache"
    (cache / "wheelhouse-v1").mkdir(parents=True)
    place = cache / "wheelhouse-v1" / "run-2" / "jobs" / "job"
    local = dask_executor._unpack_shipment(ship(spec), spec, place, cache)
    assert (Path(local.source) / "pyproject.toml").is_file()


class CancelledTask:
    """A distributed.Future the cluster cancelled (its scheduler went away, say)."""

    key = "kiln-job-pkg-0"

    def cancelled(self) -> bool:
        return True

    def result(self) -> Any:
        raise AssertionError("a cancelled task has no result")


def _sdist_spec(tmp_path: Path) -> JobSpec:
    sdist = tmp_path / "pkg-1.0.tar.gz"
    sdist.write_bytes(b"")
    return _job(tmp_path, sdist)


def test_a_job_the_cluster_cancelled_is_a_failure_of_the_cluster_not_a_ctrl_c(
    tmp_path: Path,
) -> None:
    from concurrent.futures import Future

    from kiln.errors import EXIT_ENVIRONMENT
    from kiln.wheelhouse.model import JobResult

    executor = DaskExecutor(FakeClient({"tcp://h:1": identity()}, {}))
    spec = _sdist_spec(tmp_path)
    outer: Future[JobResult] = Future()
    executor._futures[outer] = (CancelledTask(), spec)
    executor._complete(spec, "env", outer, CancelledTask(), 0.0)
    result = outer.result()
    assert not result.ok and result.exit_code == EXIT_ENVIRONMENT
    assert result.error is not None and "cluster" in result.error, result.error


def test_a_job_the_client_cancelled_is_cancelled(tmp_path: Path) -> None:
    from concurrent.futures import Future

    from kiln.wheelhouse.executors import cancelled_result
    from kiln.wheelhouse.model import JobResult

    executor = DaskExecutor(FakeClient({"tcp://h:1": identity()}, {}))
    spec = _sdist_spec(tmp_path)
    outer: Future[JobResult] = Future()
    # cancel() takes the job out of _futures before Dask's callback runs.
    executor._complete(spec, "env", outer, CancelledTask(), 0.0)
    assert outer.result() == cancelled_result(spec)


def test_a_worker_whose_python_at_the_clients_path_is_another_looks_for_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client's /usr/bin/python3 is 3.12, the worker's is 3.11 beside a python3.12:
    # the job builds with that one instead of being refused.
    from dataclasses import replace as replaced

    from kiln import interpreters
    from kiln.interpreters import find_interpreter, to_json

    here = find_interpreter(sys.executable, os.environ)
    wanted = replaced(here, version=(3, 99, 0), path=Path("/opt/py399/bin/python3.99"))

    def found(spec: str, environ: Any) -> interpreters.Interpreter:
        return wanted if spec == "3.99.0" else here

    monkeypatch.setattr(interpreters, "find_interpreter", found)
    # This machine has the client's path, with another Python there.
    spec = _client_python_job(to_json(wanted))
    assert dask_executor._worker_python(spec)["python"] == "/opt/py399/bin/python3.99"


@pytest.mark.parametrize("closing", ["closing", "closed", "failed"])
def test_a_worker_that_closes_stops_its_running_job(closing: str) -> None:
    # Dask stops the task's coroutine but not our thread, whose build would run
    # on (an hour for a large one) and keep the closed worker's process alive.
    from types import SimpleNamespace

    core = pytest.importorskip("distributed.core")
    task = SimpleNamespace(state="executing")
    worker = SimpleNamespace(status=core.Status.running, state=SimpleNamespace(tasks={"k": task}))
    assert dask_executor._still_wanted(worker, "k")  # type: ignore[arg-type]
    worker.status = core.Status[closing]
    assert not dask_executor._still_wanted(worker, "k")  # type: ignore[arg-type]
