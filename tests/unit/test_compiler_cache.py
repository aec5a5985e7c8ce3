"""Compiler caches: the variables kiln sets, and what real ccache and sccache make of them.

Every test that compiles uses the real tools with cache directories of its own
(never ~/.ccache or ~/.cache/sccache) and, for sccache, a server of its own on
a free loopback port, stopped afterwards. A test whose tool is not installed is
skipped with the reason.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.compilers import CompilerCache, CompilerCacheStats
from kiln.compilers.ccache import Ccache, parse_ccache_stats_log
from kiln.compilers.common import redact_url
from kiln.compilers.sccache import Sccache, sccache_stats_difference
from kiln.compilers.sccache_server import server_alive, start_users_sccache_server, users_sccache
from kiln.compilers.selection import (
    _sccache_from_package,
    find_ccache,
    find_sccache,
    select_compiler_cache,
)
from kiln.errors import EnvironmentSetupError, UsageError
from kiln.options import COMPILER_CACHE_ENV, COMPILER_CACHE_REMOTE_ENV, environment_defaults
from tests.conftest import needs
from tests.redis_server import dbsize, free_port, redis_server

SOURCE = '#include "answer.h"\n#include "env.h"\nint answer(void) { return ANSWER + ENV; }\n'
HEADER = "#define ANSWER 42\n"
ENV_HEADER = "#define ENV 1\n"
OTHER_SOURCE = "int other(void) { return 7; }\n"

# Variables of the machine that would leak into the tests' compiles.
_LEAKY_PREFIXES = ("CCACHE_", "SCCACHE_")
_LEAKY_NAMES = (
    "CC",
    "CXX",
    "RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CMAKE_C_COMPILER_LAUNCHER",
    "CMAKE_CXX_COMPILER_LAUNCHER",
)


# --- fixtures ----------------------------------------------------------------


@pytest.fixture
def ccache() -> Ccache:
    executable = find_ccache()
    if executable is None:
        pytest.skip(needs("ccache"))
    return Ccache(executable)


@pytest.fixture
def sccache_executable() -> str:
    executable = find_sccache()
    if executable is None:
        pytest.skip(needs("sccache"))
    return executable


@pytest.fixture
def gcc() -> str:
    executable = shutil.which("gcc")
    if executable is None:
        pytest.skip(needs("gcc"))
    return executable


def clean_environ(tmp_path: Path, label: str = "machine") -> dict[str, str]:
    """The process's environment without compiler cache settings, with cache
    directories (and sccache configuration) of this test's own."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_LEAKY_PREFIXES) and name not in _LEAKY_NAMES
    }
    config = tmp_path / "sccache-config.toml"
    config.touch()
    environ.update(
        {
            "CCACHE_DIR": str(tmp_path / label / "ccache"),
            "SCCACHE_DIR": str(tmp_path / label / "sccache"),
            "SCCACHE_CONF": str(config),
            # A server that outlives a crashed test still goes away by itself.
            "SCCACHE_IDLE_TIMEOUT": "120",
        }
    )
    return environ


