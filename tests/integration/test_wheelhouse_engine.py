"""LocalPool and the job process: real sdists from the test wheelhouse built by the
scheduler in job processes, a failing build as a failed result, and Ctrl-C to the
pool mid-build leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from kiln.wheelhouse.executors import LocalPool, job_dir
from kiln.wheelhouse.model import JobResult, JobSpec, Status
from kiln.wheelhouse.scheduler import schedule
from tests.conftest import ProjectFactory
from tests.helpers import HANG_GUARD_SECONDS, WHEELHOUSE, pid_alive, wait_for_file


def job_spec(node: str, source: Path, jobs: Path, **environ: str) -> JobSpec:
    name, version = node.split("==")
    return JobSpec(
        node=node,
        name=name,
        version=version,
        source=str(source),
        outdir=str(jobs / node),
        cache_dir=os.environ["KILN_CACHE_DIR"],
        environ={**os.environ, **environ},
        cpu_share=1,
    )


def test_the_pool_builds_real_sdists_in_job_processes(tmp_path: Path) -> None:
    sdists = WHEELHOUSE / "sdists"
    specs = {
        spec.node: spec
        for spec in [
            job_spec("six==1.17.0", sdists / "six-1.17.0.tar.gz", tmp_path),
            job_spec("tomli==2.5.0", sdists / "tomli-2.5.0.tar.gz", tmp_path),
        ]
    }
    finished: dict[str, JobResult] = {}

    def finish(node: str, result: JobResult) -> bool:
        finished[node] = result
        return True

    pool = LocalPool(jobs=2)
    try:
        outcomes = schedule(
            dict.fromkeys(specs, ()), specs.__getitem__, pool, jobs=2, finish=finish
        )
    finally:
        pool.close()

    assert {node: o.status for node, o in outcomes.items()} == dict.fromkeys(specs, Status.BUILT)
    for node, wheel_name in [
        ("six==1.17.0", "six-1.17.0-py2.py3-none-any.whl"),
        ("tomli==2.5.0", "tomli-2.5.0-py3-none-any.whl"),
    ]:
        result = finished[node]
        assert result.ok, result
        assert result.wheel == str(tmp_path / node / wheel_name)
        assert Path(result.wheel).is_file()
        assert result.log_path is not None and Path(result.log_path).is_file()
        assert result.timings["wheel"] > 0
        # The job's spec went to the job process as JSON, and its result came back so.
        files = job_dir(specs[node])
        assert JobSpec.from_json(json.loads((files / "spec.json").read_text())) == specs[node]
        assert JobResult.from_json(json.loads((files / "result.json").read_text())) == result


def test_a_failing_build_is_a_failed_result_that_blocks_only_what_needs_it(
    project: ProjectFactory, tmp_path: Path
) -> None:
    broken = job_spec("broken==1.0.0", project("hook_raises"), tmp_path)
    user = job_spec("user==1.0.0", project("setuptools_pyproject"), tmp_path)
    specs = {spec.node: spec for spec in (broken, user)}

    pool = LocalPool(jobs=2)
    try:
        outcomes = schedule(
            {broken.node: (), user.node: (broken.node,)}, specs.__getitem__, pool, jobs=2
        )
    finally:
        pool.close()

    assert outcomes[user.node].status is Status.BLOCKED
    assert outcomes[user.node].reason == broken.node
    assert not (tmp_path / user.node).exists()  # never started
    failed = outcomes[broken.node]
    assert failed.status is Status.FAILED
    result = failed.result
    assert result is not None and not result.ok
    assert result.exit_code == 1
    assert result.error is not None and "build_wheel" in result.error
    assert result.log_path is not None
    assert "deliberate failure in build_wheel" in Path(result.log_path).read_text()
    # Kept for `kiln debug`.
    assert result.kept is not None
    assert (Path(result.kept) / "failed.json").is_file()


# The pool in a process of its own, as `kiln wheelhouse` runs it, that the test can
# interrupt: one job, its events as JSON lines in EVENTS.
POOL_DRIVER = textwrap.dedent(
    """
    import json, sys
    from kiln.wheelhouse.executors import LocalPool
    from kiln.wheelhouse.model import JobSpec
    from kiln.wheelhouse.scheduler import schedule

    spec = JobSpec.from_json(json.loads(sys.argv[1]))
    events = open(sys.argv[2], "w")

    def on_event(event):
        outcome = event.outcome
        result = outcome.result if outcome else None
        line = {
            "kind": event.kind,
            "node": event.node,
            "status": outcome.status.value if outcome else None,
            "result": result.to_json() if result else None,
        }
        events.write(json.dumps(line) + "\\n")
        events.flush()

    pool = LocalPool(jobs=1)
    try:
        schedule({spec.node: ()}, lambda node: spec, pool, jobs=1, on_event=on_event)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        pool.close()
    """
)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


class HangingBuild:
    """The pool driver in a process of its own, its one job a build of probe_backend,
    whose build_wheel starts a grandchild (sleep), writes both pids, and hangs."""

    def __init__(self, project: ProjectFactory, tmp_path: Path) -> None:
        pids_file = tmp_path / "pids"
        self.spec = job_spec(
            "probe==1.0.0", project("probe_backend"), tmp_path, KILN_TEST_HANG_PIDS=str(pids_file)
        )
        self.events_file = tmp_path / "events.jsonl"
        command = [sys.executable, "-c", POOL_DRIVER, json.dumps(self.spec.to_json())]
        self.pool = subprocess.Popen(
            [*command, str(self.events_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.hook, self.grandchild = map(int, wait_for_file(pids_file, self.pool).split())
        self.job = parent_of(self.hook)

    def processes(self) -> tuple[int, int, int]:
        return self.job, self.hook, self.grandchild


def test_ctrl_c_to_the_pool_mid_build_stops_the_job_and_leaves_no_process(
    project: ProjectFactory, tmp_path: Path
) -> None:
    build = HangingBuild(project, tmp_path)
    pool = build.pool
    assert parent_of(build.job) == pool.pid  # the hook runs in the job's process, not the pool's

    pool.send_signal(signal.SIGINT)  # what Ctrl-C at a terminal sends kiln
    _, stderr = pool.communicate(timeout=HANG_GUARD_SECONDS)

    assert pool.returncode == 130, stderr
    for pid in build.processes():
        assert not pid_alive(pid), f"process {pid} outlived the pool"
    events = [json.loads(line) for line in build.events_file.read_text().splitlines()]
    assert [(e["kind"], e["status"]) for e in events] == [
        ("started", None),
        ("finished", "cancelled"),
    ]
    # The job was told, as kiln is by Ctrl-C: it stopped its build and kept it.
    result = JobResult.from_json(events[-1]["result"])
    assert (result.exit_code, result.error) == (130, "interrupted")
    assert result.kept is not None
    assert json.loads((Path(result.kept) / "failed.json").read_text())["reason"] == "interrupted"
    assert list((tmp_path / build.spec.node).iterdir()) == []  # no wheel, nothing half-written


def test_a_pool_killed_outright_leaves_no_process_either(
    project: ProjectFactory, tmp_path: Path
) -> None:
    build = HangingBuild(project, tmp_path)
    build.pool.kill()  # SIGKILL: the pool cleans nothing up; kiln's group reapers do
    build.pool.communicate(timeout=HANG_GUARD_SECONDS)
    for pid in build.processes():
        assert not pid_alive(pid, seconds=10), f"process {pid} outlived the pool"
