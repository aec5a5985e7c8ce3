"""Jobs on a Dask cluster: :class:`DaskExecutor`, the remote side of the executor seam.

A job's :class:`JobSpec` names paths on the client's machine (the sdist, the
job's outdir and constraints, kiln's cache), which a worker does not have. So the
client ships what the job reads, as bytes, with the spec (a :class:`Shipment`):
the sdist (a directory source goes as a tar of it), the constraints files and
the wheels of the job's own find-links directory (``--build-deps source``). The
worker writes them into its own kiln cache (``$KILN_CACHE_DIR`` of the worker),
rewrites the spec's paths to its own, and runs the job there with a
:class:`LocalPool` of its own, as a local run does: environments and warm hook
workers are reused on that machine from job to job. The wheel comes back as
bytes; the client writes it into the job's outdir, and the run stores it as it
stores a local job's.

Faults: a package that fails to build is a failed result, never an exception,
so Dask does not run it again. A worker lost mid-job is Dask's to handle: the
scheduler runs the job again elsewhere (``distributed.scheduler.allowed-failures``
times); a job whose own process was killed on a living worker raises
:class:`JobLost`, which ``retries=`` covers. Nothing of a lost job reaches the
client: its bytes arrive with a finished result or not at all.

Before any job runs, every worker is asked which kiln and Python it runs: one
that differs from the client is refused (:class:`WorkerMismatchError`). A worker
that joins later is checked by the job itself, which then refuses to build.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import posixpath
import secrets
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.errors import EXIT_ENVIRONMENT, EXIT_USAGE, KilnError, UsageError
from kiln.wheelhouse.executors import cancelled_result
from kiln.wheelhouse.model import JobResult, JobSpec

if TYPE_CHECKING:
    import distributed

    from kiln.wheelhouse.executors import LocalPool

logger = logging.getLogger("kiln.wheelhouse")

# The worker resource a job takes one unit of: `dask worker --resources kiln=N` runs
# N jobs at once. Workers that declare none run one job per thread.
RESOURCE = "kiln"
# Runs of a job whose process died on a living worker (a lost worker is rescheduled
# by Dask itself, distributed.scheduler.allowed-failures times).
RETRIES = 2
# How long to wait for the scheduler to answer, and for a first worker to join.
CONNECT_SECONDS = 30.0
WORKERS_SECONDS = 60.0
# How often a running job looks whether the client still wants it.
POLL_SECONDS = 0.5
# Beyond the job's own grace period, how long a cancel waits for the workers.
STOP_MARGIN_SECONDS = 10.0
# The worker's own, never the client's: paths and settings of the machine itself.
MACHINE_LOCAL = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PWD",
        "OLDPWD",
        "HOSTNAME",
        "TERM",
        "TMPDIR",
        "TMP",
        "TEMP",
        "LANG",
        "LD_LIBRARY_PATH",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "PYTHONPATH",
        "PYTHONHOME",
        "KILN_CACHE_DIR",
        "CCACHE_DIR",
        "SCCACHE_DIR",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_RUNTIME_DIR",
        "UV_CACHE_DIR",
        "PIP_CACHE_DIR",
    }
)
MACHINE_LOCAL_PREFIXES = ("SSH_", "DASK_", "LC_")
# Where a worker keeps its jobs' files, in its cache (kiln.layout's convention).
WORKER_SOURCES = "dask-sources"


class DaskMissingError(UsageError):
    """``--scheduler`` without dask installed."""


class WorkerMismatchError(KilnError):
    """A worker runs another kiln or Python than the client."""

    exit_code = EXIT_USAGE


class WorkerRefused(Exception):
    """This worker cannot build the job for the client's interpreter."""


class JobLost(RuntimeError):
    """The job's process died on the worker without a result: run it again."""


def identity() -> dict[str, str]:
    """What a worker must share with the client to build the client's wheels."""
    import sysconfig

    from kiln import __version__

    return {
        "kiln": __version__,
        "python": f"{sys.implementation.name} {sys.version.split()[0]}",
        "platform": sysconfig.get_platform(),
    }


