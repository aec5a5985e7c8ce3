"""`kiln wheelhouse` on a Dask cluster against the local pool, on this machine.

    python bench/dask_farm.py [--wheelhouse tests/wheelhouse] [--rounds 3] [--workdir DIR]
                              [PACKAGE ...]

Builds the same tree (default: the test wheelhouse's sdists that need nothing
else to build) four ways, each from empty kiln and compiler caches: the local
pool with -j 1 and -j 2, and a local Dask cluster of one and of two one-core
workers (``--scheduler``), each worker with caches of its own as a separate
machine has. A first, untimed run fills uv's cache, which all runs share. The
local and Dask runs alternate, round by round, so that a slow spell of a shared
machine hits both; it prints the median of each and Dask's overhead over the
local pool with as many slots (target: under 5% of the tree's time), and of it
what Dask adds to each job's way (its end minus its start minus its own seconds,
against the local pool's) and how much more of the jobs' own time went into
making build environments (each worker makes its own). Then, with a loopback
redis-server, a cluster builds the tree with ``--compiler-cache ccache
--compiler-cache-remote``, and a second cluster with empty local caches builds it
again: the second one's compiler-cache hits over its compiles (target: at least
95%). Like bench/run.py it measures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WHEELHOUSE = Path(os.environ.get("KILN_TEST_WHEELHOUSE", REPO / "tests" / "wheelhouse"))
DEFAULT_TREE = ("six", "tomli", "markupsafe", "attrs", "tomlkit")


def offline_environ(wheelhouse: Path, root: Path) -> dict[str, str]:
    """Installers and the resolver see the wheelhouse and nothing else."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "KILN_"))}
    empty = root / "empty-index"
    empty.mkdir(parents=True, exist_ok=True)
    environ.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheelhouse),
        UV_NO_CONFIG="1",
        UV_OFFLINE="1",
        UV_DEFAULT_INDEX=empty.as_uri(),
        UV_FIND_LINKS=str(wheelhouse),
        UV_CACHE_DIR=str(root / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
    )
    return environ


@contextmanager
def cluster(root: Path, workers: int, environ: dict[str, str]) -> Iterator[str]:
    """A local cluster of one-core, one-job workers, each with caches of its own."""
    import distributed

    specs = {
        f"w{n}": {
            "cls": distributed.Nanny,
            "options": {
                "nthreads": 1,
                "resources": {"kiln": 1},
                "host": "127.0.0.1",
                "local_directory": str(root / f"w{n}" / "dask"),
                "env": {
                    **{k: v for k, v in environ.items() if k.startswith(("PIP_", "UV_"))},
                    "KILN_CACHE_DIR": str(root / f"w{n}" / "kiln-cache"),
                    "CCACHE_DIR": str(root / f"w{n}" / "ccache"),
                },
            },
        }
        for n in range(workers)
    }
    scheduler = {
        "cls": distributed.Scheduler,
        "options": {"dashboard_address": ":0", "host": "127.0.0.1"},
    }
    spec_cluster_class: Any = distributed.SpecCluster  # only partly typed
    with spec_cluster_class(
        workers=specs, scheduler=scheduler, silence_logs=logging.ERROR
    ) as spec_cluster:
        yield str(spec_cluster.scheduler_address)


def wheelhouse(
    tree: list[str], wheels: Path, out: Path, environ: dict[str, str], *args: str
) -> tuple[float, dict[str, Any]]:
    """One `kiln wheelhouse` run: its seconds and its report."""
    command = [sys.executable, "-m", "kiln", "wheelhouse", *tree, "-f", str(wheels / "sdists")]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "-o", str(out), *args], env=environ, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"kiln wheelhouse failed ({done.returncode}):\n{done.stderr}")
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return seconds, report


