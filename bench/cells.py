"""What the benchmark times and what it collects: names, cells, projects, results.

Shared by every module of the bench; imports none of them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BenchError(Exception):
    """Something that stops the whole benchmark (a missing tool, a bad option)."""


class RunFailed(Exception):
    """One run failed; its cell is aborted."""


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
    """Everything measured: the timed rounds' samples and what was noticed on the way."""

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
