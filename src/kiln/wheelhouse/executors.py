"""Where jobs run: the :class:`Executor` seam and :class:`LocalPool`, its local side.

The scheduler hands an executor a :class:`JobSpec` and gets a standard
:class:`concurrent.futures.Future` back, which completes with the job's
:class:`JobResult` (a failed build is a result, not an exception). It knows
nothing of processes or machines: :class:`LocalPool` runs each job as a child
process here; a cluster executor (issue 13) can wrap the futures its client
returns (``client.submit(...)`` with a done callback that completes a
``concurrent.futures.Future``) and stop jobs through its cluster.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.process_group import kill_process_group, signal_group, stop_process_group
from kiln.wheelhouse.model import JobResult, JobSpec

logger = logging.getLogger("kiln.wheelhouse")

# How long a cancelled job may take after SIGINT to stop its build and keep it for
# `kiln debug` (its hooks get kiln's own grace period of 5 s) before SIGTERM, then SIGKILL.
CANCEL_GRACE_SECONDS = 15.0

# The files of a LocalPool job, in a directory of their own beside the job's outdir.
JOB_DIR_SUFFIX = ".job"
SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"
OUTPUT_FILE = "output.log"


class Executor(Protocol):
    """Runs jobs. ``submit`` returns at once; the future completes with the job's
    result, or raises when the job could not be run at all (the scheduler records
    that as a failure of the job).

    Optional: ``prefer(specs) -> int``, which of these ready jobs (the most
    waited-for first) to start on the slot that is free now; without it (as
    LocalPool), the first. The scheduler then makes a few ready jobs' specs ahead.
    """

    def submit(self, spec: JobSpec) -> Future[JobResult]: ...

    def cancel(self, futures: Collection[Future[JobResult]]) -> None:
        """Stop these jobs, queued or running, and return once nothing of theirs runs
        any more; every one of the futures is done then (cancelled, or with a result:
        a job that finished first keeps its own). A second interrupt while waiting
        makes it stop them at once, then propagates."""
        ...

    def close(self) -> None:
        """Stop whatever still runs and free the executor's resources."""
        ...


def job_dir(spec: JobSpec) -> Path:
    """Where LocalPool keeps a job's spec, result and output: beside its outdir."""
    outdir = Path(spec.outdir)
    return outdir.with_name(outdir.name + JOB_DIR_SUFFIX)


def cancelled_result(spec: JobSpec) -> JobResult:
    """The result of a job stopped before it had one of its own."""
    return JobResult(node=spec.node, ok=False, exit_code=130, error="cancelled")


@dataclass(eq=False)  # each job is itself, whatever its fields
class _Job:
    spec: JobSpec
    process: subprocess.Popen[bytes] | None = None
    cancelled: bool = False


