"""What a Dask cluster adds per job and before the first job, on a few tiny packages.

A quick companion of ``bench/dask_farm.py`` for a busy machine: it builds a small
tree with ``kiln wheelhouse -j N`` and on a LocalCluster of N one-core workers
(``dask_farm.cluster``), ``--repeat`` times each with empty caches, and prints from
each report the per-job dispatch (end - start - the job's own seconds) and when
the first job started.

    .venv/bin/python bench/dask_dispatch.py --wheelhouse tests/wheelhouse
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from dask_farm import DEFAULT_WHEELHOUSE, cluster, offline_environ, wheelhouse

DEFAULT_TREE = ("six", "tomli", "iniconfig", "packaging", "idna")


def dispatch(report: dict[str, Any]) -> tuple[list[float], float]:
    """Each built job's (end - start - seconds), and the first job's start."""
    built = [p for p in report["packages"] if p.get("start") is not None and p.get("end")]
    gaps = [float(p["end"]) - float(p["start"]) - float(p["seconds"] or 0.0) for p in built]
    return gaps, min(float(p["start"]) for p in built)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(DEFAULT_TREE))
    parser.add_argument("--wheelhouse", type=Path, default=DEFAULT_WHEELHOUSE)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    wheels: Path = args.wheelhouse.absolute()
    scratch = Path(tempfile.mkdtemp(prefix="kiln-bench-dispatch-"))
    rows: dict[str, list[tuple[float, list[float], float]]] = {"local": [], "dask": []}
    try:
        for round_number in range(args.repeat):
            root = scratch / str(round_number)
            # Each run its own caches (uv's too): neither warms the other's.
            environ = offline_environ(wheels, root / "local")
            local_env = {**environ, "KILN_CACHE_DIR": str(root / "local-cache")}
            seconds, report = wheelhouse(
                args.packages, wheels, root / "local-out", local_env, "-j", str(args.slots)
            )
            rows["local"].append((seconds, *dispatch(report)))
            environ = offline_environ(wheels, root / "dask")
            with cluster(root / "farm", args.slots, environ) as address:
                client_env = {**environ, "KILN_CACHE_DIR": str(root / "client-cache")}
                seconds, report = wheelhouse(
                    args.packages, wheels, root / "dask-out", client_env, "--scheduler", address
                )
                rows["dask"].append((seconds, *dispatch(report)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"tree: {', '.join(args.packages)}; {args.slots} slot(s); {args.repeat} round(s)")
    for name, runs in rows.items():
        for number, (seconds, gaps, first) in enumerate(runs):
            print(
                f"  {name:<5} round {number}: {seconds:5.2f} s, first job at {first:5.2f} s, "
                f"dispatch per job mean {statistics.mean(gaps):.3f} s "
                f"(min {min(gaps):.3f}, max {max(gaps):.3f})"
            )
        print(
            f"  {name:<5} all rounds: {statistics.mean(s for s, _, _ in runs):.2f} s, "
            f"dispatch per job {statistics.mean(g for _, gaps, _ in runs for g in gaps):.3f} s, "
            f"first job at {statistics.mean(first for _, _, first in runs):.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
