"""kiln's cache directory: where it resolves to, and its named buckets.

Everything kiln writes outside the output directory lives here, so a user who
can write to one place (a CI cache, a container's one writable volume) can
run kiln. Each bucket carries a layout version in its name, so a later kiln
can change a bucket's layout without misreading an older one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import UsageError

CACHE_DIR_ENV = "KILN_CACHE_DIR"

# Written into CACHEDIR.TAG; backup tools skip directories holding it
# (https://bford.info/cachedir/).
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by kiln.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)

SCRATCH = "scratch-v1"
LOGS = "logs-v1"

# Logs kept from earlier runs; older ones are removed when a run starts.
KEPT_LOGS = 50


def default_cache_dir() -> Path:
    """The platform's per-user cache directory for kiln."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "kiln" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "kiln"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base_dir / "kiln"


def resolve_cache_dir(explicit: Path | None = None) -> Path:
    """``explicit`` (from --cache-dir), else $KILN_CACHE_DIR, else the platform default."""
    if explicit is not None:
        return Path(explicit).expanduser().absolute()
    from_env = os.environ.get(CACHE_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute()
    return default_cache_dir()


@dataclass(frozen=True)
class Cache:
    """An existing, tagged cache directory."""

    root: Path

    @classmethod
    def open(cls, explicit: Path | None = None) -> Cache:
        root = resolve_cache_dir(explicit)
        try:
            root.mkdir(parents=True, exist_ok=True)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(CACHEDIR_TAG, encoding="utf-8")
        except OSError as error:
            raise UsageError(
                f"cannot use cache directory {root}: {error.strerror or error}; "
                f"choose another with --cache-dir or {CACHE_DIR_ENV}"
            ) from error
        return cls(root)

    def bucket(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prune_logs(self, keep: int = KEPT_LOGS) -> None:
        """Remove all but the newest ``keep`` logs."""

        def modified(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except OSError:  # removed meanwhile by a concurrent run
                return 0.0

        logs = sorted(self.bucket(LOGS).glob("*.log"), key=modified, reverse=True)
        for old in logs[keep:]:
            old.unlink(missing_ok=True)
