"""What a wheelhouse run is asked to do: :class:`WheelhouseRequest`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from kiln.errors import UsageError
from kiln.options import COMPILER_CACHE_CHOICES, HOOK_RUNNER_CHOICES, INSTALLER_CHOICES

BuildDeps = Literal["index", "source"]
BUILD_DEPS_CHOICES: tuple[BuildDeps, ...] = ("index", "source")
DEFAULT_OUTDIR = Path("wheelhouse")
# The report's name in the output directory, beside the wheels and simple/.
REPORT_NAME = "report.json"
# A Dask scheduler's address as its client takes it: [SCHEME://]HOST:PORT, the
# schemes a remote cluster speaks (Dask's own check comes late, as a bare ValueError).
SCHEDULER_ADDRESS = re.compile(
    r"((tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}"
)


@dataclass(frozen=True)
class WheelhouseRequest:
    """A tree to build into a wheelhouse, as the CLI or an API caller describes it."""

    # Requirement strings (PEP 508), as on pip's command line.
    requirements: tuple[str, ...] = ()
    # Requirement files (-r) and PEP 751 lock files (pylock.toml).
    requirement_files: tuple[Path, ...] = ()
    # Project directories: each is built, and its [project] dependencies are inputs.
    projects: tuple[Path, ...] = ()
    constraints: tuple[Path, ...] = ()
    outdir: Path = DEFAULT_OUTDIR
    cache_dir: Path | None = None
    # Interpreters to build for (kiln.interpreters.find_interpreter specs); empty: kiln's own.
    pythons: tuple[str, ...] = ()
    # Parallel builds; None: the CPU count.
    jobs: int | None = None
    # "index": build requirements are wheels from the index; "source": built here first.
    build_deps: BuildDeps = "index"
    # Canonical names whose wheels are taken from the index instead of built; ":all:" for all.
    binary: frozenset[str] = frozenset()
    # kiln's settings file (TOML) and a fromager overrides tree.
    settings: Path | None = None
    overrides: Path | None = None
    fail_fast: bool = False
    installer: str = "auto"
    hook_runner: str = "auto"
    # On for the whole tree when ccache or sccache is installed ("none" turns it off).
    compiler_cache: str | None = "auto"
    compiler_cache_remote: str | None = None
    # Index options, passed to the resolver and the installers.
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    # Where the JSON report goes; None: OUTDIR/report.json.
    report: Path | None = None
    # Seconds a resolution of unpinned input is reused; None: a day ($KILN_ENV_TTL).
    resolution_ttl: float | None = None
    # A Dask scheduler's address (tcp://host:8786): the jobs run on its workers.
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if not (self.requirements or self.requirement_files or self.projects):
            raise UsageError(
                "kiln wheelhouse needs something to build: requirements, -r FILE "
                "(a requirements file or a pylock.toml) or a project directory"
            )
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"-j/--jobs must be 1 or more, not {self.jobs}")
        for name, value, choices in (
            ("--build-deps", self.build_deps, BUILD_DEPS_CHOICES),
            ("--installer", self.installer, INSTALLER_CHOICES),
            ("--hook-runner", self.hook_runner, HOOK_RUNNER_CHOICES),
        ):
            if value not in choices:
                raise UsageError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if self.compiler_cache is not None and self.compiler_cache not in COMPILER_CACHE_CHOICES:
            raise UsageError(
                f"unknown --compiler-cache {self.compiler_cache!r}; "
                f"choose one of {', '.join(COMPILER_CACHE_CHOICES)}"
            )
        if self.scheduler is not None and not SCHEDULER_ADDRESS.fullmatch(self.scheduler):
            raise UsageError(
                f"--scheduler (or $KILN_SCHEDULER) {self.scheduler!r} is not a Dask "
                "scheduler's address: tcp://HOST:PORT"
            )
        if self.no_index and self.index_url:
            raise UsageError("--no-index and --index-url contradict each other; pick one")

    @property
    def report_path(self) -> Path:
        return self.report if self.report is not None else self.outdir / REPORT_NAME

    @property
    def job_count(self) -> int:
        return self.jobs if self.jobs is not None else (os.cpu_count() or 1)

    def takes_binary(self, name: str) -> bool:
        return ":all:" in self.binary or name in self.binary

    def with_environment_defaults(self, environ: Mapping[str, str]) -> WheelhouseRequest:
        """Unset fields from the ``KILN_*`` variables a build reads too."""
        from kiln.options import environment_defaults

        fields = {
            "cache_dir": self.cache_dir,
            "installer": self.installer,
            "hook_runner": self.hook_runner,
            "compiler_cache": self.compiler_cache,
            "compiler_cache_remote": self.compiler_cache_remote,
            "env_ttl": self.resolution_ttl,
        }
        filled = environment_defaults(fields, environ, read_env_dir=False)
        if "env_ttl" in filled:
            filled["resolution_ttl"] = filled.pop("env_ttl")
        if self.scheduler is None and environ.get("KILN_SCHEDULER"):
            filled["scheduler"] = environ["KILN_SCHEDULER"]
        return replace(self, **filled) if filled else self


def binary_names(values: Iterable[str]) -> frozenset[str]:
    """``--binary`` values (repeatable, comma-separated) as canonical names."""
    from packaging.utils import canonicalize_name

    names: set[str] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if name:
                names.add(name if name == ":all:" else canonicalize_name(name))
    return frozenset(names)