def ready_worker(python: str | None) -> dict[str, str]:
    """Run on every worker when the client connects: its :func:`identity`, once the
    worker has imported what a job runs with and asked ``python`` (the client's
    interpreter) what it is, if this machine has that file; the job's own
    check then finds the answer in this process (``kiln.interpreters`` keeps it).
    So a worker's first job does not pay for them, while the client still decides."""
    import importlib

    for module in _JOB_MODULES:
        importlib.import_module(module)
    if python is not None and Path(python).is_file():
        from kiln.interpreters import query

        query(Path(python))
    return identity()


# What run_on_worker imports, the first time at a cost of a tenth of a second or so.
_JOB_MODULES = (
    "kiln.cache",
    "kiln.interpreters",
    "kiln.layout",
    "kiln.locks",
    "kiln.options",
    "kiln.process",
    "kiln.removal",
    "kiln.wheelhouse.executors",
    "kiln.wheelhouse.indexes",
    "kiln.wheelhouse.run",
)


def mismatch(mine: Mapping[str, str], theirs: Mapping[str, str]) -> str | None:
    """How ``theirs`` differs from ``mine``, in words; None when it does not."""
    differences = [
        f"{what} {theirs.get(what)} (the client: {mine[what]})"
        for what in sorted(mine)
        if theirs.get(what) != mine[what]
    ]
    return ", ".join(differences) or None


@dataclass(frozen=True)
class Shipment:
    """A job as it crosses to a worker: the spec and the bytes of the files it reads."""

    spec: dict[str, Any]
    # The client's identity, which the worker checks before it builds.
    client: dict[str, str]
    # The source: an sdist's bytes, or a directory as a .tar.gz of it.
    source_name: str
    source: bytes
    source_is_directory: bool
    # Each constraints file's bytes, in the spec's order.
    constraints: list[bytes] = field(default_factory=list)
    # The job's own find-links directory (the tree's wheels), by file name.
    links: dict[str, bytes] = field(default_factory=dict)


def ship(spec: JobSpec) -> Shipment:
    """The shipment of ``spec``: what the worker needs of the client's files."""
    source = Path(spec.source)
    if source.is_dir():
        payload, name, directory = _tar_directory(source), f"{source.name}.tar.gz", True
    else:
        payload, name, directory = source.read_bytes(), source.name, False
    links: dict[str, bytes] = {}
    links_dir = _own_links_dir(spec)
    if links_dir is not None:
        links = {p.name: p.read_bytes() for p in sorted(links_dir.iterdir()) if p.is_file()}
    return Shipment(
        spec=spec.to_json(),
        client=identity(),
        source_name=name,
        source=payload,
        source_is_directory=directory,
        constraints=[Path(c).read_bytes() for c in spec.constraints],
        links=links,
    )


def _own_links_dir(spec: JobSpec) -> Path | None:
    """The find-links directory of the job's own (jobspecs makes it for
    ``--build-deps source``), beside its outdir."""
    links = Path(spec.outdir).parent / "wheels"
    return links if links.is_dir() else None


def _tar_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=directory.name, filter=_within(directory.name))
    return buffer.getvalue()


