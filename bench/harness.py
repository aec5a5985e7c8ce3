"""Preparing a run: the projects, the one environment and the caches every tool gets,
the command line of each tool, the floor's venvs and the cells to time."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import floor
from cells import (
    BENCH_DIR,
    DEFAULT_WHEELHOUSE,
    FILL_WHEELHOUSE,
    FLOOR,
    PROJECTS_DIR,
    STRIPPED_NAMES,
    STRIPPED_PREFIXES,
    BenchError,
    Cell,
    Project,
    log,
)
from machine import capture


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


def prepare(
    ctx: Context,
    projects: Sequence[str],
    flows: Sequence[str],
    tools: Sequence[str],
    temperatures: Sequence[str],
    *,
    with_floor: bool,
) -> list[Cell]:
    """Check the tools, fill the wheelhouse, set up the floor; return the cells to time."""
    check_tools(ctx, tools)
    ensure_wheelhouse(ctx.wheelhouse, ctx.python)
    for sub in ("tmp", "empty-index", "xdg-cache", "runs"):
        (ctx.work / sub).mkdir(parents=True, exist_ok=True)
    for name in projects:
        requires, backend = read_build_system(PROJECTS_DIR / name)
        project = Project(name, PROJECTS_DIR / name, backend, requires)
        ctx.projects[name] = project
        if with_floor:
            log(f"bench: floor venv for {name} ({backend})")
            setup_floor(ctx, project)
        project.backend_version = backend_version(ctx, project)
    cells: list[Cell] = []
    for name in projects:
        for flow in flows:
            for tool in tools:
                kinds = temperatures if tool == "kiln" else [""]
                cells += [Cell(tool, name, flow, t) for t in kinds]
            if with_floor:
                cells.append(Cell(FLOOR, name, flow, ""))
    return cells