class LocalPool:
    """Up to ``jobs`` jobs at once, each a child process on this machine:
    ``python -m kiln.wheelhouse.job SPEC RESULT`` in a process group of its own, so
    that a Ctrl-C at the terminal reaches only kiln, which then stops every job
    itself: SIGINT (the job's build stops and is kept, as kiln's does), then
    SIGTERM and SIGKILL to the whole group after a grace period. Should this
    process die without doing so, kiln's group reaper ends the jobs' groups (and
    each job's own reaper ends its hooks). ``python``: the interpreter the jobs run
    kiln with (the build's target interpreter is the spec's own)."""

    def __init__(self, jobs: int, python: str = sys.executable) -> None:
        if jobs < 1:
            raise ValueError(f"a pool runs at least one job at once, not {jobs}")
        from kiln.process import GroupReaper

        self.jobs = jobs
        self.python = python
        self._threads = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kiln-job")
        # Reentrant: cancelling a queued future runs its done callback (_forget) at once.
        self._lock = threading.RLock()
        self._jobs: dict[Future[JobResult], _Job] = {}
        # Every job not yet over, the futures of which close() may not know.
        self._live: set[_Job] = set()
        self._closed = False
        self._reaper = GroupReaper.get()

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        job = _Job(spec)
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed")
            self._live.add(job)
            future = self._threads.submit(self._run, job)
            self._jobs[future] = job
        future.add_done_callback(self._forget)
        return future

    def cancel(self, futures: Collection[Future[JobResult]]) -> None:
        running: list[subprocess.Popen[bytes]] = []
        ours = []
        with self._lock:
            for future in futures:
                job = self._jobs.get(future)
                if job is None or future.cancel():  # over, or never started
                    continue
                ours.append(future)
                # Not started yet, it sees this and starts nothing; else it is stopped here.
                job.cancelled = True
                if job.process is not None:
                    running.append(job.process)
        stop_jobs(running)
        wait_for(ours)  # each job's thread reads what its process left

    def close(self) -> None:
        """Stop every job still running (those queued never start) and wait for them."""
        with self._lock:
            self._closed = True
            running = [job.process for job in self._live if job.process is not None]
        try:
            stop_jobs(running)
        finally:
            self._threads.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _forget(self, future: Future[JobResult]) -> None:
        with self._lock:
            self._jobs.pop(future, None)

    def _run(self, job: _Job) -> JobResult:
        """In a pool thread: run one job's process to its end, and read its result."""
        try:
            return self._run_process(job)
        finally:
            with self._lock:
                self._live.discard(job)

    def _run_process(self, job: _Job) -> JobResult:
        spec = job.spec
        files = job_dir(spec)
        files.mkdir(mode=0o700, parents=True, exist_ok=True)
        spec_file, result_file, output_file = (
            files / SPEC_FILE,
            files / RESULT_FILE,
            files / OUTPUT_FILE,
        )
        from kiln.jsonfiles import write_json

        write_json(spec_file, spec.to_json(), indent=2, private=True)
        result_file.unlink(missing_ok=True)
        command = [self.python, "-m", "kiln.wheelhouse.job", str(spec_file), str(result_file)]
        started = time.monotonic()
        with output_file.open("wb") as output, self._lock:
            if job.cancelled or self._closed:
                return cancelled_result(spec)
            job.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._reaper is not None:
                self._reaper.watch(job.process.pid)
        process = job.process
        try:
            process.wait()
        finally:
            # The job has exited: whatever it left in its group has no reason to live.
            signal_group(process.pid, signal.SIGKILL)
            if self._reaper is not None:
                self._reaper.forget(process.pid)
        return read_result(spec, result_file, output_file, process.returncode, started)


def read_result(
    spec: JobSpec, result_file: Path, output_file: Path, returncode: int, started: float
) -> JobResult:
    """The result the job wrote, its log defaulting to the job's output; a job that
    wrote none failed (killed, or kiln itself broke): the output's last line says why."""
    import dataclasses
    import json

    try:
        result = JobResult.from_json(json.loads(result_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        if not isinstance(error, FileNotFoundError):
            logger.warning("%s: unreadable job result %s: %s", spec.node, result_file, error)
        return JobResult(
            node=spec.node,
            ok=False,
            seconds=time.monotonic() - started,
            exit_code=returncode if returncode > 0 else 128 - returncode if returncode else 1,
            error=_last_line(output_file)
            or f"the job's process ended with status {returncode} and no result",
            log_path=str(output_file),
        )
    if result.log_path is None:
        result = dataclasses.replace(result, log_path=str(output_file))
    return result


def _last_line(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if lines:
            return lines[-1]
    return None


def stop_jobs(processes: Collection[subprocess.Popen[bytes]]) -> None:
    """Stop job processes (each the leader of its own group) and whatever they
    started: SIGINT to each group, so that each build stops the way kiln's does on
    Ctrl-C; those still running after the grace period get SIGTERM, then SIGKILL.
    An interrupt while waiting kills them all at once, then propagates."""
    for process in processes:
        signal_group(process.pid, signal.SIGINT)
    try:
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
    except BaseException:
        for process in processes:
            kill_process_group(process)
        raise
    for process in processes:
        stop_process_group(process)