class Caches:
    """Makes CompilerCache objects of one tool, and closes them all at the end
    (which stops the sccache servers they started)."""

    def __init__(self, name: str, executable: str) -> None:
        self.name = name
        self.executable = executable
        self.made: list[CompilerCache] = []
        self.user_servers: list[dict[str, str]] = []

    def make(self) -> CompilerCache:
        cache: CompilerCache = (
            Ccache(self.executable) if self.name == "ccache" else Sccache(self.executable)
        )
        self.made.append(cache)
        return cache

    def local_dir(self, base: dict[str, str]) -> Path:
        return Path(base["CCACHE_DIR" if self.name == "ccache" else "SCCACHE_DIR"])

    def user_server(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` naming a server of the user's own (on a free port): stopped at the end."""
        environ = base | {"SCCACHE_SERVER_PORT": str(free_port())}
        self.user_servers.append(environ)
        return environ

    def close_all(self) -> None:
        for cache in self.made:
            cache.close()
        for environ in self.user_servers:
            subprocess.run(
                [self.executable, "--stop-server"],
                env=environ,
                capture_output=True,
                timeout=60,
                check=False,
            )


@pytest.fixture(params=["ccache", "sccache"])
def tool(request: pytest.FixtureRequest) -> Iterator[Caches]:
    if request.param == "ccache":
        executable = request.getfixturevalue("ccache").executable
    else:
        executable = request.getfixturevalue("sccache_executable")
    caches = Caches(request.param, executable)
    try:
        yield caches
    finally:
        caches.close_all()


@pytest.fixture
def sccache(sccache_executable: str) -> Iterator[Caches]:
    caches = Caches("sccache", sccache_executable)
    try:
        yield caches
    finally:
        caches.close_all()


def write_project(root: Path, source: str = SOURCE) -> Path:
    """A one-file C project with a header in include/, like a setuptools extension."""
    (root / "include").mkdir(parents=True, exist_ok=True)
    (root / "include" / "answer.h").write_text(HEADER)
    (root / "answer.c").write_text(source)
    return root


class Run:
    """One kiln run's places, laid out as kiln lays them out: the cache directory,
    the project's place in it (the sdist unpacked there), the run's own directory
    (the compiler cache's work directory), and a cached build environment whose
    headers the compile uses. Each label has a place of its own, which is harder on
    the cache than kiln's one stable place per project: a hit is a hit from elsewhere."""

    def __init__(self, kiln_cache: Path, label: str, source: str = SOURCE) -> None:
        self.kiln_cache = kiln_cache
        self.place = kiln_cache / "projects-v1" / label
        self.project = write_project(self.place / "from-sdist" / "answer-1.0", source)
        self.env_include = kiln_cache / "envs-v1" / "3f2a9c" / "include"
        self.env_include.mkdir(parents=True, exist_ok=True)
        (self.env_include / "env.h").write_text(ENV_HEADER)
        self.work_dir = kiln_cache / "runs-v1" / label / "compiler-cache"

    def environ(
        self, cache: CompilerCache, base: dict[str, str], remote: str | None = None
    ) -> dict[str, str]:
        environ = cache.environ(
            base,
            base_dir=self.kiln_cache,
            place=self.place,
            work_dir=self.work_dir,
            remote=remote,
        )
        return environ | {"ENV_INCLUDE": str(self.env_include)}


# Both include directories are passed as absolute paths, and with -g, as setuptools
# does: each would tie the cache entry to its location without the base dirs.
COMPILE = '$CC -g -I"$PWD/include" -I"$ENV_INCLUDE" -c answer.c -o answer.o'
PREPROCESS = '$CC -I"$PWD/include" -I"$ENV_INCLUDE" -E answer.c -o answer.i'


def compile_c(environ: dict[str, str], project: Path, command: str = COMPILE) -> None:
    """Compile the project's source the way a build system does: through $CC."""
    subprocess.run(["sh", "-c", command], cwd=project, env=environ, check=True, timeout=120)


def build(
    cache: CompilerCache, base: dict[str, str], run: Run, remote: str | None = None
) -> CompilerCacheStats:
    """One 'build': environ(), one compile through CC, stats(), close()."""
    compile_c(run.environ(cache, base, remote), run.project)
    assert (run.project / "answer.o").is_file()
    stats = cache.stats()
    assert stats is not None
    cache.close()
    assert cache.stats() == stats, "the statistics outlive close()"
    return stats


def words(value: str) -> list[str]:
    return shlex.split(value)


def is_launcher(word: str, cache: CompilerCache) -> bool:
    found = shutil.which(word)
    return found is not None and Path(found).samefile(cache.executable)


# --- environ(): the variables ------------------------------------------------


def test_user_compiler_is_prefixed(ccache: Ccache, tmp_path: Path) -> None:
    base = clean_environ(tmp_path) | {"CC": "gcc -m64", "CXX": "g++"}
    environ = ccache.environ(base, base_dir=tmp_path, work_dir=tmp_path / "work", remote=None)
    cc, cxx = words(environ["CC"]), words(environ["CXX"])
    assert cc[1:] == ["gcc", "-m64"] and cxx[1:] == ["g++"]
    assert is_launcher(cc[0], ccache) and is_launcher(cxx[0], ccache)
    # meson recognises exactly the bare name in front of the compiler.
    assert cc[0] == "ccache"
    assert base["CC"] == "gcc -m64", "the base environment is not modified"


def test_default_compiler_is_the_interpreters(ccache: Ccache, tmp_path: Path) -> None:
    environ = ccache.environ(
        clean_environ(tmp_path), base_dir=tmp_path, work_dir=tmp_path / "work", remote=None
    )
    for variable, fallback in (("CC", "cc"), ("CXX", "c++")):
        launcher, *compiler = words(environ[variable])
        assert is_launcher(launcher, ccache)
        configured = sysconfig.get_config_var(variable)
        assert compiler in (words(configured) if configured else [], [fallback])


def test_cache_not_on_the_builds_path_is_named_by_full_path(ccache: Ccache, tmp_path: Path) -> None:
    # The build's PATH holds gcc alone: where ccache sits beside gcc (/usr/bin on
    # Debian), the directory of gcc would find ccache by its bare name.
    path = tmp_path / "path"
    path.mkdir()
    (path / "gcc").symlink_to(shutil.which("gcc") or "/usr/bin/gcc")
    base = clean_environ(tmp_path) | {"CC": "gcc", "PATH": str(path)}
    elsewhere = tmp_path / "bin" / "ccache"
    elsewhere.parent.mkdir()
    elsewhere.symlink_to(ccache.executable)
    environ = Ccache(str(elsewhere)).environ(
        base, base_dir=tmp_path, work_dir=tmp_path / "w", remote=None
    )
    assert words(environ["CC"]) == [str(elsewhere), "gcc"]
    # On the build's PATH, the same ccache is named by its bare name, as meson wants it.
    on_path = base | {"PATH": os.pathsep.join([str(path), str(elsewhere.parent)])}
    environ = Ccache(str(elsewhere)).environ(
        on_path, base_dir=tmp_path, work_dir=tmp_path / "w", remote=None
    )
    assert words(environ["CC"]) == ["ccache", "gcc"]


@pytest.mark.parametrize(
    "value",
    ["ccache gcc", "sccache gcc", "distcc gcc", "/usr/bin/ccache gcc -m64", "'ccache' gcc"],
)
def test_no_double_wrap(ccache: Ccache, tmp_path: Path, value: str) -> None:
    base = clean_environ(tmp_path) | {"CC": value}
    environ = ccache.environ(base, base_dir=tmp_path, work_dir=tmp_path / "work", remote=None)
    assert environ["CC"] == value


def test_no_double_wrap_through_a_masquerade_link(ccache: Ccache, tmp_path: Path) -> None:
    masquerade = tmp_path / "masquerade" / "gcc"  # like /usr/lib/ccache/gcc
    masquerade.parent.mkdir()
    masquerade.symlink_to(ccache.executable)
    base = clean_environ(tmp_path) | {"CC": str(masquerade)}
    environ = ccache.environ(base, base_dir=tmp_path, work_dir=tmp_path / "work", remote=None)
    assert environ["CC"] == str(masquerade)


def test_environ_twice_wraps_once(ccache: Ccache, tmp_path: Path) -> None:
    once = ccache.environ(
        clean_environ(tmp_path), base_dir=tmp_path, work_dir=tmp_path / "a", remote=None
    )
    twice = ccache.environ(once, base_dir=tmp_path, work_dir=tmp_path / "b", remote=None)
    assert twice["CC"] == once["CC"] and twice["CXX"] == once["CXX"]


def test_ccache_variables(ccache: Ccache, tmp_path: Path) -> None:
    work = tmp_path / "work"
    environ = ccache.environ(
        clean_environ(tmp_path), base_dir=tmp_path / "kiln-cache", work_dir=work, remote=None
    )
    assert environ["CMAKE_C_COMPILER_LAUNCHER"] == ccache.executable
    assert environ["CMAKE_CXX_COMPILER_LAUNCHER"] == ccache.executable
    assert environ["CCACHE_BASEDIR"] == str(tmp_path / "kiln-cache")
    assert environ["CCACHE_NOHASHDIR"] == "1"
    assert Path(environ["CCACHE_STATSLOG"]).parent == work
    assert "RUSTC_WRAPPER" not in environ, "ccache cannot cache rustc"
    assert "CCACHE_REMOTE_STORAGE" not in environ


def test_user_settings_are_respected(ccache: Ccache, tmp_path: Path) -> None:
    user = {
        "CMAKE_C_COMPILER_LAUNCHER": "/opt/launcher",
        "CMAKE_CXX_COMPILER_LAUNCHER": "",
        "CCACHE_BASEDIR": "/somewhere",
        "CCACHE_HASHDIR": "1",
        "RUSTC_WRAPPER": "/opt/wrapper",
    }
    environ = ccache.environ(
        clean_environ(tmp_path) | user, base_dir=tmp_path, work_dir=tmp_path / "w", remote=None
    )
    assert {name: environ[name] for name in user} == user
    assert "CCACHE_NOHASHDIR" not in environ


def test_ccache_remote_is_added_after_the_users(ccache: Ccache, tmp_path: Path) -> None:
    _, features = ccache.version_info()
    if "redis-storage" not in features:
        pytest.skip(f"this ccache has no Redis storage (features: {sorted(features)})")
    environ = ccache.environ(
        clean_environ(tmp_path) | {"CCACHE_REMOTE_STORAGE": "file:///srv/cache"},
        base_dir=tmp_path,
        work_dir=tmp_path / "w",
        remote="redis://127.0.0.1:1",
    )
    assert environ["CCACHE_REMOTE_STORAGE"] == "file:///srv/cache redis://127.0.0.1:1"


def test_ccache_remote_scheme_it_lacks(ccache: Ccache, tmp_path: Path) -> None:
    with pytest.raises(EnvironmentSetupError, match="cannot use gopher:// remote storage"):
        ccache.environ(
            clean_environ(tmp_path),
            base_dir=tmp_path,
            work_dir=tmp_path / "w",
            remote="gopher://example.invalid/",
        )


def test_sccache_variables(sccache: Caches, tmp_path: Path) -> None:
    cache = sccache.make()
    base = clean_environ(tmp_path) | {"CC": "gcc"}
    run = Run(tmp_path / "kiln-cache", "run")
    environ = run.environ(cache, base)
    assert words(environ["CC"])[1:] == ["gcc"] and is_launcher(words(environ["CC"])[0], cache)
    assert environ["RUSTC_WRAPPER"] == cache.executable
    # The place first: sccache strips the longest matching prefix.
    assert environ["SCCACHE_BASEDIRS"] == os.pathsep.join([str(run.place), str(run.kiln_cache)])
    # sccache cannot run inside itself: CMake gets it through CC/CXX, not a launcher.
    assert "CMAKE_C_COMPILER_LAUNCHER" not in environ
    assert "CCACHE_STATSLOG" not in environ
    assert "SCCACHE_REDIS_ENDPOINT" not in environ
    # A server of this build's own: on a socket in its work dir, or (this work dir's
    # path is too long for a socket) on a loopback port.
    assert "SCCACHE_SERVER_UDS" in environ or "SCCACHE_SERVER_PORT" in environ
    assert server_alive(environ)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose path is short enough for a Unix socket inside it.

    Ask for it before ``sccache``: it must outlive the servers whose sockets it holds.
    """
    directory = Path(tempfile.mkdtemp(prefix="kiln-cc-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("address", ["socket", "port"])
def test_sccache_own_server_stops_with_close(
    short_dir: Path, sccache: Caches, gcc: str, tmp_path: Path, address: str
) -> None:
    cache = sccache.make()
    run = Run(tmp_path / "kiln-cache", "run")
    work_dir = short_dir / "w" if address == "socket" else tmp_path / ("long-" * 20)
    environ = cache.environ(
        clean_environ(tmp_path) | {"CC": gcc},
        base_dir=run.kiln_cache,
        place=run.place,
        work_dir=work_dir,
        remote=None,
    ) | {"ENV_INCLUDE": str(run.env_include)}
    if address == "socket":
        assert Path(environ["SCCACHE_SERVER_UDS"]) == work_dir / "sccache.sock"
    else:
        assert "SCCACHE_SERVER_UDS" not in environ and int(environ["SCCACHE_SERVER_PORT"]) > 0
    assert server_alive(environ)
    compile_c(environ, run.project)
    cache.close()
    assert not server_alive(environ)
    assert not (work_dir / "sccache.sock").exists()
    assert cache.stats() == CompilerCacheStats(hits=0, misses=1, uncacheable=0)
    cache.close()  # twice is harmless


def test_sccache_environ_again_replaces_its_server(
    short_dir: Path, sccache: Caches, tmp_path: Path
) -> None:
    cache = sccache.make()
    base = clean_environ(tmp_path)
    first = cache.environ(base, base_dir=tmp_path, work_dir=short_dir / "1", remote=None)
    second = cache.environ(base, base_dir=tmp_path, work_dir=short_dir / "2", remote=None)
    assert not server_alive(first), "the first server is stopped, not left behind"
    assert server_alive(second)
    assert cache.stats() == CompilerCacheStats(0, 0, 0)


def test_sccache_users_server_is_used_and_left_running(
    sccache: Caches, gcc: str, tmp_path: Path
) -> None:
    """SCCACHE_SERVER_PORT names the user's server: kiln starts it if need be, uses
    it, counts this build as the difference of its counters, and leaves it running."""
    base = sccache.user_server(clean_environ(tmp_path) | {"CC": gcc})
    results = []
    for run_id in ("run-1", "run-2"):
        cache = sccache.make()
        environ = Run(tmp_path / "kiln-cache", run_id).environ(cache, base)
        assert environ["SCCACHE_SERVER_PORT"] == base["SCCACHE_SERVER_PORT"]
        assert "SCCACHE_SERVER_UDS" not in environ
        results.append(build(cache, base, Run(tmp_path / "kiln-cache", run_id)))
        assert server_alive(base), "the user's server keeps running"
    assert [(r.hits, r.misses) for r in results[:1]] == [(0, 1)]
    # The server was started with run-1's base dirs: it hits for run-2 only where
    # nothing names the run directory. Counted either way, as one compile.
    assert results[1].hits + results[1].misses == 1


def test_users_sccache_is_found_in_the_users_variables(
    ccache: Ccache, sccache_executable: str, tmp_path: Path
) -> None:
    environ = path_with(tmp_path, sccache=sccache_executable, ccache=ccache.executable)
    found = tmp_path / "path" / "sccache"
    for user in (
        {"RUSTC_WRAPPER": sccache_executable},
        {"CARGO_BUILD_RUSTC_WRAPPER": "sccache"},
        {"CC": "sccache gcc"},
        {"CC": "ccache gcc", "CXX": f"{shlex.quote(sccache_executable)} g++"},
        {"CMAKE_CXX_COMPILER_LAUNCHER": "sccache;--flag"},
    ):
        named = users_sccache(environ | user)
        assert named is not None and Path(named).samefile(found), user
    for user in (
        {},
        {"RUSTC_WRAPPER": ""},  # switched off
        {"RUSTC_WRAPPER": ccache.executable, "CC": "ccache gcc"},
        {"CC": "gcc", "CMAKE_C_COMPILER_LAUNCHER": "ccache"},
        {"CC": "'unbalanced gcc"},
        {"RUSTC_WRAPPER": str(tmp_path / "elsewhere" / "sccache")},  # not there
    ):
        assert users_sccache(environ | user) is None, user


def test_users_sccache_server_is_started_despite_a_long_tmpdir(
    sccache: Caches, gcc: str, tmp_path: Path
) -> None:
    """The sccache client makes TMPDIR/sccacheXXXXXX/sock to hear from a server it
    starts, and fails on a path too long for a socket: kiln starts the user's server
    with its own TMPDIR first, and the build's clients, long TMPDIR and all, reach it."""
    long_tmp = tmp_path / ("long-" * 20)
    long_tmp.mkdir()
    base = sccache.user_server(clean_environ(tmp_path))
    environ = base | {"TMPDIR": str(long_tmp), "RUSTC_WRAPPER": sccache.executable}
    # A compiler call starts the server when none answers (--show-stats would not).
    call = [sccache.executable, gcc, "--version"]
    refused = subprocess.run(
        call, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    if refused.returncode == 0:
        pytest.skip("this sccache starts its server whatever the length of TMPDIR")
    assert "SUN_LEN" in refused.stderr, refused.stderr
    assert not server_alive(environ)
    start_users_sccache_server(environ)
    assert server_alive(environ)
    subprocess.run(call, env=environ, capture_output=True, timeout=60, check=True)
    start_users_sccache_server(environ)  # running: left alone
    assert server_alive(environ)


def test_no_server_without_the_users_sccache(sccache: Caches, tmp_path: Path) -> None:
    environ = sccache.user_server(clean_environ(tmp_path)) | {"CC": "gcc"}
    start_users_sccache_server(environ)
    assert not server_alive(environ)


@pytest.mark.needs("redis-server")
def test_sccache_remote_variables(sccache: Caches, tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        cache = sccache.make()
        environ = cache.environ(
            clean_environ(tmp_path), base_dir=tmp_path, work_dir=tmp_path / "w", remote=url
        )
        assert environ["SCCACHE_REDIS_ENDPOINT"] == url
        # The local disk first, Redis behind it.
        assert environ["SCCACHE_MULTILEVEL_CHAIN"] == "disk,redis"
        cache.close()


def test_sccache_respects_rustc_wrapper_and_launchers(sccache: Caches, tmp_path: Path) -> None:
    cache = sccache.make()
    user = {"RUSTC_WRAPPER": "", "CMAKE_C_COMPILER_LAUNCHER": "sccache", "CC": "gcc"}
    environ = cache.environ(
        clean_environ(tmp_path) | user, base_dir=tmp_path, work_dir=tmp_path / "w", remote=None
    )
    assert environ["RUSTC_WRAPPER"] == ""
    # CMake would run `sccache sccache gcc`, which fails: CC stays as it was.
    assert environ["CC"] == "gcc"
    assert words(environ["CXX"])[0] in ("sccache", cache.executable)


def test_sccache_remote_scheme_it_cannot_use(sccache_executable: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="sccache cannot use compiler cache remote"):
        Sccache(sccache_executable).environ(
            clean_environ(tmp_path),
            base_dir=tmp_path,
            work_dir=tmp_path / "w",
            remote="ftp://user:secret@host/",
        )


# --- stats(): this build's counts --------------------------------------------


def test_stats_count_this_build(tool: Caches, gcc: str, tmp_path: Path) -> None:
    """Two runs of the same build on one machine: a miss, then a hit. Each run
    has a run directory of its own, as kiln's runs do."""
    base = clean_environ(tmp_path) | {"CC": gcc}
    first = build(tool.make(), base, Run(tmp_path / "kiln-cache", "run-1"))
    assert (first.hits, first.misses) == (0, 1)
    assert first.hit_rate() == 0.0
    second = build(tool.make(), base, Run(tmp_path / "kiln-cache", "run-2"))
    assert (second.hits, second.misses, second.remote_hits) == (1, 0, 0)
    assert second.hit_rate() == 1.0


def test_ccache_stats_ignore_a_concurrent_build(ccache: Ccache, gcc: str, tmp_path: Path) -> None:
    base = clean_environ(tmp_path) | {"CC": gcc}
    cache = Ccache(ccache.executable)
    run = Run(tmp_path / "kiln-cache", "run")
    environ = run.environ(cache, base)
    # Another build on the same cache at the same time, with its own stats log.
    other = Run(tmp_path / "kiln-cache", "neighbour", OTHER_SOURCE)
    neighbour = other.environ(Ccache(ccache.executable), base)
    compile_c(neighbour, other.project)
    compile_c(environ, run.project)
    compile_c(neighbour, other.project)
    compile_c(environ, run.project, PREPROCESS)  # preprocessing only: uncacheable
    assert cache.stats() == CompilerCacheStats(hits=0, misses=1, uncacheable=1)


def test_ccache_stats_reach_the_users_stats_log(ccache: Ccache, gcc: str, tmp_path: Path) -> None:
    user_log = tmp_path / "user-stats.log"
    user_log.write_text("# earlier.c\ncache_miss\n")
    base = clean_environ(tmp_path) | {"CC": gcc, "CCACHE_STATSLOG": str(user_log)}
    cache = Ccache(ccache.executable)
    stats = build(cache, base, Run(tmp_path / "kiln-cache", "run"))
    assert stats.misses == 1, "the user's earlier entries are not this build's"
    cache.stats()  # asking again does not append twice
    assert parse_ccache_stats_log(user_log.read_text()).misses == 2


def test_stats_before_environ_are_unknown(ccache: Ccache, sccache_executable: str) -> None:
    assert Ccache(ccache.executable).stats() is None
    assert Sccache(sccache_executable).stats() is None


# --- the base dir: hits across absolute locations ----------------------------


def test_hit_from_another_absolute_location(tool: Caches, gcc: str, tmp_path: Path) -> None:
    """The same sdist built under two kiln cache directories at different absolute
    paths (two CI workspaces): the second build hits the first one's entry."""
    results = []
    base = clean_environ(tmp_path) | {"CC": gcc}
    for workspace, run_id in (("workspace-a", "run-1"), ("other/workspace-b", "run-2")):
        results.append(build(tool.make(), base, Run(tmp_path / workspace / "kiln-cache", run_id)))
    assert (results[0].hits, results[0].misses) == (0, 1)
    assert (results[1].hits, results[1].misses) == (1, 0)


def test_users_base_dir_is_respected(tool: Caches, gcc: str, tmp_path: Path) -> None:
    """The control for the test above: with the user's own base dir (here: one
    that matches nothing) the absolute paths and -g tie the entry to its place."""
    variable = "CCACHE_BASEDIR" if tool.name == "ccache" else "SCCACHE_BASEDIRS"
    results = []
    for workspace in ("workspace-a", "workspace-b"):
        base = clean_environ(tmp_path) | {"CC": gcc, variable: "/nonexistent"}
        cache = tool.make()
        run = Run(tmp_path / workspace / "kiln-cache", "run")
        results.append(build(cache, base, run))
        assert run.environ(tool.make(), base)[variable] == "/nonexistent"
    assert [(r.hits, r.misses) for r in results] == [(0, 1), (0, 1)]


# --- remote storage: two machines sharing a Redis server ---------------------


@pytest.mark.needs("redis-server")
def test_second_machine_takes_objects_from_redis(tool: Caches, gcc: str, tmp_path: Path) -> None:
    """Two 'machines': different kiln cache directories at different absolute
    paths, each with an empty local compiler cache. The first build fills Redis;
    the second machine's first build takes its object from there."""
    if tool.name == "ccache":
        _, features = Ccache(tool.executable).version_info()
        if "redis-storage" not in features:
            pytest.skip(f"this ccache has no Redis storage (features: {sorted(features)})")
    with redis_server(tmp_path) as url:
        results = []
        for machine, run_id in (("machine-1", "run-1"), ("machine-2", "run-2")):
            base = clean_environ(tmp_path, machine) | {"CC": gcc}
            local = tool.local_dir(base)
            assert not local.exists(), "each machine starts with an empty local cache"
            results.append(build(tool.make(), base, Run(tmp_path / machine / "kiln", run_id), url))
            assert local.is_dir()
            if machine == "machine-1":
                assert dbsize(url) > 0, "the first machine stored its result in Redis"
        first, second = results
        assert (first.hits, first.misses, first.remote_hits) == (0, 1, 0)
        assert (second.hits, second.misses, second.remote_hits) == (1, 0, 1)
        assert first.remote_errors == second.remote_errors == 0


def test_unreachable_remote_is_counted_not_fatal(ccache: Ccache, gcc: str, tmp_path: Path) -> None:
    _, features = ccache.version_info()
    if "redis-storage" not in features:
        pytest.skip(f"this ccache has no Redis storage (features: {sorted(features)})")
    base = clean_environ(tmp_path) | {"CC": gcc}
    url = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    stats = build(Ccache(ccache.executable), base, Run(tmp_path / "kiln-cache", "run"), url)
    assert stats.misses == 1 and stats.remote_errors > 0


# --- CMake: the launcher (ccache) or CC (sccache) ----------------------------


# --- select_compiler_cache() ------------------------------------------------


def path_with(tmp_path: Path, **tools: str) -> dict[str, str]:
    """An environment whose PATH is one directory holding links to ``tools``."""
    directory = tmp_path / "path"
    directory.mkdir(exist_ok=True)
    for name, target in tools.items():
        (directory / name).symlink_to(target)
    return {"PATH": str(directory)}


def test_auto_with_neither_installed_is_none(tmp_path: Path) -> None:
    if _sccache_from_package() is not None:
        pytest.skip("the sccache Python package is installed here: auto always finds it")
    assert select_compiler_cache("auto", path_with(tmp_path)) is None


def test_explicit_missing_is_an_environment_error(tmp_path: Path) -> None:
    environ = path_with(tmp_path)
    with pytest.raises(EnvironmentSetupError, match=r"ccache is not on PATH; install") as caught:
        select_compiler_cache("ccache", environ)
    assert caught.value.exit_code == 3
    assert "\n" not in str(caught.value)
    if _sccache_from_package() is None:
        with pytest.raises(EnvironmentSetupError, match=r"sccache is not installed; pip install"):
            select_compiler_cache("sccache", environ)


def test_auto_prefers_ccache(ccache: Ccache, sccache_executable: str, tmp_path: Path) -> None:
    environ = path_with(tmp_path, ccache=ccache.executable, sccache=sccache_executable)
    chosen = select_compiler_cache("auto", environ)
    assert isinstance(chosen, Ccache) and chosen.name == "ccache"
    assert isinstance(select_compiler_cache("sccache", environ), Sccache)


def test_auto_takes_sccache_without_ccache(sccache_executable: str, tmp_path: Path) -> None:
    chosen = select_compiler_cache("auto", path_with(tmp_path, sccache=sccache_executable))
    assert isinstance(chosen, Sccache)
    assert Path(chosen.executable).samefile(sccache_executable)


def test_environment_variable_decides_auto(ccache: Ccache, tmp_path: Path) -> None:
    # The variable is read at the edge, into the request (kiln.options).
    def chosen(option: str | None, variable: str) -> str | None:
        filled = environment_defaults({"compiler_cache": option}, {COMPILER_CACHE_ENV: variable})
        return filled.get("compiler_cache", option)

    environ = path_with(tmp_path, ccache=ccache.executable)
    assert chosen("auto", "none") == "none"
    assert select_compiler_cache("none", environ) is None
    # An explicit choice wins over the variable.
    assert chosen("ccache", "none") == "ccache"
    assert isinstance(select_compiler_cache("ccache", environ), Ccache)
    with pytest.raises(UsageError, match=f"{COMPILER_CACHE_ENV}='buildcache'"):
        chosen("auto", "buildcache")


def test_unknown_choice_and_none() -> None:
    with pytest.raises(UsageError, match="unknown compiler cache 'distcc'"):
        select_compiler_cache("distcc", {})
    assert select_compiler_cache("none", {}) is None


# --- pure helpers -------------------------------------------------------------


def test_parse_stats_log() -> None:
    log = (
        "# a.c\ncache_miss\ndirect_cache_miss\npreprocessed_cache_miss\n"
        "remote_storage_miss\nremote_storage_error\n"
        "# b.c\ndirect_cache_hit\nremote_storage_hit\nremote_storage_read_hit\n"
        "# c.c\ndirect_cache_miss\npreprocessed_cache_hit\nlocal_storage_hit\n"
        "# \nno_input_file\n# d.o\ncalled_for_link\n"
    )
    assert parse_ccache_stats_log(log) == CompilerCacheStats(
        hits=2, misses=1, uncacheable=2, remote_hits=1, remote_errors=1
    )
    assert parse_ccache_stats_log("") == CompilerCacheStats(0, 0, 0)


def sccache_json(hits: int, misses: int, not_compile: int, remote_hits: int) -> dict[str, object]:
    return {
        "stats": {
            "compile_requests": hits + misses + not_compile,
            "requests_not_compile": not_compile,
            "cache_hits": {"counts": {"C/C++": hits}},
            "cache_misses": {"counts": {"C/C++": misses}},
            "cache_errors": {"counts": {}},
            "multi_level": [
                {"name": "L0 (disk)", "hits": hits - remote_hits},
                {"name": "L1 (redis)", "hits": remote_hits, "write_failures": 0},
            ],
        }
    }


def test_sccache_difference() -> None:
    before, after = sccache_json(3, 2, 1, 0), sccache_json(5, 3, 2, 1)
    assert sccache_stats_difference(before, after) == CompilerCacheStats(
        hits=2, misses=1, uncacheable=1, remote_hits=1
    )
    assert sccache_stats_difference(after, before) is None, "a restarted server is not diffed"


def test_stats_presentation() -> None:
    stats = CompilerCacheStats(hits=3, misses=1, uncacheable=2, remote_hits=2)
    assert stats.hit_rate() == 0.75
    assert stats.summary() == "3 hits (2 remote), 1 miss: 75% hits; 2 uncacheable"
    assert stats.as_dict() == {
        "hits": 3,
        "misses": 1,
        "uncacheable": 2,
        "remote_hits": 2,
        "remote_errors": 0,
        "hit_rate": 0.75,
    }
    nothing = CompilerCacheStats(0, 0, 4)
    assert nothing.hit_rate() is None
    assert nothing.summary() == "0 hits, 0 misses: nothing cacheable compiled; 4 uncacheable"


def test_remote_url_helpers() -> None:
    assert (
        redact_url("redis://:secret@cache.internal:6379/2") == "redis://***@cache.internal:6379/2"
    )
    assert redact_url("redis://user:pw@host") == "redis://***@host"
    assert redact_url("redis://password-only@host") == "redis://***@host"  # ccache's form
    assert redact_url("redis://host:6379") == "redis://host:6379"
    # The option wins; the variable fills it in when unset, stripped; empty is unset.
    variable = {COMPILER_CACHE_REMOTE_ENV: " redis://b "}
    assert environment_defaults({"compiler_cache_remote": "redis://a"}, variable) == {}
    assert environment_defaults({"compiler_cache_remote": None}, variable) == {
        "compiler_cache_remote": "redis://b"
    }
    assert environment_defaults({"compiler_cache_remote": None}, {}) == {}


def test_the_old_module_names_the_same_objects() -> None:
    """docs/api.md documented kiln.compiler_cache: it still imports every name."""
    import kiln.compiler_cache as old
    import kiln.compilers.selection

    for name in old.__all__:
        assert getattr(old, name) is not None
    assert old.select_compiler_cache is kiln.compilers.selection.select_compiler_cache
    assert old.Ccache is Ccache and old.Sccache is Sccache


def test_the_package_is_imported_only_when_a_cache_is_asked_for() -> None:
    """Neither ``kiln --version`` nor the builder's import loads the compiler caches."""
    code = (
        "import sys, kiln.builder, kiln.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('kiln.compiler', 'kiln.compilers'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert loaded.stdout.strip() == "[]"
    version = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kiln", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "kiln" in version.stdout
    assert "kiln.compiler" not in version.stderr
