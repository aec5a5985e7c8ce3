"""sccache: its settings, remote storage, and this build's counts from a server of its own.

sccache's server reads its settings (base dirs, storage) when it starts and
keeps its counters per server, so each build gets a server of its own, started
with this build's settings and stopped by :meth:`Sccache.close`: its counters
are the build's. Two servers on one local cache directory at once may fail as
both evict entries: concurrent jobs should each have their own ``SCCACHE_DIR``,
or use ccache (docs/how-it-works.md, "Caveats").

A user who sets ``SCCACHE_SERVER_PORT`` or ``SCCACHE_SERVER_UDS`` chooses a
server: kiln uses that one (starting it if need be) and leaves it running. Its
settings are whatever it was started with, and this build's counts are the
difference of its counters, which includes whatever else it compiled meanwhile.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kiln.compilers.base import BaseCompilerCache
from kiln.compilers.cargo import set_rustc_wrapper
from kiln.compilers.common import dotted, probe, redact_url
from kiln.compilers.sccache_server import (
    read_stats,
    server_alive,
    start_private_server,
    start_server,
    stop_server,
)
from kiln.compilers.stats import CompilerCacheStats
from kiln.errors import EnvironmentSetupError, UsageError

logger = logging.getLogger(__name__)

# A build's own server ends by itself after this long idle, should kiln die
# without stopping it (sccache's default is 600 s).
_PRIVATE_SERVER_IDLE_SECONDS = 3600


class Sccache(BaseCompilerCache):
    """sccache: a server does the work; kiln runs one of its own for each build."""

    name = "sccache"

    def __init__(self, executable: str) -> None:
        super().__init__(executable)
        self._client_environ: dict[str, str] | None = None
        self._before: dict[str, Any] | None = None
        self._owns_server = False
        self._final: CompilerCacheStats | None = None
        self._remote_backend: str | None = None
        self._version_info: tuple[tuple[int, ...], frozenset[str]] | None = None

    def version_info(self) -> tuple[tuple[int, ...], frozenset[str]]:
        """(version, enabled storage features) from ``sccache --version`` and ``--help``."""
        if self._version_info is None:
            match = re.search(r"(\d+(?:\.\d+)+)", probe([self.executable, "--version"]))
            version = tuple(int(part) for part in match.group(1).split(".")) if match else ()
            features = frozenset(
                name.lower()
                for name, enabled in re.findall(
                    r"^\s+(\w+):\s+(true|false)\s*$",
                    probe([self.executable, "--help"]),
                    re.MULTILINE,
                )
                if enabled == "true"
            )
            self._version_info = (version, features)
        return self._version_info

    def cmake_launcher(self) -> str | None:
        # None: CC/CXX carry sccache already, and CMake would run `sccache sccache
        # cc`, which sccache rejects. CMake takes it from CC/CXX on its first
        # configure, the real compiler as its first argument.
        return None

    def _configure(
        self,
        environ: dict[str, str],
        base: Mapping[str, str],
        *,
        base_dirs: list[Path],
        work_dir: Path,
        remote: str | None,
    ) -> None:
        set_rustc_wrapper(environ, base, self.executable)
        # sccache >= 0.15 strips these prefixes (rather than rewriting paths
        # relative to the working directory, as ccache does), so the place needs
        # one of its own. Each must exist; C and C++ only, not Rust.
        existing = [str(d) for d in base_dirs if d.is_dir()]
        if existing and "SCCACHE_BASEDIRS" not in base:
            environ["SCCACHE_BASEDIRS"] = os.pathsep.join(existing)
        if remote:
            self._set_remote(environ, remote)
        self.close()  # a server this object started for an earlier environ() call
        self._final = None
        if "SCCACHE_SERVER_PORT" in base or "SCCACHE_SERVER_UDS" in base:
            self._owns_server = False
            if not server_alive(environ):
                start_server(self.executable, environ, remote_backend=self._remote_backend)
            else:
                self._check_running_server(environ)
        else:
            self._owns_server = True
            # close() stops it; the idle timeout, should kiln die first.
            environ.setdefault("SCCACHE_IDLE_TIMEOUT", str(_PRIVATE_SERVER_IDLE_SECONDS))
            start_private_server(
                self.executable, environ, work_dir, remote_backend=self._remote_backend
            )
        self._client_environ = dict(environ)
        self._before = read_stats(self.executable, environ)

    def _set_remote(self, environ: dict[str, str], remote: str) -> None:
        scheme = urlsplit(remote).scheme.lower()
        if scheme in ("redis", "rediss", "redis+unix", "unix"):
            backend, variable = "redis", "SCCACHE_REDIS_ENDPOINT"
        elif scheme in ("http", "https"):
            backend, variable = "webdav", "SCCACHE_WEBDAV_ENDPOINT"
        else:
            raise UsageError(
                f"sccache cannot use compiler cache remote {redact_url(remote)!r}: kiln hands "
                "sccache redis://, rediss://, redis+unix:// (Redis) and http(s):// (WebDAV) URLs"
            )
        version, features = self.version_info()
        if features and backend not in features:
            raise EnvironmentSetupError(
                f"sccache {dotted(version)} at {self.executable} was built without "
                f"{backend} support (its --help lists the enabled features)"
            )
        previous = environ.get(variable)
        if previous and previous != remote:
            logger.warning(
                "%s=%s replaced by the compiler cache remote %s",
                variable,
                redact_url(previous),
                redact_url(remote),
            )
        environ[variable] = remote
        self._remote_backend = backend
        if "SCCACHE_MULTILEVEL_CHAIN" in environ:
            return
        if version and version < (0, 15):
            logger.info(
                "sccache %s has no multi-level cache: the remote storage replaces its local one",
                dotted(version),
            )
            return
        # The local disk first, the remote behind it; a remote that cannot be
        # written does not fail the build (sccache's default policy).
        environ["SCCACHE_MULTILEVEL_CHAIN"] = f"disk,{backend}"

    def _check_running_server(self, environ: Mapping[str, str]) -> None:
        """Say so when the user's server, started earlier with other settings, serves
        this build: its base dirs are not this build's (compiles may miss), or it
        lacks the remote."""
        current = read_stats(self.executable, environ)
        if current is None:
            return
        wanted = environ.get("SCCACHE_BASEDIRS", "")
        basedirs = [str(d).rstrip("/\\") for d in current.get("basedirs") or []]
        if wanted and not all(d.rstrip("/\\") in basedirs for d in wanted.split(os.pathsep)):
            logger.info(
                "the sccache server at SCCACHE_SERVER_PORT/SCCACHE_SERVER_UDS strips base "
                "directories %s, not this run's %s: compiles may miss the cache; unset those "
                "variables to let kiln run a server of its own for each build",
                basedirs or "(none)",
                wanted,
            )
        location = str(current.get("cache_location", ""))
        if self._remote_backend and self._remote_backend not in location.lower():
            logger.warning(
                "the sccache server at SCCACHE_SERVER_PORT/SCCACHE_SERVER_UDS was started "
                "without the remote storage (it uses: %s); stop it (sccache --stop-server) "
                "or unset those variables",
                location,
            )

    def stats(self) -> CompilerCacheStats | None:
        if self._final is not None:
            return self._final
        if self._client_environ is None or self._before is None:
            return None
        if self._owns_server and not server_alive(self._client_environ):
            return None  # stopped (or idle too long): its counters are gone
        after = read_stats(self.executable, self._client_environ)
        if after is None:
            return None
        return sccache_stats_difference(self._before, after)

    def close(self) -> None:
        """Stop this build's own server, keeping its final statistics for stats()."""
        if not self._owns_server or self._client_environ is None:
            return
        self._final = self.stats()
        environ, self._client_environ = self._client_environ, None
        stop_server(self.executable, environ)