def _within(top: str) -> Callable[[tarfile.TarInfo], tarfile.TarInfo | None]:
    """A tar filter that leaves out links out of the tree (a virtualenv's python):
    they name the client's own files, which a worker neither has nor may unpack."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not info.issym():
            return info
        target = posixpath.normpath(posixpath.join(posixpath.dirname(info.name), info.linkname))
        if posixpath.isabs(info.linkname) or not target.startswith(f"{top}/"):
            logger.debug("%s: a link out of the project, not shipped", info.name)
            return None
        return info

    return keep


def environment_key(spec: JobSpec) -> str:
    """Which build environment a job needs: its interpreter and constraints (the
    exact build pins), so a worker that built the same set has it warm."""
    digest = hashlib.sha256(str(spec.python).encode())
    for path in spec.constraints:
        try:
            digest.update(Path(path).read_bytes())
        except OSError:
            digest.update(path.encode())
    return digest.hexdigest()


# -- the worker's side ----------------------------------------------------------

# The worker process's own pool, by process id (a forked copy makes its own).
_worker_pools: dict[int, LocalPool] = {}
_worker_pool_lock = threading.Lock()


def run_on_worker(shipment: Shipment) -> dict[str, Any]:
    """The task a worker runs: build the shipped job in this machine's kiln cache.

    Returns the result as plain data, with the wheel's bytes when it was built.
    Raises :class:`JobLost` when the job's process died without a result.
    """
    import distributed

    worker = distributed.get_worker()
    name = worker_label(worker)
    spec = JobSpec.from_json(shipment.spec)
    refused = mismatch(shipment.client, identity())
    if refused is not None:
        return _answer(_refused(spec, name, f"it runs {refused}"))
    from kiln.cache import Cache
    from kiln.layout import WHEELHOUSE_RUNS, lock_beside
    from kiln.locks import FileLock
    from kiln.removal import remove_tree
    from kiln.wheelhouse.executors import RESULT_FILE, job_dir
    from kiln.wheelhouse.indexes import EMPTY_INDEX
    from kiln.wheelhouse.run import new_run_dir

    cache_root = Cache.open(_worker_cache_dir()).root
    bucket = cache_root / WHEELHOUSE_RUNS
    place, place_lock = new_run_dir(bucket)
    shared = [FileLock(bucket / f"{label}.lock") for label in (WORKER_SOURCES, EMPTY_INDEX)]
    for lock in shared:
        lock.acquire_shared()
    try:
        try:
            local = _unpack_shipment(shipment, spec, place / "jobs" / "job", cache_root)
        except WorkerRefused as refusal:
            return _answer(_refused(spec, name, str(refusal)))
        pool = _pool(worker)
        future = pool.submit(local)
        key = worker.get_current_task()
        while not _wait(future, POLL_SECONDS):
            if not _still_wanted(worker, key):
                pool.cancel([future])
                break
        if future.cancelled():
            return _answer(cancelled_result(spec))
        result = replace(future.result(), worker=name)
        if not result.ok and not (job_dir(local) / RESULT_FILE).exists():
            raise JobLost(f"{spec.node}: the job's process on {name} died: {result.error}")
        return _answer(result)
    finally:
        remove_tree(place)
        place_lock.release()
        lock_beside(place).unlink(missing_ok=True)
        for lock in shared:
            lock.release()


def _running_keys(dask_worker: distributed.Worker) -> list[str]:
    """The tasks whose functions still run on this worker, cancelled ones included."""
    states = ("executing", "long-running", "cancelled")
    return [str(key) for key, task in dask_worker.state.tasks.items() if task.state in states]


def _refused(spec: JobSpec, worker: str, why: str) -> JobResult:
    """A job this worker must not build: a wheel for another interpreter never lands."""
    return JobResult(
        node=spec.node,
        ok=False,
        exit_code=EXIT_USAGE,
        error=f"worker {worker} refused the job: {why}",
        worker=worker,
    )


def worker_label(worker: distributed.Worker) -> str:
    """A worker's name as its operator gave it (``dask worker --name``), else its address."""
    name = worker.name
    return str(name) if name is not None and str(name) != worker.address else worker.address


def _worker_cache_dir() -> Path | None:
    """The worker's own kiln cache: its $KILN_CACHE_DIR, else its user's default."""
    from kiln.options import environment_defaults

    found: Path | None = environment_defaults({"cache_dir": None}, os.environ).get("cache_dir")
    return found


def _pool(worker: distributed.Worker) -> LocalPool:
    """This worker process's pool of job processes, as many as it runs tasks."""
    from kiln.wheelhouse.executors import LocalPool

    with _worker_pool_lock:
        pool = _worker_pools.get(os.getpid())
        if pool is None:
            pool = LocalPool(max(1, worker.state.nthreads, _slots_of(worker)))
            _worker_pools[os.getpid()] = pool
        return pool


def _slots_of(worker: distributed.Worker) -> int:
    return int(worker.state.total_resources.get(RESOURCE, worker.state.nthreads))


def _wait(future: Future[JobResult], seconds: float) -> bool:
    from concurrent.futures import wait

    done, _ = wait([future], timeout=seconds)
    return bool(done)


def _still_wanted(worker: distributed.Worker, key: object) -> bool:
    """Whether the task is still this worker's to run (the client may have cancelled
    it), on a worker that is not closing (its scheduler gone, or told to stop): Dask
    stops the task's coroutine then, but not the thread that runs the build."""
    from distributed.core import Status

    if worker.status in (Status.closing, Status.closed, Status.failed):
        return False
    task = worker.state.tasks.get(key)  # type: ignore[call-overload]
    return task is not None and task.state in ("executing", "long-running")