@contextmanager
def redis(root: Path) -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("the compiler-cache part needs redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(root)],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def build_seconds(report: dict[str, Any]) -> float:
    """The jobs' own seconds, as each measured itself where it ran."""
    return sum(float(p.get("seconds") or 0.0) for p in report["packages"])


def dispatch_seconds(report: dict[str, Any]) -> float:
    """A job's way to where it runs and back, on average: its end minus its start
    (as the client saw them) minus its own seconds (as the job measured them)."""
    built = [p for p in report["packages"] if p.get("start") is not None and p.get("end")]
    gaps = [float(p["end"]) - float(p["start"]) - float(p["seconds"] or 0.0) for p in built]
    return statistics.mean(gaps) if gaps else 0.0


def environment_seconds(report: dict[str, Any]) -> float:
    """The jobs' seconds in making (or finding) their build environments."""
    return sum(float((p.get("timings") or {}).get("environment", 0.0)) for p in report["packages"])


def compiles(report: dict[str, Any]) -> tuple[int, int]:
    """The hits and misses of every package's compiler cache in a report."""
    hits = misses = 0
    for package in report["packages"]:
        stats = package.get("compiler_cache") or {}
        hits += int(stats.get("hits", 0))
        misses += int(stats.get("misses", 0))
    return hits, misses


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(DEFAULT_TREE))
    parser.add_argument("--wheelhouse", type=Path, default=DEFAULT_WHEELHOUSE)
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds of each run (default: 3)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="caches and scratch (default: a temporary directory, removed at the end)",
    )
    args = parser.parse_args()
    tree: list[str] = args.packages
    wheels: Path = args.wheelhouse.absolute()
    owned = args.workdir is None
    scratch = Path(tempfile.mkdtemp(prefix="kiln-bench-dask-")) if owned else args.workdir
    try:
        environ = offline_environ(wheels, scratch)
        # A first run fills uv's cache, which every later run shares: otherwise the
        # first timed run alone would download (here: unpack) every wheel.
        warm_up = scratch / "warm-up"
        wheelhouse(tree, wheels, warm_up / "out", _local_environ(environ, warm_up), "-j", "2")
        shutil.rmtree(warm_up)
        times: dict[str, list[float]] = {}
        builds: dict[str, list[float]] = {}
        environments: dict[str, list[float]] = {}
        dispatches: dict[str, list[float]] = {}
        for slots in (1, 2):
            # Interleaved rounds: a slow spell of the machine hits both sides alike.
            for number in range(args.rounds):
                run = scratch / f"local-{slots}-{number}"
                name = f"local -j {slots}"
                seconds, report = wheelhouse(
                    tree, wheels, run / "out", _local_environ(environ, run), "-j", str(slots)
                )
                _record(name, seconds, report, times, builds, environments, dispatches)
                with cluster(run / "farm", slots, environ) as address:
                    client_env = {**environ, "KILN_CACHE_DIR": str(run / "client-cache")}
                    seconds, report = wheelhouse(
                        tree, wheels, run / "dask-out", client_env, "--scheduler", address
                    )
                _record(f"dask x{slots}", seconds, report, times, builds, environments, dispatches)
                shutil.rmtree(run, ignore_errors=True)
        _print_runs(tree, args.rounds, times, builds, environments, dispatches)
        with redis(scratch / "redis") as url:
            remote = ("--compiler-cache", "ccache", "--compiler-cache-remote", url)
            reports = []
            for name in ("first", "second"):
                run = scratch / f"redis-{name}"
                with cluster(run / "farm", 2, environ) as address:
                    client_env = {**environ, "KILN_CACHE_DIR": str(run / "client-cache")}
                    _, report = wheelhouse(
                        tree, wheels, run / "out", client_env, "--scheduler", address, *remote
                    )
                    reports.append(report)
        hits, misses = compiles(reports[1])
        rate = 100 * hits / (hits + misses) if hits + misses else 0.0
        print(
            f"  a second cluster sharing Redis: {hits} hits, {misses} misses, {rate:.0f}% "
            "of its compiles (target: at least 95%)"
        )
    finally:
        if owned:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _print_runs(
    tree: list[str],
    rounds: int,
    times: dict[str, list[float]],
    builds: dict[str, list[float]],
    environments: dict[str, list[float]],
    dispatches: dict[str, list[float]],
) -> None:
    print(
        f"tree: {', '.join(tree)} ({len(tree)} packages, empty kiln and compiler caches; "
        f"median of {rounds} round(s))"
    )
    for name, samples in times.items():
        print(
            f"  {name:<12} {median(samples):7.1f} s  ({', '.join(f'{s:.1f}' for s in samples)})"
            f"   the jobs' own time: {median(builds[name]):.1f} s, of which making "
            f"environments {median(environments[name]):.1f} s"
        )
    for slots in (1, 2):
        local, dask = times[f"local -j {slots}"], times[f"dask x{slots}"]
        overhead = median(dask) - median(local)
        paired = median([d - lo for d, lo in zip(dask, local, strict=True)])
        print(
            f"  {slots} slot(s): Dask's overhead {overhead:+.1f} s (round by round "
            f"{paired:+.1f} s), {overhead / len(tree):+.2f} s per job, "
            f"{100 * overhead / median(local):+.1f}% of the tree (target: under 5%)"
        )
        # What Dask itself adds to each job (shipping it, scheduling it, the
        # result's way back), apart from what the workers' own caches and cores do.
        extra = median(dispatches[f"dask x{slots}"]) - median(dispatches[f"local -j {slots}"])
        share = extra * len(tree) / slots / median(local)
        made = median(environments[f"dask x{slots}"]) - median(environments[f"local -j {slots}"])
        print(
            f"    of which dispatch: {extra:+.3f} s a job ({100 * share:+.1f}% of the tree); "
            f"environments made per worker: {made:+.1f} s of the jobs' time"
        )


def _local_environ(environ: dict[str, str], run: Path) -> dict[str, str]:
    """A local run's environment: its kiln cache and compiler cache empty, as each
    worker's are (a warm ~/.cache/ccache made the local pool look 40-70% faster)."""
    return {**environ, "KILN_CACHE_DIR": str(run / "kiln-cache"), "CCACHE_DIR": str(run / "ccache")}


def _record(
    name: str,
    seconds: float,
    report: dict[str, Any],
    times: dict[str, list[float]],
    builds: dict[str, list[float]],
    environments: dict[str, list[float]],
    dispatches: dict[str, list[float]],
) -> None:
    times.setdefault(name, []).append(seconds)
    dispatches.setdefault(name, []).append(dispatch_seconds(report))
    builds.setdefault(name, []).append(build_seconds(report))
    environments.setdefault(name, []).append(environment_seconds(report))


if __name__ == "__main__":
    sys.exit(main())
