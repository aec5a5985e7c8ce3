"""Benchmark kiln against uv build, python -m build --installer uv and python -m build (pip).

Usage::

    python bench/run.py [--rounds N] [--projects hatchling,setuptools,flit]
                        [--flows default,wheel] [--tools kiln,uv-build,build-uv,build-pip]
                        [--temperatures warm,cold] [--json out.json] [--markdown]

Builds the small projects in ``bench/projects/`` with every tool, for the default flow
(sdist, then the wheel from the sdist) and for ``--wheel``; kiln warm (its cache kept)
and cold (its cache emptied before every run; the installers' caches stay warm). In each
round every (tool, project, flow) runs once, in a shuffled order, so that drift hits
every tool alike. It also times the floor (``bench/floor.py``: the backend pre-installed,
imported once, a forked child per hook) and ``kiln --version``. It prints median
seconds, the ratios against kiln and a PASS/FAIL line per target of the issue.

Everything installs from a local wheelhouse with the indexes off, and every tool gets the
same environment, caches and scratch filesystem. See bench/README.md.

This module is the command line; the work is done by ``harness`` (setting up),
``timing`` (running), ``stats`` (medians, ratios, targets) and ``render`` (output),
with ``cells`` (the shared records) and ``machine`` (machine and versions).

Stdlib only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cells import DEFAULT_WHEELHOUSE, FLOWS, PROJECTS, TEMPERATURES, TOOLS, BenchError, Results, log
from harness import Context, find_uv, prepare
from machine import kiln_fingerprint, machine_info, versions, warn_if_busy
from render import artifact_mismatches, report, tables, to_json
from stats import targets
from timing import measure


def csv_choice(allowed: Sequence[str]) -> Any:
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{value!r}: expected a comma-separated list of {', '.join(allowed)}"
            )
        return [a for a in allowed if a in items]  # canonical order

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark kiln against uv build, python -m build --installer uv and "
        "python -m build (pip). See bench/README.md.",
    )
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default: 7)")
    parser.add_argument(
        "--projects",
        type=csv_choice(PROJECTS),
        default=list(PROJECTS),
        help=f"default: {','.join(PROJECTS)}",
    )
    parser.add_argument(
        "--flows", type=csv_choice(FLOWS), default=list(FLOWS), help=f"default: {','.join(FLOWS)}"
    )
    parser.add_argument(
        "--tools", type=csv_choice(TOOLS), default=list(TOOLS), help=f"default: {','.join(TOOLS)}"
    )
    parser.add_argument(
        "--temperatures",
        type=csv_choice(TEMPERATURES),
        default=list(TEMPERATURES),
        help="kiln warm and/or cold (default: warm,cold)",
    )
    parser.add_argument("--no-floor", action="store_true", help="do not time the floor")
    parser.add_argument(
        "--version-runs", type=int, default=20, help="kiln --version runs (default: 20; 0 to skip)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write every sample and the metadata as JSON"
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the results as Markdown (for docs/benchmarks.md)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter every tool builds with (default: this one)",
    )
    parser.add_argument(
        "--kiln", help="the kiln command (default: the kiln script next to --python)"
    )
    parser.add_argument(
        "--uv", help="the uv binary (default: the uv package of --python, else PATH)"
    )
    parser.add_argument(
        "--kiln-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for kiln, repeatable (write --kiln-arg=--hook-runner=plain)",
    )
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        default=DEFAULT_WHEELHOUSE,
        help="local wheels every tool installs from (default: tests/wheelhouse)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="caches and scratch (default: a temporary directory, removed at the end)",
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="do not remove the default work directory"
    )
    parser.add_argument("--seed", type=int, help="seed of the run order (default: random)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds before one run counts as failed (default: 600)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every run's time")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def make_context(args: argparse.Namespace) -> tuple[Context, bool]:
    """The context, and whether its work directory is ours to remove."""
    python = str(Path(args.python).absolute())  # not resolve(): keep a venv's interpreter
    if args.kiln:
        kiln = shlex.split(args.kiln)
    elif (Path(python).parent / "kiln").is_file():
        kiln = [str(Path(python).parent / "kiln")]  # the script users run
    else:
        kiln = [python, "-m", "kiln"]
    owned = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-")) if owned else args.workdir.absolute()
    ctx = Context(
        python=python,
        kiln=kiln,
        uv=find_uv(python, args.uv),
        wheelhouse=args.wheelhouse.absolute(),
        work=work,
        kiln_args=list(args.kiln_arg),
        timeout=args.timeout,
        verbose=args.verbose,
    )
    return ctx, owned


def output(
    ctx: Context, results: Results, meta: dict[str, Any], args: argparse.Namespace, started: float
) -> None:
    meta["duration_seconds"] = round(time.perf_counter() - started)
    meta["kiln_source_changed"] = kiln_fingerprint(ctx.python) != meta["kiln_source_hash"]
    table_list = tables(
        results, args.projects, args.flows, args.temperatures, args.tools, not args.no_floor
    )
    target_list = targets(results, args.projects, args.flows)
    sys.stdout.write(report(results, meta, table_list, target_list, markdown=args.markdown))
    sys.stdout.flush()
    for problem in artifact_mismatches(results):
        log(f"bench: warning: the tools built differently named artifacts: {problem}")
    for tool, names in sorted(results.tmp_leftovers.items()):
        left = ", ".join(sorted(names))
        log(f"bench: note: {tool} left in TMPDIR (removed after each run): {left}")
    for tool, count in sorted(results.stray_processes.items()):
        log(f"bench: warning: {tool} left {count} process(es) running after it exited (killed)")
    xdg = sorted(entry.name for entry in (ctx.work / "xdg-cache").iterdir())
    if xdg:  # a cache outside the ones the harness set: it would survive "cold" runs
        log(f"bench: warning: something wrote to XDG_CACHE_HOME: {', '.join(xdg)}")
    log(f"bench: done in {meta['duration_seconds'] / 60:.1f} min")
    if args.json:
        data = to_json(results, meta, target_list)
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        log(f"bench: wrote {args.json}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not hasattr(os, "fork") and not args.no_floor:
        log("bench: no os.fork here: the floor is skipped")
        args.no_floor = True
    started = time.perf_counter()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    ctx, owned_workdir = make_context(args)
    try:
        log(f"bench: work directory {ctx.work}, seed {seed}")
        cells = prepare(
            ctx,
            args.projects,
            args.flows,
            args.tools,
            args.temperatures,
            with_floor=not args.no_floor,
        )
        meta: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join(
                ["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "seed": seed,
            "machine": machine_info(),
            "versions": versions(ctx.python, ctx.kiln, ctx.uv),
            "backends": {p.name: p.backend_version for p in ctx.projects.values()},
            "python_path": ctx.python,
            "kiln_command": ctx.kiln + ctx.kiln_args,
            "uv_path": ctx.uv,
            "wheelhouse": str(ctx.wheelhouse),
            "kiln_source_hash": kiln_fingerprint(ctx.python),
        }
        warn_if_busy(meta["machine"])
        results = measure(
            ctx,
            cells,
            random.Random(seed),
            rounds=args.rounds,
            version_runs=args.version_runs if "kiln" in args.tools else 0,
        )
        meta["machine"]["load_at_end"] = machine_info().get("load", "?")
        output(ctx, results, meta, args, started)
    except BenchError as exc:
        log(f"bench: error: {exc}")
        return 2
    finally:
        if owned_workdir and not args.keep_workdir:
            shutil.rmtree(ctx.work, ignore_errors=True)
        elif owned_workdir:
            log(f"bench: kept {ctx.work}")
    return 1 if results.failures or results.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