def _sccache_counts(data: Mapping[str, Any]) -> dict[str, int]:
    stats = data.get("stats") or {}

    def number(key: str) -> int:
        value = stats.get(key)
        return value if isinstance(value, int) else 0

    def per_language(key: str) -> int:
        value = stats.get(key)
        counts = value.get("counts") if isinstance(value, dict) else None
        return sum(n for n in counts.values() if isinstance(n, int)) if counts else 0

    levels = stats.get("multi_level") or []
    remote_levels = [level for level in levels[1:] if isinstance(level, dict)]
    return {
        "requests": number("compile_requests"),
        "hits": per_language("cache_hits"),
        "misses": per_language("cache_misses"),
        # Links and version probes are "not compile" requests; ccache calls them uncacheable.
        "uncacheable": number("requests_not_cacheable")
        + number("requests_not_compile")
        + number("requests_unsupported_compiler")
        + number("non_cacheable_compilations")
        + per_language("cache_errors"),
        "remote_hits": sum(int(level.get("hits") or 0) for level in remote_levels),
        "remote_errors": sum(int(level.get("write_failures") or 0) for level in remote_levels),
    }


def sccache_stats_difference(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> CompilerCacheStats | None:
    """The counts between two ``sccache --show-stats --stats-format json`` outputs;
    None when the counters went back (the server restarted in between)."""
    old, new = _sccache_counts(before), _sccache_counts(after)
    difference = {key: new[key] - old[key] for key in new}
    if any(value < 0 for value in difference.values()):
        logger.debug("sccache's counters went back: its server restarted during the build")
        return None
    return CompilerCacheStats(
        hits=difference["hits"],
        misses=difference["misses"],
        uncacheable=difference["uncacheable"],
        remote_hits=difference["remote_hits"],
        remote_errors=difference["remote_errors"],
    )
