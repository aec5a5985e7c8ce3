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

Stdlib only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import floor

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PROJECTS_DIR = BENCH_DIR / "projects"
DEFAULT_WHEELHOUSE = REPO_DIR / "tests" / "wheelhouse"
FILL_WHEELHOUSE = REPO_DIR / "tests" / "fill_wheelhouse.py"

PROJECTS = ("hatchling", "setuptools", "flit")
FLOWS = ("default", "wheel")
TOOLS = ("kiln", "uv-build", "build-uv", "build-pip")
TEMPERATURES = ("warm", "cold")
FLOOR = "floor"

TOOL_TITLES = {
    "kiln": "kiln",
    "uv-build": "uv build",
    "build-uv": "build --installer uv",
    "build-pip": "build (pip)",
    FLOOR: "floor",
}
FLOW_TITLES = {
    "default": "default flow (sdist, then the wheel from the sdist)",
    "wheel": "--wheel (a wheel from the project directory)",
}

# Dropped from the machine's environment before anything runs: installer and kiln
# settings (the harness sets its own), and anything that changes how Python starts.
STRIPPED_PREFIXES = ("PIP_", "UV_", "KILN_", "PYTHON", "_PYPROJECT_HOOKS_")
STRIPPED_NAMES = frozenset({"UV", "VIRTUAL_ENV", "CONDA_PREFIX", "__PYVENV_LAUNCHER__"})

# The targets.
TARGET_WARM_DEFAULT_VS_UV = 0.5
TARGET_WARM_DEFAULT_VS_FLOOR = 1.2
TARGET_WARM_WHEEL_VS_UV = 0.6
TARGET_COLD_VS_BUILD_UV = 1.0
TARGET_VERSION_SECONDS = 0.060
TARGET_FLOOR_PROJECTS = ("hatchling", "setuptools")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BenchError(Exception):
    """Something that stops the whole benchmark (a missing tool, a bad option)."""


class RunFailed(Exception):
    """One run failed; its cell is aborted."""


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True, order=True)
class Cell:
    """One thing that is timed once per round."""

    tool: str  # one of TOOLS, or FLOOR
    project: str
    flow: str
    temperature: str  # "warm" or "cold" for kiln; "" for tools that keep no env cache

    @property
    def slug(self) -> str:
        return "-".join(
            part for part in (self.tool, self.project, self.flow, self.temperature) if part
        )

    @property
    def label(self) -> str:
        temperature = f" ({self.temperature})" if self.temperature else ""
        return f"{self.tool}{temperature} {self.project} {self.flow}"


@dataclass
class Project:
    name: str
    path: Path
    backend: str
    requires: list[str]
    backend_version: str = "?"
    floor_venv: Path | None = None


@dataclass
class Results:
    samples: dict[Cell, list[float]] = field(default_factory=dict)
    failures: dict[Cell, str] = field(default_factory=dict)
    artifacts: dict[Cell, list[str]] = field(default_factory=dict)
    kiln_installer: str = "unknown"
    version_samples: list[float] = field(default_factory=list)
    python_startup_samples: list[float] = field(default_factory=list)
    tmp_leftovers: dict[str, set[str]] = field(default_factory=dict)
    stray_processes: dict[str, int] = field(default_factory=dict)
    rounds_done: int = 0
    interrupted: bool = False

    def median(self, cell: Cell) -> float | None:
        samples = self.samples.get(cell)
        if cell in self.failures or not samples:
            return None
        return statistics.median(samples)


# --------------------------------------------------------------------------- setup


