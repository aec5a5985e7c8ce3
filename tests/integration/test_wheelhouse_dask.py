"""`kiln wheelhouse --scheduler` on a Dask cluster of this machine, offline.

Each worker is a process of its own (under a Nanny) with its own KILN_CACHE_DIR
and CCACHE_DIR, standing in for a separate machine; the client is the real CLI in
a subprocess, so every byte it stores came back from a worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import pid_alive, run_kiln, wait_for_file
from tests.integration.test_wheelhouse import tree_index, wheelhouse_args  # noqa: F401

distributed = pytest.importorskip("distributed")


@contextmanager
def cluster(root: Path, names: tuple[str, ...] = ("a", "b"), **env: str) -> Iterator[Any]:
    """A cluster of one-job workers, each with a kiln cache and a ccache of its own."""
    workers = {
        name: {
            "cls": distributed.Nanny,
            "options": {
                "nthreads": 1,
                "resources": {"kiln": 1},
                "env": {
                    "KILN_CACHE_DIR": str(root / name / "kiln-cache"),
                    "CCACHE_DIR": str(root / name / "ccache"),
                    **env,
                },
                "host": "127.0.0.1",
                # Dask's own scratch, out of the global temp dir.
                "local_directory": str(root / name / "dask"),
            },
        }
        for name in names
    }
    scheduler = {
        "cls": distributed.Scheduler,
        "options": {"dashboard": False, "dashboard_address": ":0", "host": "127.0.0.1"},
    }
    with distributed.SpecCluster(
        workers=workers, scheduler=scheduler, silence_logs=False
    ) as spec_cluster:
        yield spec_cluster


def packages(outdir: Path) -> dict[str, dict[str, Any]]:
    report = json.loads((outdir / "report.json").read_text())
    return {p["name"]: p for p in report["packages"]}


def wheels(outdir: Path) -> dict[str, dict[str, bytes]]:
    """Each wheel's files and their content (setuptools stamps the zip entries with
    the unpacked files' times, which differ from one build to the next)."""
    import zipfile

    contents = {}
    for path in sorted(outdir.glob("*.whl")):
        with zipfile.ZipFile(path) as archive:
            contents[path.name] = {name: archive.read(name) for name in archive.namelist()}
    return contents


def test_a_tree_built_on_two_workers_equals_a_local_run(
    tmp_path: Path,
    tree_index: Path,  # noqa: F811
    wheelhouse: Path,
) -> None:
    inputs = ("kt-base", "six", "tomli", "kt-plugin")
    local = tmp_path / "local"
    done = run_kiln(*wheelhouse_args(tree_index, wheelhouse, *inputs, "-o", local))
    assert done.returncode == 0, done.stderr
    with cluster(tmp_path / "farm") as farm:
        remote = tmp_path / "remote"
        done = run_kiln(
            *wheelhouse_args(tree_index, wheelhouse, *inputs, "-o", remote),
            "--scheduler",
            farm.scheduler_address,
            # A client cache of its own: the local run's wheels are not reused.
            env={**os.environ, "KILN_CACHE_DIR": str(tmp_path / "client-cache")},
        )
    assert done.returncode == 0, done.stderr
    built = packages(remote)
    assert {name: p["status"] for name, p in built.items()} == dict.fromkeys(inputs, "built")
    assert {p["worker"] for p in built.values()} <= {"a", "b"}
    # The progress output names, for each package, the worker the report names.
    for name in inputs:
        lines = [line for line in done.stderr.splitlines() if f"built {name}==" in line]
        assert len(lines) == 1, done.stderr
        assert lines[0].endswith(f" on {built[name]['worker']}"), lines[0]
    # The same wheels, file for file, the metadata and RECORD included.
    assert wheels(remote) == wheels(local)
    # Each worker built in its own cache, never in the client's.
    for machine in ("a", "b"):
        assert any((tmp_path / "farm" / machine / "kiln-cache" / "envs-v1").iterdir())
    assert not any((tmp_path / "client-cache" / "envs-v1").iterdir())


