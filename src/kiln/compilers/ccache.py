"""ccache: its settings, remote storage, and this build's counts from a stats log of its own."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from kiln.compilers.base import BaseCompilerCache
from kiln.compilers.common import dotted, probe, redact_url
from kiln.compilers.stats import CompilerCacheStats
from kiln.errors import EnvironmentSetupError, UsageError

logger = logging.getLogger(__name__)


class Ccache(BaseCompilerCache):
    """ccache: counts this build's results exactly through a stats log of its own."""

    name = "ccache"

    def __init__(self, executable: str) -> None:
        super().__init__(executable)
        self._stats_log: Path | None = None
        self._user_stats_log: str | None = None
        self._forwarded = False
        self._version_info: tuple[tuple[int, ...], frozenset[str]] | None = None

    def version_info(self) -> tuple[tuple[int, ...], frozenset[str]]:
        """(version, features) from ``ccache --version``: ((4, 7, 5), {"redis-storage", ...})."""
        if self._version_info is None:
            output = probe([self.executable, "--version"])
            match = re.search(r"ccache version (\d+(?:\.\d+)*)", output)
            version = tuple(int(part) for part in match.group(1).split(".")) if match else ()
            features = re.search(r"^Features:(.*)$", output, re.MULTILINE)
            self._version_info = (version, frozenset(features.group(1).split() if features else ()))
        return self._version_info

    def cmake_launcher(self) -> str | None:
        # Also safe when CC is wrapped too: ccache drops a ccache it finds as its compiler.
        return self.executable

    def _configure(
        self,
        environ: dict[str, str],
        base: Mapping[str, str],
        *,
        base_dirs: list[Path],
        work_dir: Path,
        remote: str | None,
    ) -> None:
        # Paths under it are rewritten relative to the working directory, so the
        # place needs no base dir of its own: one, kiln's cache, covers both.
        environ.setdefault("CCACHE_BASEDIR", str(base_dirs[-1]))
        # With -g ccache hashes the working directory too, and every location
        # would miss (docs/how-it-works.md, "The working directory").
        if "CCACHE_NOHASHDIR" not in base and "CCACHE_HASHDIR" not in base:
            environ["CCACHE_NOHASHDIR"] = "1"
        # One block per call lands in this log: this build's counts, whatever
        # else uses the cache meanwhile. The user's own log gets them in stats().
        work_dir.mkdir(parents=True, exist_ok=True)
        self._stats_log = work_dir / "ccache-stats.log"
        self._stats_log.write_bytes(b"")
        self._user_stats_log = base.get("CCACHE_STATSLOG") or None
        self._forwarded = False
        environ["CCACHE_STATSLOG"] = str(self._stats_log)
        if remote:
            self._set_remote(environ, remote)

    def _set_remote(self, environ: dict[str, str], remote: str) -> None:
        version, features = self.version_info()
        if version and version < (4, 4):
            raise EnvironmentSetupError(
                f"ccache {dotted(version)} has no remote storage; "
                "--compiler-cache-remote needs ccache >= 4.4"
            )
        scheme = urlsplit(remote).scheme.lower()
        if not scheme:
            raise UsageError(
                f"compiler cache remote {redact_url(remote)!r} is not a URL "
                "(e.g. redis://host:6379, http://host/cache)"
            )
        if features and f"{scheme}-storage" not in features:
            supported = sorted(f.removesuffix("-storage") for f in features if "-storage" in f)
            raise EnvironmentSetupError(
                f"ccache {dotted(version)} at {self.executable} cannot use {scheme}:// "
                f"remote storage (it supports: {', '.join(supported) or 'none'})"
            )
        # 4.4 and 4.5 called remote storage "secondary storage".
        modern = not version or version >= (4, 6)
        variable = "CCACHE_REMOTE_STORAGE" if modern else "CCACHE_SECONDARY_STORAGE"
        # ccache takes several storage URLs, tried in order: the user's come first.
        existing = environ.get(variable, "").split()
        if remote not in existing:
            environ[variable] = " ".join([*existing, remote])

    def stats(self) -> CompilerCacheStats | None:
        if self._stats_log is None:
            return None
        try:
            text = self._stats_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""  # nothing went through ccache
        except OSError as error:
            logger.debug("cannot read ccache stats log %s: %s", self._stats_log, error)
            return None
        self._forward_to_user_log(text)
        return parse_ccache_stats_log(text)

    def _forward_to_user_log(self, text: str) -> None:
        """Append this build's lines to the stats log the user had configured."""
        if self._forwarded or not self._user_stats_log or not text:
            return
        self._forwarded = True
        try:
            with Path(self._user_stats_log).open("a", encoding="utf-8") as stream:
                stream.write(text)
        except OSError as error:
            logger.warning(
                "could not append this build's ccache statistics to CCACHE_STATSLOG=%s: %s",
                self._user_stats_log,
                error.strerror or error,
            )


# ccache's own grouping (ccache -s): cacheable calls are hits or misses, and the
# rest are uncacheable calls or errors, which kiln counts together as uncacheable.
_CCACHE_HITS = frozenset({"direct_cache_hit", "preprocessed_cache_hit"})
_CCACHE_MISSES = frozenset({"cache_miss"})
_CCACHE_UNCACHEABLE = frozenset(
    {
        # "Uncacheable calls" in ccache 4.7.5's `ccache --show-log-stats -vv`
        "autoconf_test",
        "bad_compiler_arguments",
        "called_for_link",
        "called_for_preprocessing",
        "compile_failed",
        "compiler_produced_no_output",
        "compiler_produced_empty_output",
        "compiler_produced_stdout",
        "could_not_use_modules",
        "could_not_use_precompiled_header",
        "recache",
        "multiple_source_files",
        "no_input_file",
        "output_to_stdout",
        "preprocessor_error",
        "unsupported_code_directive",
        "unsupported_compiler_option",
        "unsupported_environment_variable",
        "unsupported_source_language",
        # "Errors"
        "compiler_check_failed",
        "could_not_find_compiler",
        "bad_output_file",
        "error_hashing_extra_file",
        "internal_error",
        "missing_cache_file",
    }
)
# A result read from remote storage bumps remote_storage_hit beside the direct or
# preprocessed hit (ccache 4.4 and 4.5 said "secondary").
_CCACHE_REMOTE_HITS = frozenset({"remote_storage_hit", "secondary_storage_hit"})
_CCACHE_REMOTE_ERRORS = frozenset(
    {
        "remote_storage_error",
        "remote_storage_timeout",
        "secondary_storage_error",
        "secondary_storage_timeout",
    }
)


def parse_ccache_stats_log(text: str) -> CompilerCacheStats:
    """Count a ccache stats log: ``# <input file>`` lines, each followed by the
    names of the counters that one call bumped, one per line."""
    hits = misses = uncacheable = remote_hits = remote_errors = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line in _CCACHE_HITS:
            hits += 1
        elif line in _CCACHE_MISSES:
            misses += 1
        elif line in _CCACHE_UNCACHEABLE:
            uncacheable += 1
        elif line in _CCACHE_REMOTE_HITS:
            remote_hits += 1
        elif line in _CCACHE_REMOTE_ERRORS:
            remote_errors += 1
    return CompilerCacheStats(hits, misses, uncacheable, remote_hits, remote_errors)