def _unpack_shipment(shipment: Shipment, spec: JobSpec, place: Path, cache_root: Path) -> JobSpec:
    """Write the shipment's files under ``place`` (the source at a stable path, so the
    compiler cache hits from job to job) and return the spec with this machine's paths."""
    place.mkdir(parents=True)
    if shipment.source_is_directory:
        source = _unpack_directory(shipment, cache_root)
    else:
        source = place / _plain_name(shipment.source_name)
        source.write_bytes(shipment.source)
    constraints = []
    for number, content in enumerate(shipment.constraints):
        path = place / f"constraints-{number}.txt"
        path.write_bytes(content)
        constraints.append(str(path))
    client_place = Path(spec.outdir).parent
    if shipment.links:
        links = place / "wheels"
        links.mkdir()
        for file_name, content in shipment.links.items():
            (links / Path(file_name).name).write_bytes(content)
    outdir = place / "out"
    outdir.mkdir()
    renames = {str(client_place): str(place), spec.cache_dir: str(cache_root)}
    environ = worker_environ(spec.environ, os.environ, renames)
    from kiln.layout import WHEELHOUSE_RUNS
    from kiln.wheelhouse.indexes import EMPTY_INDEX

    (cache_root / WHEELHOUSE_RUNS / EMPTY_INDEX).mkdir(exist_ok=True)
    return replace(
        spec,
        source=str(source),
        outdir=str(outdir),
        cache_dir=str(cache_root),
        **_worker_python(spec),
        constraints=tuple(constraints),
        environ=environ,
        cpu_share=_cpu_share(),
    )


def _plain_name(name: str) -> str:
    """A shipped file's name, used as a file name here: never a path."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise WorkerRefused(f"the shipped source's name {name!r} is not a file name")
    return name


def _unpack_directory(shipment: Shipment, cache_root: Path) -> Path:
    """A shipped directory (a project, or a patched sdist), unpacked once per content
    under the worker's cache, whole (a partial directory renamed into place)."""
    from kiln.layout import WHEELHOUSE_RUNS
    from kiln.removal import remove_tree
    from kiln.sdist import unpack_sdist

    digest = hashlib.sha256(shipment.source).hexdigest()[:16]
    stable = cache_root / WHEELHOUSE_RUNS / WORKER_SOURCES / digest
    top = stable / _plain_name(shipment.source_name).removesuffix(".tar.gz")
    if top.is_dir():
        return top
    stable.parent.mkdir(parents=True, exist_ok=True)
    partial = stable.with_name(f"{digest}.partial-{secrets.token_hex(4)}")
    archive = partial.with_name(f"{partial.name}-{shipment.source_name}")
    try:
        archive.write_bytes(shipment.source)
        # kiln's own checks (no link or path out of the directory), on every Python
        # kiln supports (tarfile's filters came in 3.10.12 and 3.11.4).
        unpack_sdist(archive, partial, needs_pkg_info=False)
        partial.rename(stable)
    except FileExistsError:
        pass  # another job unpacked the same content first
    except OSError as error:
        if not top.is_dir():
            raise
        logger.debug("%s: unpacked by another job meanwhile (%s)", top, error)
    finally:
        archive.unlink(missing_ok=True)
        if partial.exists():
            remove_tree(partial)
    return top


def worker_environ(
    job: Mapping[str, str], worker: Mapping[str, str], renames: Mapping[str, str]
) -> dict[str, str]:
    """The environment a shipped job builds with: the worker's own, with the job's
    variables over it, but the machine's own paths kept (PATH, HOME, TMPDIR, the
    caches...). The client's job and cache paths in the job's values are renamed
    to the worker's."""
    result = dict(worker)
    ordered = sorted(renames.items(), key=lambda item: -len(item[0]))  # the longest first
    for name, value in job.items():
        if name in MACHINE_LOCAL or name.startswith(MACHINE_LOCAL_PREFIXES):
            continue
        renamed = value
        for old, new in ordered:
            renamed = renamed.replace(old, new)
        result[name] = renamed
    return result