def test_a_failing_package_is_reported_once_and_blocks_its_dependents(
    tmp_path: Path,
    tree_index: Path,  # noqa: F811
    wheelhouse: Path,
) -> None:
    out = tmp_path / "wh"
    with cluster(tmp_path / "farm") as farm:
        done = run_kiln(
            *wheelhouse_args(tree_index, wheelhouse, "kt-needs-broken", "kt-base", "-o", out),
            "--build-deps",
            "source",
            "--scheduler",
            farm.scheduler_address,
        )
    assert done.returncode == 1, done.stderr
    built = packages(out)
    assert built["kt-broken"]["status"] == "failed"
    assert built["kt-needs-broken"]["status"] == "blocked"
    assert built["kt-base"]["status"] == "built"
    # Once: a package that fails is not run again on another worker. Its build
    # is kept where it ran, once.
    failures = [line for line in done.stderr.splitlines() if "] kt-broken==" in line]
    assert len(failures) == 1 and " failed on " in failures[0], done.stderr
    kept = [
        p for w in ("a", "b") for p in (tmp_path / "farm" / w / "kiln-cache" / "runs-v1").iterdir()
    ]
    assert len(kept) == 1, kept
    # Its log is named where it is: on the worker.
    worker = built["kt-broken"]["worker"]
    assert f"log: {worker}:{tmp_path / 'farm' / worker / 'kiln-cache'}" in done.stderr, done.stderr
    assert not list(out.glob("kt_broken*"))


@pytest.mark.needs("redis-server", "ccache", "gcc")
def test_an_object_compiled_on_one_worker_is_a_hit_on_another(
    tmp_path: Path,
    tree_index: Path,  # noqa: F811
    wheelhouse: Path,
) -> None:
    from tests.redis_server import redis_server

    with redis_server(tmp_path / "redis") as url:
        stats = []
        for machine in ("a", "b"):
            out = tmp_path / f"wh-{machine}"
            # One worker at a time, each with empty local caches; one client cache
            # each, so the second run builds again instead of taking the wheel.
            with cluster(tmp_path / "farm", names=(machine,)) as farm:
                done = run_kiln(
                    *wheelhouse_args(tree_index, wheelhouse, "markupsafe", "-o", out),
                    "--scheduler",
                    farm.scheduler_address,
                    "--compiler-cache",
                    "ccache",
                    "--compiler-cache-remote",
                    url,
                    env={**os.environ, "KILN_CACHE_DIR": str(tmp_path / f"client-{machine}")},
                )
            assert done.returncode == 0, done.stderr
            package = packages(out)["markupsafe"]
            assert package["worker"] == machine
            stats.append(package["compiler_cache"])
    first, second = stats
    assert first["misses"] >= 1, first
    assert second["remote_hits"] >= 1 and second["misses"] == 0, second


def test_a_worker_killed_mid_build_has_its_job_run_again(
    tmp_path: Path,
    tree_index: Path,  # noqa: F811
    wheelhouse: Path,
) -> None:
    pidfile = tmp_path / "slow.pid"
    out = tmp_path / "wh"
    # kt-slow writes its pid and waits; once its .go file exists it builds at once:
    # killed on the first worker that runs it, it finishes on the second try.
    with cluster(tmp_path / "farm", KT_SLOW_PIDFILE=str(pidfile)) as farm:
        client = distributed.Client(farm.scheduler_address, set_as_default=False)
        killed: list[str] = []

        def kill_the_worker_that_builds() -> None:
            pid = _building(pidfile)
            # The worker whose process tree holds the build.
            for address, worker_pid in client.run(os.getpid).items():
                if _descends_from(pid, worker_pid):
                    killed.append(address)
                    os.kill(worker_pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_the_worker_that_builds, daemon=True)
        killer.start()
        try:
            done = run_kiln(
                *wheelhouse_args(tree_index, wheelhouse, "kt-slow", "six", "-o", out),
                "--scheduler",
                farm.scheduler_address,
            )
        finally:
            killer.join(timeout=60)
            client.close()
    assert killed, "no worker was killed"
    assert done.returncode == 0, done.stderr
    built = packages(out)
    assert {name: p["status"] for name, p in built.items()} == {"kt-slow": "built", "six": "built"}
    # Run twice, reported and stored once.
    assert len(json.loads((out / "report.json").read_text())["packages"]) == 2
    assert len(list(out.glob("kt_slow-*.whl"))) == 1
    names = sorted(p.name for p in out.iterdir() if p.is_file() and p.suffix != ".json")
    assert all(n.endswith((".whl", ".toml", ".txt")) or n.startswith(".") for n in names), names
    assert not [p for p in out.rglob("*") if "partial" in p.name]


