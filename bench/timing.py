"""Running and timing: one run of a cell, a shuffled round of every cell, ``kiln
--version``, and the whole measurement (warm-up round, then the timed rounds)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cells import FLOOR, Cell, Results, RunFailed, log
from harness import Context


def tail(text: str, lines: int = 30) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in kept)


def expected_artifacts(flow: str, names: Iterable[str]) -> bool:
    names = [n for n in names if not n.startswith(".")]  # uv build adds out/.gitignore
    sdists = [n for n in names if n.endswith((".tar.gz", ".zip"))]
    wheels = [n for n in names if n.endswith(".whl")]
    want_sdists = 1 if flow == "default" else 0
    return len(sdists) == want_sdists and len(wheels) == 1 and len(names) == want_sdists + 1


def run_once(ctx: Context, cell: Cell, results: Results, *, warmup: bool) -> float:
    """Time one run of ``cell`` from process start to exit. Raise RunFailed."""
    rundir = ctx.work / "runs" / cell.slug
    if rundir.exists():
        shutil.rmtree(rundir)
    src, out, scratch = rundir / "src", rundir / "out", rundir / "scratch"
    # A fresh copy every time, at the same path: no tool sees build/, *.egg-info or dist/
    # left by an earlier run, and a cache keyed on the project path still hits.
    shutil.copytree(ctx.projects[cell.project].path, src)
    if cell.tool == FLOOR:
        out.mkdir()
        scratch.mkdir()
    if cell.tool == "kiln" and cell.temperature == "cold":
        shutil.rmtree(ctx.kiln_cache("cold"), ignore_errors=True)
    cmd = ctx.command(cell, src, out, scratch)
    report = rundir / "report.json"
    if warmup and cell.tool == "kiln":
        cmd += ["--report", str(report)]  # which installer kiln picked; warm-up only
    env = ctx.env_for(cell)
    try:
        return _timed_run(ctx, cell, results, cmd, env, rundir, warmup=warmup)
    finally:
        sweep_tmp(ctx, results, cell.tool)


def kill_session(session: int) -> None:
    """SIGKILL the process group a tool was started in (its session's first group)."""
    with contextlib.suppress(OSError):
        os.killpg(session, signal.SIGKILL)


def processes_in_session(session: int) -> list[int]:
    """Processes still in the session a tool ran in (Linux; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
            fields = stat.read_text(encoding="utf-8", errors="replace").rpartition(")")[2].split()
            if int(fields[3]) == session:
                found.append(int(stat.parent.name))
    return found


def sweep_tmp(ctx: Context, results: Results, tool: str) -> None:
    """Note and remove whatever a tool left in TMPDIR, so that no tool sees another's."""
    for entry in ctx.tmp.iterdir():
        # Random parts of temporary names (tmpab12cd34, build-env-ab12cd34, x-<hash>.lock).
        pattern = re.sub(r"(^tmp|[-_])[A-Za-z0-9_]{8,}(?=\.[a-z]+$|$)", r"\1*", entry.name)
        results.tmp_leftovers.setdefault(tool, set()).add(pattern)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@dataclass(frozen=True)
class SessionRun:
    """One run of a tool by :func:`run_in_session`."""

    returncode: int
    seconds: float
    timed_out: bool
    # Processes it left behind (killed since), by pid.
    stray: list[int]
    # Its stdout, then its stderr.
    output: str


def run_in_session(cmd: list[str], env: dict[str, str], rundir: Path, timeout: float) -> SessionRun:
    """Run ``cmd`` in ``rundir``, its output to stdout.log and stderr.log there.

    Like subprocess.run(capture_output=True), with two differences. The output goes
    to files, so the clock stops when the tool exits, not when the last process
    holding its pipes lets go. And the tool runs in its own session, so a timeout or
    Ctrl-C stops its whole process tree and strays can be found (and are killed).
    """
    stdout_path, stderr_path = rundir / "stdout.log", rundir / "stderr.log"
    with stdout_path.open("wb") as stdout_file, stderr_path.open("wb") as stderr_file:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=rundir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout_file,
            stderr=stderr_file,
            start_new_session=True,
        )
        # Not proc.wait(timeout=...): with a timeout it polls, sleeping up to 50 ms between
        # polls, which would round every time up by as much. A blocking wait returns the
        # moment the tool exits; a timer thread enforces the timeout.
        timed_out = threading.Event()

        def on_timeout() -> None:
            timed_out.set()
            kill_session(proc.pid)

        timer = threading.Timer(timeout, on_timeout)
        timer.daemon = True
        timer.start()
        try:
            returncode = proc.wait()
        except BaseException:  # Ctrl-C: stop the tool's whole tree too
            kill_session(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
    stray = processes_in_session(proc.pid)
    if stray:
        kill_session(proc.pid)
        for pid in stray:  # those that left the group, too
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    output = stdout_path.read_text(errors="replace") + stderr_path.read_text(errors="replace")
    return SessionRun(returncode, elapsed, timed_out.is_set(), stray, output)


def _timed_run(
    ctx: Context,
    cell: Cell,
    results: Results,
    cmd: list[str],
    env: dict[str, str],
    rundir: Path,
    *,
    warmup: bool,
) -> float:
    out = rundir / "out"
    report = rundir / "report.json"
    done = run_in_session(cmd, env, rundir, ctx.timeout)
    if done.timed_out:
        raise RunFailed(f"timed out after {ctx.timeout:g} s\n  $ {shlex.join(cmd)}")
    if done.stray:
        # A tool that keeps a process after it exits (a daemon, a server) would carry
        # state into the next run, "cold" ones too, and eat CPU under other tools.
        results.stray_processes[cell.tool] = results.stray_processes.get(cell.tool, 0) + len(
            done.stray
        )
    returncode, output, elapsed = done.returncode, done.output, done.seconds

    if returncode != 0:
        raise RunFailed(f"exit status {returncode}\n  $ {shlex.join(cmd)}\n{tail(output)}")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not expected_artifacts(cell.flow, names):
        raise RunFailed(f"wrong artifacts in {out}: {names}\n  $ {shlex.join(cmd)}\n{tail(output)}")
    if warmup:
        results.artifacts[cell] = [n for n in names if not n.startswith(".")]
        if cell.tool == "kiln" and report.is_file():
            with report.open(encoding="utf-8") as handle:
                data: Any = json.load(handle)
            if isinstance(data, dict) and data.get("installer"):
                results.kiln_installer = str(data["installer"])
    shutil.rmtree(rundir)  # kept after a failure, for a look with --workdir
    return elapsed


def run_round(
    ctx: Context, cells: Sequence[Cell], results: Results, rng: random.Random, *, warmup: bool
) -> None:
    order = [c for c in cells if c not in results.failures]
    rng.shuffle(order)
    for cell in order:
        try:
            elapsed = run_once(ctx, cell, results, warmup=warmup)
        except RunFailed as exc:
            results.failures[cell] = str(exc).splitlines()[0]
            log(f"bench: FAILED {cell.label}: {exc}\nbench: {cell.label} is left out from now on")
            continue
        if ctx.verbose:
            log(f"bench:   {cell.label:<40} {elapsed:7.3f} s{' (warm-up)' if warmup else ''}")
        if not warmup:
            results.samples.setdefault(cell, []).append(elapsed)


def time_version(ctx: Context, results: Results, runs: int) -> None:
    """``kiln --version`` (the script) and, for context, ``python -c pass``, interleaved."""
    env = ctx.env_for(Cell("kiln", "", "", "warm"))
    version_cmd = [*ctx.kiln, "--version"]
    startup_cmd = [ctx.python, "-c", "pass"]

    def once(cmd: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        return time.perf_counter() - start

    for _ in range(3):  # warm-up: page cache, .pyc files
        once(version_cmd)
        once(startup_cmd)
    for _ in range(runs):
        results.version_samples.append(once(version_cmd))
        results.python_startup_samples.append(once(startup_cmd))


def measure(
    ctx: Context,
    cells: Sequence[Cell],
    rng: random.Random,
    *,
    rounds: int,
    version_runs: int,
) -> Results:
    """The warm-up round, ``kiln --version``, then the timed rounds. Ctrl-C stops early."""
    results = Results()
    try:
        log(f"bench: warm-up round ({len(cells)} runs, discarded)")
        start = time.perf_counter()
        run_round(ctx, cells, results, rng, warmup=True)
        took = time.perf_counter() - start
        estimate = took * rounds / 60
        log(f"bench: warm-up took {took:.0f} s; {rounds} round(s): about {estimate:.1f} min")
        if version_runs > 0:
            time_version(ctx, results, version_runs)
        for number in range(1, rounds + 1):
            start = time.perf_counter()
            run_round(ctx, cells, results, rng, warmup=False)
            results.rounds_done = number
            log(f"bench: round {number}/{rounds} took {time.perf_counter() - start:.0f} s")
    except KeyboardInterrupt:
        results.interrupted = True
        log("bench: interrupted; reporting what was measured")
    return results