def _worker_python(spec: JobSpec) -> dict[str, Any]:
    """The interpreter the job builds with here (the spec's ``python`` and
    ``interpreter``): the client's path when this machine has the same Python
    there (the same image), else one found here by version; either way the same
    implementation, version and platform as the client's, or the job is refused
    (:class:`WorkerRefused`). Neither known: kiln's own, which the identity check
    made sure is the client's."""
    from kiln.interpreters import find_interpreter, to_json

    wanted = spec.interpreter
    candidates = [spec.python] if spec.python and Path(spec.python).is_file() else []
    if wanted:
        candidates.append(".".join(map(str, wanted["version"])))
    if not candidates:
        return {"python": None, "interpreter": None}
    refusals = []
    for candidate in candidates:
        try:
            found = find_interpreter(candidate, os.environ)
        except KilnError as error:
            refusals.append(f"it has no Python to build for: {error}")
            continue
        theirs = (list(found.version), found.implementation, found.platform)
        if wanted and theirs != (
            list(wanted["version"]),
            wanted["implementation"],
            wanted["platform"],
        ):
            refusals.append(
                f"its {found.describe()} on {found.platform} is not the client's "
                f"{wanted['implementation']} {'.'.join(map(str, wanted['version']))} "
                f"on {wanted['platform']}"
            )
            continue
        # Its answer goes with the job, which then need not ask it again.
        return {"python": str(found.path), "interpreter": to_json(found)}
    raise WorkerRefused("; ".join(dict.fromkeys(refusals)))  # each reason once


