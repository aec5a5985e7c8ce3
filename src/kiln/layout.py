"""The names kiln's places go by, and where they resolve to.

The cache directory and its buckets, a project's label and its place in the
cache (the options' choices and variables are in :mod:`kiln.options`). Cheap to
import on purpose: the command line reads its arguments and starts the last run's warm
worker (:mod:`kiln.headstart`) before it imports the rest of kiln.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The cache's buckets. Each carries a layout version in its name, so a later kiln
# can change a bucket's layout without misreading an older one.
RUNS = "runs-v1"
# Stable per-project working directories (see kiln.workspace): same path every build.
PROJECTS = "projects-v1"
LOGS = "logs-v1"
# Reusable build environments (kiln.environments.cached, which names it too).
ENVS = "envs-v1"
# kiln wheelhouse's buckets (made when a wheelhouse run first needs them). Each
# entry is ``<label>`` or ``<label>.<suffix>`` (a ``.partial`` being written), and
# ``<label>.lock`` beside it is held while a run writes or reads it, so
# ``kiln cache clean`` can tell what a live run is using.
# Built wheels by wheel key (kiln.wheelhouse.wheelcache).
WHEELS = "wheels-v1"
# Downloaded sdists, by content (kiln.wheelhouse.sources).
SDISTS = "sdists-v1"
# Resolved pins, by the resolution's inputs (kiln.wheelhouse.resolution).
RESOLUTIONS = "resolutions-v1"
# Records of wheelhouse runs (kiln.wheelhouse.run).
WHEELHOUSE_RUNS = "wheelhouse-v1"
WHEELHOUSE_BUCKETS = (WHEELS, SDISTS, RESOLUTIONS, WHEELHOUSE_RUNS)


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
    """``explicit`` (the request's cache_dir: --cache-dir, else $KILN_CACHE_DIR, filled in
    by :func:`kiln.options.environment_defaults`), else the platform default."""
    if explicit is not None:
        return Path(explicit).expanduser().absolute()
    return default_cache_dir()


def absolute_source(path: Path) -> Path:
    """SRC as an absolute path, with ``~`` expanded and links kept."""
    # abspath, not Path.absolute(): "." and ".." must not survive into names.
    return Path(os.path.abspath(Path(path).expanduser()))  # noqa: PTH100 (keep links)


def source_label(source: Path) -> str:
    """A short name for SRC, for logs and places: the directory's name or the archive's stem."""
    name = absolute_source(source).name
    for suffix in (".tar.gz", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def project_label(label: str) -> str:
    """A safe directory name for ``label``: never empty, never ``.``/``..`` or hidden."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).lstrip(".") or "build"


def project_place(cache_dir: Path, label: str) -> Path:
    """The stable directory in the cache where builds of the project ``label`` run."""
    return cache_dir / PROJECTS / project_label(label)


# What a run directory holds (see kiln.workspace); kiln.cache reads them to prune.
RUN_LOCK = ".lock"
FAILED_RECORD = "failed.json"
HOOK_RECORD = "hook.json"
BUILD_LOG = "build.log"
# What a build works on in its place (see kiln.workspace.Workspace.stable_dir).
STABLE_NAMES = ("tmp", "source", "from-sdist", "build", "metadata")
# The suffix of the file beside a place that holds its workers' plans.
WORKER_PLANS_SUFFIX = ".worker.json"
LOCK_SUFFIX = ".lock"


def lock_beside(path: Path) -> Path:
    """The lock file beside ``path`` (``<name>.lock``): held while a run uses ``path``."""
    return path.with_name(f"{path.name}{LOCK_SUFFIX}")


def worker_plans(place: Path) -> Path:
    """Beside a project's place: the plans of its last runs' first warm workers."""
    return place.with_name(f"{place.name}{WORKER_PLANS_SUFFIX}")