def read_build_system(project: Path) -> tuple[list[str], str]:
    """``build-system.requires`` and ``build-backend`` of one of our projects."""
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    if sys.version_info >= (3, 11):
        import tomllib

        table = tomllib.loads(text)["build-system"]
        return [str(r) for r in table["requires"]], str(table["build-backend"])
    # Python 3.10 has no tomllib; our projects keep [build-system] simple enough for this.
    requires = re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.MULTILINE | re.DOTALL)
    backend = re.search(r'^build-backend\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if requires is None or backend is None:
        raise BenchError(f"cannot read [build-system] of {project / 'pyproject.toml'}")
    return re.findall(r'"([^"]+)"', requires.group(1)), backend.group(1)


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1) if match else requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheelhouse_version(wheelhouse: Path, name: str) -> str:
    """The newest version of ``name`` in the wheelhouse (what an unpinned install picks)."""
    versions = []
    for wheel in wheelhouse.glob("*.whl"):
        parts = wheel.name.split("-")
        if canonical(parts[0]) == canonical(name):
            versions.append(parts[1])
    if not versions:
        return "?"
    return max(versions, key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split(".")])


def capture(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The first line of a command's output, or "?" when it fails."""
    try:
        result = subprocess.run(
            list(cmd),
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else "?"


def find_uv(python: str, explicit: str | None) -> str | None:
    """The uv that ``build --installer uv`` and kiln's ``auto`` would use: the ``uv``
    package of ``python``, else a ``uv`` next to it, else ``uv`` on PATH."""
    if explicit:
        return explicit
    found = capture([python, "-c", "import uv; print(uv.find_uv_bin())"])
    if found != "?" and Path(found).is_file():
        return found
    sibling = Path(python).parent / "uv"
    if sibling.is_file():
        return str(sibling)
    return shutil.which("uv")


def clean_environ(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        for key, value in environ.items()
        if not key.startswith(STRIPPED_PREFIXES) and key not in STRIPPED_NAMES
    }


@dataclass
class Context:
    python: str
    kiln: list[str]
    uv: str | None
    wheelhouse: Path
    work: Path
    kiln_args: list[str]
    timeout: float
    verbose: bool
    projects: dict[str, Project] = field(default_factory=dict)

    @property
    def tmp(self) -> Path:
        return self.work / "tmp"

    @property
    def empty_index(self) -> Path:
        return self.work / "empty-index"

    def kiln_cache(self, temperature: str) -> Path:
        return self.work / f"kiln-cache-{temperature}"

    def base_env(self) -> dict[str, str]:
        """The one environment every tool runs in (kiln's cache dir aside)."""
        env = clean_environ(os.environ)
        wheelhouse = str(self.wheelhouse)
        env.update(
            {
                # pip: no config files, no index, only the wheelhouse.
                "PIP_CONFIG_FILE": os.devnull,
                "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": wheelhouse,
                "PIP_CACHE_DIR": str(self.work / "pip-cache"),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_INPUT": "1",
                # uv: no config files, offline, only the wheelhouse (the default index
                # is an empty local directory), no Python downloads, our own cache.
                "UV_NO_CONFIG": "1",
                "UV_OFFLINE": "1",
                "UV_FIND_LINKS": wheelhouse,
                "UV_DEFAULT_INDEX": self.empty_index.as_uri(),
                "UV_PYTHON_DOWNLOADS": "never",
                "UV_CACHE_DIR": str(self.work / "uv-cache"),
                # Scratch of every tool on the same filesystem as the caches.
                "TMPDIR": str(self.tmp),
                "TEMP": str(self.tmp),
                "TMP": str(self.tmp),
                # Anything that falls back to the user cache lands here, not in ~/.cache.
                "XDG_CACHE_HOME": str(self.work / "xdg-cache"),
            }
        )
        return env

    def env_for(self, cell: Cell) -> dict[str, str]:
        env = self.base_env()
        env["KILN_CACHE_DIR"] = str(self.kiln_cache(cell.temperature or "warm"))
        return env

    def command(self, cell: Cell, src: Path, out: Path, scratch: Path) -> list[str]:
        wheel = cell.flow == "wheel"
        if cell.tool == "kiln":
            return [
                *self.kiln,
                str(src),
                "-o",
                str(out),
                *(["-w"] if wheel else []),
                *self.kiln_args,
            ]
        if cell.tool == "uv-build":
            assert self.uv is not None
            return [
                self.uv,
                "build",
                str(src),
                "-o",
                str(out),
                "--python",
                self.python,
                "--no-managed-python",
                *(["--wheel"] if wheel else []),
            ]
        if cell.tool in ("build-uv", "build-pip"):
            installer = "uv" if cell.tool == "build-uv" else "pip"
            return [
                self.python,
                "-m",
                "build",
                "--installer",
                installer,
                str(src),
                "-o",
                str(out),
                *(["--wheel"] if wheel else []),
            ]
        if cell.tool == FLOOR:
            project = self.projects[cell.project]
            assert project.floor_venv is not None
            return [
                str(floor.venv_python(project.floor_venv)),
                str(BENCH_DIR / "floor.py"),
                "run",
                project.backend,
                cell.flow,
                str(src),
                str(out),
                str(scratch),
            ]
        raise AssertionError(cell.tool)


def check_tools(ctx: Context, tools: Sequence[str]) -> None:
    if not Path(ctx.python).is_file():
        raise BenchError(f"--python {ctx.python}: no such interpreter")
    if "kiln" in tools and capture([*ctx.kiln, "--version"]) == "?":
        raise BenchError(
            f"kiln does not run: {shlex.join(ctx.kiln)} --version failed (run the benchmark"
            " with the interpreter kiln is installed for, or pass --python or --kiln)"
        )
    if {"uv-build", "build-uv"} & set(tools) and ctx.uv is None:
        raise BenchError("uv not found (install the uv package, or pass --uv PATH)")
    if {"build-uv", "build-pip"} & set(tools) and capture(
        [ctx.python, "-m", "build", "--version"]
    ) == "?":
        raise BenchError(f"build is not installed for {ctx.python} (pip install build)")
    if "build-pip" in tools and capture([ctx.python, "-m", "pip", "--version"]) == "?":
        raise BenchError(f"pip is not installed for {ctx.python}")


def ensure_wheelhouse(wheelhouse: Path, python: str) -> None:
    if any(wheelhouse.glob("*.whl")):
        return
    if wheelhouse.resolve() != DEFAULT_WHEELHOUSE.resolve():
        raise BenchError(f"--wheelhouse {wheelhouse} holds no wheels")
    log(f"bench: filling the wheelhouse: {python} {FILL_WHEELHOUSE}")
    result = subprocess.run([python, str(FILL_WHEELHOUSE)], check=False)
    if result.returncode != 0:
        raise BenchError("tests/fill_wheelhouse.py failed")


def setup_floor(ctx: Context, project: Project) -> None:
    venv = ctx.work / "floor" / project.name
    vpython = str(floor.venv_python(venv))
    if ctx.uv is not None:
        install = [ctx.uv, "pip", "install", "--python", vpython]
    else:
        install = [ctx.python, "-m", "pip", "--python", vpython, "install"]
    try:
        floor.setup(
            ctx.python,
            venv,
            project.path,
            project.backend,
            project.requires,
            install,
            ctx.base_env(),
        )
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None
    project.floor_venv = venv


def backend_version(ctx: Context, project: Project) -> str:
    name = requirement_name(project.requires[0]) if project.requires else "?"
    if project.floor_venv is not None:
        code = f"import importlib.metadata as m; print(m.version({name!r}))"
        version = capture([str(floor.venv_python(project.floor_venv)), "-c", code])
        if version != "?":
            return f"{name} {version}"
    return f"{name} {wheelhouse_version(ctx.wheelhouse, name)}"


# --------------------------------------------------------------------------- running


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
    # Like subprocess.run(capture_output=True), with two differences. The output goes to
    # files, so the clock stops when the tool exits, not when the last process holding
    # its pipes lets go. And the tool runs in its own session, so a timeout or Ctrl-C
    # stops its whole process tree and strays can be found.
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

        timer = threading.Timer(ctx.timeout, on_timeout)
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
    if timed_out.is_set():
        raise RunFailed(f"timed out after {ctx.timeout:g} s\n  $ {shlex.join(cmd)}")
    if stray := processes_in_session(proc.pid):
        # A tool that keeps a process after it exits (a daemon, a server) would carry
        # state into the next run, "cold" ones too, and eat CPU under other tools.
        results.stray_processes[cell.tool] = results.stray_processes.get(cell.tool, 0) + len(stray)
        kill_session(proc.pid)
        for pid in stray:  # those that left the group, too
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    output = stdout_path.read_text(errors="replace") + stderr_path.read_text(errors="replace")

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


# --------------------------------------------------------------------------- reporting


@dataclass
class Target:
    ok: bool | None  # None: not measured
    text: str


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.3f}"


def fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def column_cell(tool: str, project: str, flow: str, temperature: str) -> Cell:
    return Cell(tool, project, flow, temperature if tool == "kiln" else "")


def tables(
    results: Results,
    projects: Sequence[str],
    flows: Sequence[str],
    temperatures: Sequence[str],
    tools: Sequence[str],
    with_floor: bool,
) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table: medians, then ratios, per flow and temperature."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    for temperature in temperatures:
        for flow in flows:
            columns = list(tools) + ([FLOOR] if with_floor and temperature == "warm" else [])
            kiln_note = (
                "kiln's cache kept"
                if temperature == "warm"
                else "kiln's cache emptied before each run"
            )
            others = (
                " (same runs as warm: they keep no environments)" if temperature == "cold" else ""
            )
            title = (
                f"{temperature.upper()}, {FLOW_TITLES[flow]}: median seconds of "
                f"{results.rounds_done} round(s); {kiln_note}{others}"
            )
            rows = []
            ratio_rows = []
            for project in projects:
                medians = {
                    t: results.median(column_cell(t, project, flow, temperature)) for t in columns
                }
                rows.append([project, *(fmt(medians[t]) for t in columns)])
                kiln = medians.get("kiln")
                ratio_rows.append(
                    [project, *(fmt_ratio(ratio(medians[t], kiln)) for t in columns if t != "kiln")]
                )
            out.append((title, ["project", *(TOOL_TITLES[t] for t in columns)], rows))
            if "kiln" in columns and len(columns) > 1:
                header = ["project", *(f"{TOOL_TITLES[t]} / kiln" for t in columns if t != "kiln")]
                out.append(
                    (
                        f"{temperature.upper()}, {flow}: tool / kiln (above 1: kiln is faster)",
                        header,
                        ratio_rows,
                    )
                )
    return out


def targets(results: Results, projects: Sequence[str], flows: Sequence[str]) -> list[Target]:
    found: list[Target] = []

    def check(what: str, kiln_cell: Cell, other_cell: Cell, limit: float, other_name: str) -> None:
        value = ratio(results.median(kiln_cell), results.median(other_cell))
        if value is None:
            found.append(Target(None, f"SKIP  {what}: not measured (kiln or {other_name} missing)"))
            return
        verdict = "PASS" if value <= limit else "FAIL"
        found.append(
            Target(
                value <= limit,
                f"{verdict}  {what}: kiln / {other_name} = {value:.2f} (target ≤ {limit:g})",
            )
        )

    for project in (p for p in TARGET_FLOOR_PROJECTS if p in projects):
        if "default" in flows:
            kiln = Cell("kiln", project, "default", "warm")
            check(
                f"warm default, {project}",
                kiln,
                Cell("uv-build", project, "default", ""),
                TARGET_WARM_DEFAULT_VS_UV,
                "uv build",
            )
            check(
                f"warm default, {project}",
                kiln,
                Cell(FLOOR, project, "default", ""),
                TARGET_WARM_DEFAULT_VS_FLOOR,
                "floor",
            )
    if "wheel" in flows:
        for project in projects:
            check(
                f"warm --wheel, {project}",
                Cell("kiln", project, "wheel", "warm"),
                Cell("uv-build", project, "wheel", ""),
                TARGET_WARM_WHEEL_VS_UV,
                "uv build",
            )
    for flow in flows:
        for project in projects:
            check(
                f"cold {flow}, {project}",
                Cell("kiln", project, flow, "cold"),
                Cell("build-uv", project, flow, ""),
                TARGET_COLD_VS_BUILD_UV,
                "build --installer uv",
            )
    if results.version_samples:
        median_ms = statistics.median(results.version_samples) * 1000
        limit_ms = TARGET_VERSION_SECONDS * 1000
        ok = median_ms < limit_ms
        verdict = "PASS" if ok else "FAIL"
        found.append(
            Target(
                ok, f"{verdict}  kiln --version: {median_ms:.1f} ms (target < {limit_ms:.0f} ms)"
            )
        )
    return found


def machine_info() -> dict[str, str]:
    info = {
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": platform.processor() or "?",
        "memory": "?",
        "load": "?",
    }
    try:
        info["nproc"] = str(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        info["nproc"] = str(os.cpu_count() or "?")
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        if model := re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE):
            info["cpu"] = model.group(1).strip()
    with contextlib.suppress(OSError):
        meminfo = Path("/proc/meminfo").read_text(encoding="utf-8", errors="replace")
        if total := re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE):
            info["memory"] = f"{int(total.group(1)) / 1024 / 1024:.1f} GiB"
    with contextlib.suppress(OSError):
        info["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


PYTHON_VERSION_CODE = "import platform as p; print(p.python_implementation(), p.python_version())"


def warn_if_busy(machine: Mapping[str, str]) -> None:
    with contextlib.suppress(ValueError, IndexError):
        load, cpus = float(machine["load"].split()[0]), int(machine["nproc"])
        if load > cpus / 4:
            log(
                f"bench: warning: load average {load:.2f} on {cpus} CPUs: something else is "
                "running, and the numbers will be noisy"
            )


def versions(ctx: Context) -> dict[str, str]:
    def second_word(line: str) -> str:
        words = line.split()
        return words[1] if len(words) > 1 else line

    found = {
        "python": capture([ctx.python, "-c", PYTHON_VERSION_CODE]),
        "kiln": second_word(capture([*ctx.kiln, "--version"])),
        "uv": second_word(capture([ctx.uv, "--version"])) if ctx.uv else "not found",
        "build": second_word(capture([ctx.python, "-m", "build", "--version"])),
        "pip": second_word(capture([ctx.python, "-m", "pip", "--version"])),
    }
    git = ["git", "-C", str(REPO_DIR)]
    commit = capture([*git, "rev-parse", "--short", "HEAD"])
    if commit != "?":
        # capture() gives "?" for no output: a clean tree.
        dirty = capture([*git, "status", "--porcelain", "--untracked-files=all", "src"]) != "?"
        found["kiln"] += f" (git {commit}{' + uncommitted changes in src/' if dirty else ''})"
    return found


KILN_LOCATION_CODE = "import os, kiln; print(os.path.dirname(kiln.__file__))"


def kiln_fingerprint(python: str) -> str:
    """A hash of the installed kiln's Python files, to notice kiln changing mid-run (an
    editable install follows the working tree)."""
    where = capture([python, "-c", KILN_LOCATION_CODE])
    if where == "?" or not Path(where).is_dir():
        return "?"
    digest = hashlib.sha256()
    for path in sorted(Path(where).rglob("*.py")):
        digest.update(path.relative_to(where).as_posix().encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def render_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_lines(results: Results, meta: Mapping[str, Any]) -> list[str]:
    """Machine, versions, date and method: the same facts in both output formats."""
    machine: Mapping[str, str] = meta["machine"]
    vers: Mapping[str, str] = meta["versions"]
    if results.version_samples:
        version_line = (
            f"kiln --version: {fmt(statistics.median(results.version_samples))} s, median of "
            f"{len(results.version_samples)} (python -c pass: "
            f"{fmt(statistics.median(results.python_startup_samples))} s)"
        )
    else:
        version_line = "kiln --version: not measured"
    return [
        f"Date: {meta['date']}",
        f"Machine: {machine['nproc']} CPUs (nproc), {machine['cpu']}, {machine['memory']} RAM, "
        f"{machine['os']}; load average at start {machine['load']}, "
        f"at end {machine.get('load_at_end', '?')}",
        f"Python {vers['python']}; kiln {vers['kiln']}, installer {results.kiln_installer}; "
        f"uv {vers['uv']}; build {vers['build']}; pip {vers['pip']}",
        f"Backends: {', '.join(meta['backends'].values())}",
        f"Method: {results.rounds_done} round(s) after one discarded warm-up round, order "
        f"shuffled each round (seed {meta['seed']}); {meta['duration_seconds'] / 60:.1f} min; "
        f"`{meta['command']}`",
        version_line,
    ]


def report(
    results: Results,
    meta: Mapping[str, Any],
    table_list: Sequence[tuple[str, list[str], list[list[str]]]],
    target_list: Sequence[Target],
    *,
    markdown: bool,
) -> str:
    summary = summary_lines(results, meta)
    failures = [f"{cell.label}: {why}" for cell, why in sorted(results.failures.items())]
    if markdown:
        lines = [f"### kiln benchmark, {meta['date'][:10]}", ""]
        lines += [f"- {line}" for line in summary] + [""]
        for title, header, rows in table_list:
            lines += [f"**{title}**", "", *render_markdown(header, rows), ""]
        lines += ["**Targets**", "", *(f"- {t.text}" for t in target_list)]
        if failures:
            lines += ["", "**Failed cells** (left out)", "", *(f"- {f}" for f in failures)]
    else:
        lines = ["kiln benchmark", *summary, ""]
        for title, header, rows in table_list:
            lines += [title, *render_text(header, rows), ""]
        lines += ["Targets:", *(f"  {t.text}" for t in target_list)]
        if failures:
            lines += ["", "Failed cells (left out):", *(f"  {f}" for f in failures)]
    if meta.get("kiln_source_changed"):
        lines += ["", "WARNING: kiln's source files changed during the run: results mix versions."]
    if results.interrupted:
        lines += ["", "(interrupted: partial results)"]
    return "\n".join(lines) + "\n"


def artifact_mismatches(results: Results) -> list[str]:
    """Projects and flows whose tools produced differently named artifacts."""
    by_key: dict[tuple[str, str], dict[str, list[str]]] = {}
    for cell, names in results.artifacts.items():
        by_key.setdefault((cell.project, cell.flow), {})[cell.slug] = names
    problems = []
    for (project, flow), seen in sorted(by_key.items()):
        if len({tuple(n) for n in seen.values()}) > 1:
            problems.append(f"{project} {flow}: " + "; ".join(f"{k}: {v}" for k, v in seen.items()))
    return problems


def to_json(
    results: Results, meta: Mapping[str, Any], target_list: Sequence[Target]
) -> dict[str, Any]:
    cells = []
    for cell, samples in sorted(results.samples.items()):
        entry: dict[str, Any] = {
            "tool": cell.tool,
            "project": cell.project,
            "flow": cell.flow,
            "temperature": cell.temperature or None,
            "samples": [round(s, 4) for s in samples],
            "median": round(statistics.median(samples), 4),
            "min": round(min(samples), 4),
            "max": round(max(samples), 4),
        }
        if cell.tool != "kiln":
            # Paired with the same round's kiln run: the median of the per-round ratios,
            # which cancels drift between rounds (the tables use the ratio of medians).
            paired = {}
            for temperature in TEMPERATURES:
                kiln = results.samples.get(Cell("kiln", cell.project, cell.flow, temperature))
                if kiln and len(kiln) == len(samples):
                    ratios = (s / k for s, k in zip(samples, kiln, strict=True))
                    paired[temperature] = round(statistics.median(ratios), 3)
            entry["paired_ratio_to_kiln"] = paired
        cells.append(entry)
    return {
        **meta,
        "kiln_installer": results.kiln_installer,
        "rounds": results.rounds_done,
        "interrupted": results.interrupted,
        "cells": cells,
        "failures": {cell.slug: why for cell, why in results.failures.items()},
        "kiln_version_seconds": [round(s, 4) for s in results.version_samples],
        "python_startup_seconds": [round(s, 4) for s in results.python_startup_samples],
        "targets": [{"ok": t.ok, "text": t.text} for t in target_list],
        "stray_processes": results.stray_processes,
        "tmp_leftovers": {tool: sorted(names) for tool, names in results.tmp_leftovers.items()},
    }


# --------------------------------------------------------------------------- main


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


def prepare(ctx: Context, args: argparse.Namespace) -> list[Cell]:
    """Check the tools, fill the wheelhouse, set up the floor; return the cells to time."""
    check_tools(ctx, args.tools)
    ensure_wheelhouse(ctx.wheelhouse, ctx.python)
    for sub in ("tmp", "empty-index", "xdg-cache", "runs"):
        (ctx.work / sub).mkdir(parents=True, exist_ok=True)
    for name in args.projects:
        requires, backend = read_build_system(PROJECTS_DIR / name)
        project = Project(name, PROJECTS_DIR / name, backend, requires)
        ctx.projects[name] = project
        if not args.no_floor:
            log(f"bench: floor venv for {name} ({backend})")
            setup_floor(ctx, project)
        project.backend_version = backend_version(ctx, project)
    cells: list[Cell] = []
    for name in args.projects:
        for flow in args.flows:
            for tool in args.tools:
                temperatures = args.temperatures if tool == "kiln" else [""]
                cells += [Cell(tool, name, flow, t) for t in temperatures]
            if not args.no_floor:
                cells.append(Cell(FLOOR, name, flow, ""))
    return cells


def measure(
    ctx: Context, args: argparse.Namespace, cells: Sequence[Cell], rng: random.Random
) -> Results:
    """The warm-up round, ``kiln --version``, then the timed rounds. Ctrl-C stops early."""
    results = Results()
    try:
        log(f"bench: warm-up round ({len(cells)} runs, discarded)")
        start = time.perf_counter()
        run_round(ctx, cells, results, rng, warmup=True)
        took = time.perf_counter() - start
        estimate = took * args.rounds / 60
        log(f"bench: warm-up took {took:.0f} s; {args.rounds} round(s): about {estimate:.1f} min")
        if "kiln" in args.tools and args.version_runs > 0:
            time_version(ctx, results, args.version_runs)
        for number in range(1, args.rounds + 1):
            start = time.perf_counter()
            run_round(ctx, cells, results, rng, warmup=False)
            results.rounds_done = number
            log(f"bench: round {number}/{args.rounds} took {time.perf_counter() - start:.0f} s")
    except KeyboardInterrupt:
        results.interrupted = True
        log("bench: interrupted; reporting what was measured")
    return results


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
        cells = prepare(ctx, args)
        meta: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join(
                ["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "seed": seed,
            "machine": machine_info(),
            "versions": versions(ctx),
            "backends": {p.name: p.backend_version for p in ctx.projects.values()},
            "python_path": ctx.python,
            "kiln_command": ctx.kiln + ctx.kiln_args,
            "uv_path": ctx.uv,
            "wheelhouse": str(ctx.wheelhouse),
            "kiln_source_hash": kiln_fingerprint(ctx.python),
        }
        warn_if_busy(meta["machine"])
        results = measure(ctx, args, cells, random.Random(seed))
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