def _building(pidfile: Path) -> int:
    """The pid of kt-slow's build once it waits; from then on, its next try builds
    at once (kt-slow's .go file)."""
    while not pidfile.exists():
        time.sleep(0.1)
    pid = int(pidfile.read_text().split()[0])
    pidfile.with_name(pidfile.name + ".go").touch()
    return pid


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent_of(pid)
    return False


def _parent_of(pid: int) -> int:
    """The parent's pid, or 0 when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_a_worker_with_another_kiln_is_refused_before_any_job_runs(
    tmp_path: Path,
    tree_index: Path,  # noqa: F811
    wheelhouse: Path,
) -> None:
    def pretend_another_kiln() -> None:
        import kiln

        kiln.__version__ = "0+elsewhere"

    out = tmp_path / "wh"
    with cluster(tmp_path / "farm") as farm:
        with distributed.Client(farm.scheduler_address, set_as_default=False) as client:
            client.run(pretend_another_kiln, workers=[farm.workers["b"].worker_address])
        done = run_kiln(
            *wheelhouse_args(tree_index, wheelhouse, "kt-base", "-o", out),
            "--scheduler",
            farm.scheduler_address,
        )
    assert done.returncode == 2, done.stderr
    assert "refusing the Dask cluster" in done.stderr, done.stderr
    assert "runs kiln 0+elsewhere" in done.stderr, done.stderr
    # Refused before any job: no worker built anything, no wheel landed.
    assert not (tmp_path / "farm" / "a" / "kiln-cache").exists()
    assert not (tmp_path / "farm" / "b" / "kiln-cache").exists()
    assert not list(out.glob("*.whl"))


def test_ctrl_c_at_the_client_stops_the_job_on_its_worker(
    tmp_path: Path,
    tree_index: Path,  # noqa: F811
    wheelhouse: Path,
) -> None:
    pidfile = tmp_path / "slow.pid"
    out = tmp_path / "wh"
    with cluster(tmp_path / "farm", KT_SLOW_PIDFILE=str(pidfile)) as farm:
        args = wheelhouse_args(tree_index, wheelhouse, "kt-slow", "-o", out)
        process = subprocess.Popen(
            [sys.executable, "-m", "kiln", *map(str, args), "--scheduler", farm.scheduler_address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            slow_pid = int(wait_for_file(pidfile, process))
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 130, stderr
        # The client returned once the worker had stopped the build (SIGINT to the
        # job's processes, then SIGTERM and SIGKILL after the grace period).
        assert not pid_alive(slow_pid), "the build still runs on its worker"
    assert not list(out.glob("*.whl"))


def test_a_job_whose_process_dies_on_a_living_worker_runs_again(
    tmp_path: Path,
    tree_index: Path,  # noqa: F811
    wheelhouse: Path,
) -> None:
    pidfile = tmp_path / "slow.pid"
    out = tmp_path / "wh"
    killed: list[int] = []

    def kill_the_job_process() -> None:
        pid = _building(pidfile)
        # The job's own process (python -m kiln.wheelhouse.job), above the hook's.
        while pid > 1:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"kiln.wheelhouse.job" in command:
                killed.append(pid)
                os.kill(pid, signal.SIGKILL)
                return
            pid = _parent_of(pid)

    with cluster(tmp_path / "farm", names=("a",), KT_SLOW_PIDFILE=str(pidfile)) as farm:
        killer = threading.Thread(target=kill_the_job_process, daemon=True)
        killer.start()
        done = run_kiln(
            *wheelhouse_args(tree_index, wheelhouse, "kt-slow", "-o", out),
            "--scheduler",
            farm.scheduler_address,
        )
        killer.join(timeout=60)
    assert killed, "no job process was killed"
    assert done.returncode == 0, done.stderr
    assert packages(out)["kt-slow"]["status"] == "built"
    assert len(list(out.glob("kt_slow-*.whl"))) == 1
