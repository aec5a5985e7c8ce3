"""What a build produced: :class:`Artifact` and :class:`BuildResult`."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import UsageError
from kiln.jsonfiles import write_json

# The key of ``BuildResult.timings`` for the time spent setting up build environments.
ENVIRONMENT_TIMING = "environment"


@dataclass(frozen=True)
class Artifact:
    """One file kiln placed in the output directory."""

    path: Path
    # The distribution ("sdist", "wheel" or "editable"); named kind in the public API.
    kind: str
    size: int

    @property
    def name(self) -> str:
        return self.path.name

    @functools.cached_property
    def sha256(self) -> str:
        """The file's SHA-256, computed when first asked for (hashlib is slow to load)."""
        from kiln.digests import file_sha256

        return file_sha256(self.path)

    @classmethod
    def from_file(cls, path: Path, kind: str) -> Artifact:
        return cls(path, kind, path.stat().st_size)


@dataclass(frozen=True)
class BuildStep:
    """How one artifact was built: from where, with which backend and requirements."""

    distribution: str
    source_dir: Path
    backend: str
    requirements: tuple[str, ...]
    seconds: float


@dataclass
class BuildResult:
    """Everything a build produced and how; ``metadata`` is set by metadata-only runs."""

    source: Path
    outdir: Path | None
    isolated: bool
    installer: str | None
    python: str
    log_path: Path | None
    artifacts: list[Artifact] = field(default_factory=list)
    steps: list[BuildStep] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    # The compiler cache's tool, and this build's hits and misses, when one was on.
    compiler_cache: dict[str, Any] | None = None
    seconds: float = 0.0
    # Seconds spent setting up the build environment ("environment") and in each
    # hook (by hook name), summed over the build's distributions.
    timings: dict[str, float] = field(default_factory=dict)
    # The version of ``python`` ("3.12.1"), which the build environments were made
    # from (--python), else the one running kiln.
    python_version: str = field(default_factory=lambda: sys.version.split()[0])

    def report(self) -> dict[str, Any]:
        """The JSON-ready report that ``--report`` writes."""
        from kiln import __version__

        report: dict[str, Any] = {
            "kiln_version": __version__,
            "source": str(self.source),
            "outdir": str(self.outdir) if self.outdir else None,
            "isolated": self.isolated,
            "installer": self.installer,
            "python": self.python,
            "python_version": self.python_version,
            "platform": sys.platform,
            "log": str(self.log_path) if self.log_path else None,
            "seconds": round(self.seconds, 3),
            "artifacts": [
                {
                    "name": a.name,
                    "path": str(a.path),
                    "kind": a.kind,
                    "size": a.size,
                    "sha256": a.sha256,
                }
                for a in self.artifacts
            ],
            "steps": [
                {
                    "distribution": s.distribution,
                    "source_dir": str(s.source_dir),
                    "backend": s.backend,
                    "requirements": list(s.requirements),
                    "seconds": round(s.seconds, 3),
                }
                for s in self.steps
            ],
        }
        if self.metadata is not None:
            report["metadata"] = self.metadata
        report["compiler_cache"] = self.compiler_cache
        report["timings"] = {name: round(s, 3) for name, s in self.timings.items()}
        return report


def write_report(result: BuildResult, path: Path) -> None:
    """Write ``result.report()`` to ``path`` atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result.report(), indent=2)
    except OSError as error:
        raise UsageError(f"cannot write report {path}: {error.strerror or error}") from error