def _cpu_share() -> int:
    """The cores one job's compilers may use here: the machine's over its job slots."""
    import distributed

    worker = distributed.get_worker()
    return max(1, (os.cpu_count() or 1) // max(1, _slots_of(worker)))


def _answer(result: JobResult) -> dict[str, Any]:
    """The result as plain data, with the wheel's bytes when there is one."""
    answer: dict[str, Any] = {"result": result.to_json()}
    if result.ok and result.wheel:
        wheel = Path(result.wheel)
        answer["wheel_name"] = wheel.name
        answer["wheel"] = wheel.read_bytes()
    return answer


# -- the client's side ------------------------------------------------------------


def connect(address: str, *, timeout: float = CONNECT_SECONDS) -> distributed.Client:
    """A client of the scheduler at ``address``; a clear error when dask is missing."""
    try:
        import distributed
    except ImportError as error:
        raise DaskMissingError(
            f"--scheduler {address} needs Dask's distributed package on this machine: "
            "pip install 'kiln-build[dask]'"
        ) from error
    try:
        client_class: Any = distributed.Client  # only partly typed
        client: distributed.Client = client_class(address, timeout=timeout, set_as_default=False)
        return client
    except (OSError, TimeoutError) as error:
        raise SchedulerUnreachableError(
            f"cannot reach the Dask scheduler at {address}: {error}"
        ) from error


def _labelled(workers: Mapping[str, Mapping[str, Any]], label: str) -> str | None:
    """The address of the worker called ``label`` (its address or its name)."""
    for address, info in workers.items():
        if label in (address, str(info.get("name"))):
            return address
    return None


def _cluster_failure(spec: JobSpec, why: str, started: float) -> JobResult:
    """The result of a job the cluster could not run: its fault, not the package's."""
    return JobResult(
        node=spec.node,
        ok=False,
        seconds=time.monotonic() - started,
        exit_code=EXIT_ENVIRONMENT,
        error=f"the job could not run on the cluster: {why}",
        worker="dask",
    )


class SchedulerUnreachableError(KilnError):
    exit_code = EXIT_ENVIRONMENT


class DaskExecutor:
    """Runs each job on a worker of a Dask cluster (see the module's docstring).

    ``client``: a connected ``distributed.Client`` (closed by :meth:`close` only
    when ``own_client``). Every worker is checked at once; ``slots`` is how many
    jobs the cluster runs at once.
    """

    def __init__(
        self,
        client: Any,  # a distributed.Client (only partly typed)
        *,
        own_client: bool = False,
        workers_timeout: float = WORKERS_SECONDS,
    ) -> None:
        self.client = client
        self.own_client = own_client
        self._lock = threading.Lock()
        # Each job's future here -> its task on the cluster and its spec.
        self._futures: dict[Future[JobResult], tuple[Any, JobSpec]] = {}
        # Build environment -> the worker that last built with it (its address).
        self._warm: dict[str, str] = {}
        # The workers as the scheduler last told (address -> info).
        self._known: dict[str, dict[str, Any]] = {}
        self._closed = False
        try:
            client.wait_for_workers(1, timeout=workers_timeout)
        except TimeoutError as error:
            raise SchedulerUnreachableError(
                f"no Dask worker joined the scheduler {self.client.scheduler.address} "
                f"within {workers_timeout:.0f} s"
            ) from error
        self.check_workers()

    @classmethod
    def connect(cls, address: str) -> DaskExecutor:
        client: Any = connect(address)
        try:
            return cls(client, own_client=True)
        except BaseException:
            client.close()
            raise

    def check_workers(self) -> None:
        """Refuse the cluster if a worker runs another kiln or Python than this client."""
        mine = identity()
        # A worker without kiln (or with a broken one) answers with its exception.
        theirs: dict[str, Any] = self.client.run(ready_worker, sys.executable, on_error="return")
        refused = []
        for address, answer in sorted(theirs.items()):
            if isinstance(answer, BaseException):
                # Dask wraps a remote error in a bare Exception that names it already.
                named = type(answer) is Exception
                error = answer if named else f"{type(answer).__name__}: {answer}"
                refused.append(f"{address} cannot run kiln: {error}")
            elif (difference := mismatch(mine, answer)) is not None:
                refused.append(f"{address} runs {difference}")
        if refused:
            raise WorkerMismatchError(
                "refusing the Dask cluster: its workers must run the client's kiln and "
                f"Python (kiln {mine['kiln']}, {mine['python']}, {mine['platform']}): "
                + "; ".join(refused)
            )
        workers = self._refresh_workers()
        self.resources = (
            {RESOURCE: 1}
            if any(RESOURCE in w.get("resources", {}) for w in workers.values())
            else None
        )

    def _refresh_workers(self) -> dict[str, dict[str, Any]]:
        """Ask the scheduler for its workers (address -> info) and keep the answer."""
        info: dict[str, dict[str, Any]] = self.client.scheduler_info(n_workers=-1)["workers"]
        self._known = info
        return info

    def _worker(self, address: str) -> Mapping[str, Any] | None:
        """A worker's info, asked for again only when it is not known yet (a worker
        that joined since): a job's way through the executor costs no round trip."""
        info = self._known.get(address)
        return info if info is not None else self._refresh_workers().get(address)

    @property
    def slots(self) -> int:
        """How many jobs the cluster runs at once now (every worker's slots)."""
        return max(1, sum(self._worker_slots(w) for w in self._refresh_workers().values()))

    def _worker_slots(self, info: Mapping[str, Any]) -> int:
        if self.resources is not None:
            return int(info.get("resources", {}).get(RESOURCE, 0))
        return int(info.get("nthreads", 1))

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        outer: Future[JobResult] = Future()
        outer.set_running_or_notify_cancel()  # cancelled only through cancel()
        shipment = ship(spec)
        env_key = environment_key(spec)
        options: dict[str, Any] = {
            "key": f"kiln-job-{spec.name}-{secrets.token_hex(6)}",
            "pure": False,
            "retries": RETRIES,
        }
        if self.resources is not None:
            options["resources"] = self.resources
        warm = self._free_warm_worker(env_key)
        if warm is not None:
            # Loose: should that worker go, or fill up, any other may take the job.
            options.update(workers=[warm], allow_other_workers=True)
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is closed")
            inner = self.client.submit(run_on_worker, shipment, **options)
            self._futures[outer] = (inner, spec)
        started = time.monotonic()
        inner.add_done_callback(lambda done: self._complete(spec, env_key, outer, done, started))
        return outer

    def prefer(self, specs: Sequence[JobSpec]) -> int:
        """Which ready job to start on the slot that is free (the scheduler's
        optional choice): the first whose environment is warm on a worker with a
        free slot, else the scheduler's first. Only a job that saves making an
        environment overtakes the first: a long build at the head of the queue is
        not held back for a cold one, and the scheduler starts a job passed over
        too often whatever this says."""
        warm_on = [self._warm.get(environment_key(spec)) for spec in specs]
        warm = {address for address in warm_on if address is not None}
        if not warm:
            return 0
        try:
            free = {address for address in warm if self._has_free_slot(address)}
        except Exception as error:  # the scheduler's order will do
            logger.debug("cannot ask the scheduler which workers are free: %s", error)
            return 0
        return next((n for n, address in enumerate(warm_on) if address in free), 0)

    def _has_free_slot(self, address: str) -> bool:
        info = self._worker(address)
        if info is None:
            return False
        busy = len(self.client.processing(workers=[address]).get(address, ()))
        return busy < self._worker_slots(info)

    def _free_warm_worker(self, env_key: str) -> str | None:
        """The worker that last built this environment, if it has a free slot now:
        a busy one is not waited for (the others would starve meanwhile)."""
        address = self._warm.get(env_key)
        # Asked each time (a round trip of about a millisecond): only the scheduler
        # knows where the jobs not pinned to a worker run.
        return address if address is not None and self._has_free_slot(address) else None

    def _complete(
        self,
        spec: JobSpec,
        env_key: str,
        outer: Future[JobResult],
        inner: Any,  # a distributed.Future
        started: float,
    ) -> None:
        """In the client's callback thread: turn the task's end into the job's result."""
        with self._lock:
            # cancel() takes out each job this client cancels before Dask hears of it.
            cancelled_here = self._futures.pop(outer, None) is None
        if outer.done():
            return  # cancel() gave it its result
        if inner.cancelled():
            # By this client's cancel(), or by the cluster (its scheduler went away, say).
            result = (
                cancelled_result(spec)
                if cancelled_here
                else _cluster_failure(spec, "the cluster cancelled it", started)
            )
        else:
            try:
                result = self._receive(spec, inner.result(), env_key)
            except Exception as error:  # a lost job, a worker lost too often, the connection
                result = _cluster_failure(spec, f"{type(error).__name__}: {error}", started)
        if not outer.done():
            outer.set_result(result)

    def _receive(self, spec: JobSpec, answer: Mapping[str, Any], env_key: str) -> JobResult:
        """Write the wheel that came back into the job's outdir here, whole (a
        partial file renamed into place)."""
        result = JobResult.from_json(answer["result"])
        # The log and a kept build stay on the worker (`kiln debug` runs there):
        # named as WORKER:PATH.
        changes: dict[str, Any] = {
            name: f"{result.worker}:{value}" if value else None
            for name, value in (("kept", result.kept), ("log_path", result.log_path))
        }
        if result.ok and "wheel" in answer:
            wheel = Path(spec.outdir) / Path(answer["wheel_name"]).name
            partial = wheel.with_name(f".{wheel.name}.partial")
            partial.write_bytes(answer["wheel"])
            partial.rename(wheel)
            changes["wheel"] = str(wheel)
            address = self._address_of(result.worker)
            if address is not None:
                self._warm[env_key] = address
        return replace(result, **changes)

    def _address_of(self, label: str) -> str | None:
        """The address of the worker a result names (asked for only when unknown)."""
        found = _labelled(self._known, label)
        return found if found is not None else _labelled(self._refresh_workers(), label)

    def cancel(self, futures: Collection[Future[JobResult]]) -> None:
        """Cancel the tasks on the cluster and wait until no worker runs them (a
        running job's worker sees the cancel within POLL_SECONDS and stops the job's
        processes as LocalPool does); each future gets a cancelled result."""
        with self._lock:
            ours = {outer: self._futures.pop(outer) for outer in futures if outer in self._futures}
        if ours:
            tasks = [task for task, _ in ours.values()]
            self.client.cancel(tasks, force=True)
            self._wait_stopped({str(task.key) for task in tasks})
        for outer, (_, spec) in ours.items():
            if not outer.done():
                outer.set_result(cancelled_result(spec))

    def _wait_stopped(self, keys: set[str]) -> None:
        """Until no worker runs any of ``keys`` (bounded: a worker that does not
        answer is not waited for). A second interrupt stops the waiting."""
        from kiln.wheelhouse.executors import CANCEL_GRACE_SECONDS

        deadline = time.monotonic() + CANCEL_GRACE_SECONDS + STOP_MARGIN_SECONDS
        while time.monotonic() < deadline:
            try:
                running: dict[str, list[str]] = self.client.run(_running_keys)
            except Exception as error:  # the cluster is gone: nothing to wait for
                logger.debug("cannot ask the workers what still runs: %s", error)
                return
            if not any(keys.intersection(on_worker) for on_worker in running.values()):
                return
            time.sleep(POLL_SECONDS)
        logger.warning("a cancelled job still runs on a Dask worker; it stops there later")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            running = list(self._futures)
        self.cancel(running)
        if self.own_client:
            self.client.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
