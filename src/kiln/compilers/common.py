"""Helpers shared by both tools and every build system's wiring."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

# Launchers that may already stand before the compiler in CC/CXX. Wrapping one of
# them again would nest two caches, or a cache around a distributed compiler.
LAUNCHERS = frozenset({"ccache", "sccache", "distcc", "icecc", "buildcache"})
CACHES = frozenset({"ccache", "sccache"})
# A bound for version probes.
PROBE_TIMEOUT = 30.0


def launcher_name(word: str, environ: Mapping[str, str]) -> str | None:
    """The launcher ``word`` names (ccache, sccache, distcc...), or None for a compiler.

    A compiler named through ccache's masquerade directory (``/usr/lib/ccache/gcc``,
    a link to ccache) counts as ccache.
    """
    for candidate in (word, _resolve(word, environ)):
        if candidate is None:
            continue
        stem = Path(candidate).name.lower().removesuffix(".exe")
        if stem in LAUNCHERS:
            return stem
    return None


def _resolve(word: str, environ: Mapping[str, str]) -> str | None:
    found = shutil.which(word, path=environ.get("PATH"))
    if found is None:
        return None
    with contextlib.suppress(OSError):
        return os.path.realpath(found)
    return None


def absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))  # noqa: PTH100 (normalised, symlinks kept)


def same_file(a: str, b: str) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def probe(command: list[str]) -> str:
    """What a short informational command prints (stdout and stderr), or ""."""
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.debug("%s failed: %s", " ".join(command), error)
        return ""
    return result.stdout + result.stderr


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version)) if version else "(unknown version)"


def redact_url(url: str) -> str:
    """``url`` without its password, fit for logs and reports."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    # Any user information goes: ccache reads redis://SECRET@host as a password.
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))
