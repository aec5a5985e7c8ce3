"""The nouns a wheelhouse run passes between its layers.

Resolution makes :class:`Pin` s; the graph makes :class:`Node` s of them; the
scheduler hands a ready node's :class:`JobSpec` to an executor and gets a
:class:`JobResult` back; the run records each node's :class:`Outcome`. Job
specs and results go through JSON (to a job's process, or to another machine),
so they hold only plain data.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileRef:
    """A distribution file on an index, a find-links directory or the local disk."""

    # https://, http:// or file:// (a local path is given as a file:// URL).
    url: str
    filename: str
    # Lower-case hex SHA-256 when the lock, the index or a --hash gave one.
    sha256: str | None = None


@dataclass(frozen=True)
class Pin:
    """One package at one version, as resolution or a lock file chose it."""

    # Canonical name (packaging.utils.canonicalize_name).
    name: str
    version: str
    sdist: FileRef | None = None
    # Wheels the lock or the index named; used only for --binary packages and seeds.
    wheels: tuple[FileRef, ...] = ()
    # A project directory given as input is built from the directory itself.
    project_dir: Path | None = None

    @property
    def id(self) -> str:
        return f"{self.name}=={self.version}"


class NodeKind(str, enum.Enum):
    RUNTIME = "runtime"  # a package of the resolved tree
    BUILD = "build"  # needed only to build another package (--build-deps source)


class Provenance(str, enum.Enum):
    SOURCE = "source"  # built from its sdist (or project directory)
    BINARY = "binary"  # --binary: its wheel is taken from the index
    SEED = "seed"  # a wheel from the index that breaks a build cycle
    SKIP = "skip"  # the settings say skip


@dataclass
class Node:
    """A package to put in the wheelhouse for one interpreter."""

    pin: Pin
    # The interpreter's identity (kiln.interpreters.Interpreter.key).
    python: str
    kind: NodeKind = NodeKind.RUNTIME
    provenance: Provenance = Provenance.SOURCE
    # Requirement strings its build environment needs: [build-system].requires
    # (or the legacy default) plus the settings' extra build requirements.
    build_requires: tuple[str, ...] = ()
    # Ids of in-tree nodes whose wheels its build environment installs
    # (--build-deps source); the scheduler starts it only once they exist.
    build_deps: tuple[str, ...] = ()
    # Ids of the runtime dependencies, from the built wheel's metadata (report only).
    runtime_deps: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return node_id(self.pin.name, self.pin.version, self.python)


def node_id(name: str, version: str, python: str) -> str:
    return f"{name}=={version}@{python}"


def node_label(node: str) -> str:
    """A node id for people: ``six==1.17.0 (cp312)`` for ``six==1.17.0@cp312-linux_x86_64-…``."""
    pin, _, python = node.partition("@")
    return f"{pin} ({python.split('-', 1)[0]})" if python else pin


class Status(str, enum.Enum):
    BUILT = "built"
    CACHED = "cached"  # the wheel cache had it: nothing was built
    BINARY = "binary"  # taken as a wheel (--binary, seed)
    FAILED = "failed"
    BLOCKED = "blocked"  # a build dependency failed: not attempted
    SKIPPED = "skipped"
    CANCELLED = "cancelled"  # Ctrl-C or --fail-fast stopped it


@dataclass(frozen=True)
class JobSpec:
    """Everything one build needs, in plain data (it crosses processes and machines)."""

    node: str  # the node id
    name: str
    version: str
    # An sdist archive or a project directory (patched sources are a directory).
    source: str
    # An empty directory of the job's own: the wheel lands here.
    outdir: str
    cache_dir: str
    # The target interpreter (a path), or None for the one running kiln.
    python: str | None = None
    # What the run learnt of it (kiln.interpreters.to_json), so the job need not ask.
    interpreter: dict[str, Any] | None = None
    constraints: tuple[str, ...] = ()
    config_settings: dict[str, Any] = field(default_factory=dict)
    # The whole environment the build starts from (not an overlay).
    environ: dict[str, str] = field(default_factory=dict)
    installer: str = "auto"
    hook_runner: str = "auto"
    compiler_cache: str | None = None
    compiler_cache_remote: str | None = None
    # How many cores the build's compilers may use.
    cpu_share: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        data = dict(data)
        data["constraints"] = tuple(data.get("constraints", ()))
        return cls(**data)


@dataclass(frozen=True)
class JobResult:
    """What one build produced; a failed build is data, not an exception."""

    node: str
    ok: bool
    # The wheel's path in the job's outdir, when ok.
    wheel: str | None = None
    seconds: float = 0.0
    exit_code: int = 0
    # The one-line error message, when not ok.
    error: str | None = None
    log_path: str | None = None
    # Where the failed build was kept (for `kiln debug NAME`).
    kept: str | None = None
    # The compiler cache's tool, hits and misses, when one was on.
    compiler_cache: dict[str, Any] | None = None
    # Seconds per step ("environment", each hook name), when known.
    timings: dict[str, float] = field(default_factory=dict)
    # Where it ran: "local" or a worker's address.
    worker: str = "local"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        return cls(**data)


@dataclass
class Outcome:
    """What happened to one node in a run."""

    node: str
    status: Status
    # The wheel's path in the wheelhouse, when there is one.
    wheel: Path | None = None
    key: str | None = None
    result: JobResult | None = None
    # The failed node that blocked this one, or the reason it was skipped.
    reason: str | None = None
