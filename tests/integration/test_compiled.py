"""Compiled projects: the second build of an unchanged project hits the compiler cache,
with the user's own launcher variables or with --compiler-cache, at one cache location
or two, and through a shared Redis; a changed source still reaches the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kiln.compilers.sccache import sccache_stats_difference
from kiln.compilers.selection import find_sccache
from tests.compiled import (
    C_FIXTURES,
    COMPILED_FIXTURES,
    add_vendored_dependency,
    ccache_env,
    ccache_stats,
    ccache_zero,
    git_commit_all,
    hit_rate,
    launcher_env,
    vendored_cargo_home,
)
from tests.helpers import FIXTURES, run_kiln
from tests.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.needs("ccache", "gcc")]
needs_rust_and_sccache = pytest.mark.needs("cargo", "sccache")
# What the sccache client adds to TMPDIR for the socket of a server it starts:
# TMPDIR/sccacheXXXXXX/sock. sun_path holds 107 bytes and a NUL on Linux.
_SCCACHE_STARTUP_SOCKET = "/sccacheXXXXXX/sock"
_SUN_PATH_BYTES = 107


def copy_fixture(name: str, root: Path) -> Path:
    target = root / name
    shutil.copytree(FIXTURES / name, target)
    if COMPILED_FIXTURES[name].needs_git:
        git_commit_all(target)  # meson-python makes sdists from a Git checkout
    return target


def build(source: Path, outdir: Path, environ: dict[str, str], *args: str) -> dict[str, object]:
    """A default build (sdist, then the wheel from it); returns its --report."""
    report = outdir / "report.json"
    completed = run_kiln(source, "-o", outdir, "--report", report, *args, env=environ)
    assert completed.returncode == 0, completed.stderr
    result: dict[str, object] = json.loads(report.read_text())
    return result


@pytest.mark.parametrize("fixture", C_FIXTURES)
def test_second_build_hits_with_the_users_own_launcher(fixture: str, tmp_path: Path) -> None:
    source = copy_fixture(fixture, tmp_path)
    environ = {**os.environ, **ccache_env(tmp_path / "ccache"), **launcher_env(fixture)}
    build(source, tmp_path / "out1", environ)
    ccache_zero(tmp_path / "ccache")
    build(source, tmp_path / "out2", environ)
    stats = ccache_stats(tmp_path / "ccache")
    assert stats["misses"] + stats["hits"] >= COMPILED_FIXTURES[fixture].cacheable_calls - 1
    assert hit_rate(stats) >= 0.95, stats


@pytest.mark.parametrize("fixture", C_FIXTURES)
def test_second_build_hits_with_compiler_cache_option(fixture: str, tmp_path: Path) -> None:
    source = copy_fixture(fixture, tmp_path)
    environ = {**os.environ, **ccache_env(tmp_path / "ccache")}
    first = build(source, tmp_path / "out1", environ, "--compiler-cache", "ccache")
    second = build(source, tmp_path / "out2", environ, "--compiler-cache", "ccache")
    first_cache, second_cache = first["compiler_cache"], second["compiler_cache"]
    assert isinstance(first_cache, dict) and isinstance(second_cache, dict)
    assert first_cache["tool"] == "ccache"
    assert first_cache["misses"] >= 1
    # kiln counts this build's own compilations, from ccache's per-build statistics.
    rate = second_cache["hits"] / (second_cache["hits"] + second_cache["misses"])
    assert rate >= 0.95, second_cache


@pytest.mark.parametrize("fixture", C_FIXTURES)
def test_builds_hit_across_cache_locations(fixture: str, tmp_path: Path) -> None:
    """Two CI workspaces: two kiln caches at different absolute paths, one compiler cache."""
    source = copy_fixture(fixture, tmp_path / "workspace-a")
    other = copy_fixture(fixture, tmp_path / "elsewhere" / "workspace-b")
    compiler = ccache_env(tmp_path / "ccache")
    environ_a = {**os.environ, **compiler, "KILN_CACHE_DIR": str(tmp_path / "cache-a")}
    environ_b = {**os.environ, **compiler, "KILN_CACHE_DIR": str(tmp_path / "x" / "cache-b")}
    build(source, tmp_path / "out-a", environ_a, "--compiler-cache", "ccache")
    report = build(other, tmp_path / "out-b", environ_b, "--compiler-cache", "ccache")
    stats = report["compiler_cache"]
    assert isinstance(stats, dict)
    assert stats["hits"] / (stats["hits"] + stats["misses"]) >= 0.95, stats


def test_a_changed_source_reaches_the_wheel(tmp_path: Path) -> None:
    source = copy_fixture("compiled_setuptools", tmp_path)
    environ = {**os.environ, **ccache_env(tmp_path / "ccache")}
    build(source, tmp_path / "out1", environ, "--compiler-cache", "ccache")
    [c_file] = [p for p in (source / "csrc").glob("*.c") if "arith" in p.name]
    text = c_file.read_text()
    assert "PyLong_FromLong(a + b);" in text
    c_file.write_text(text.replace("PyLong_FromLong(a + b);", "PyLong_FromLong(a + b + 1000);"))
    report = build(source, tmp_path / "out2", environ, "--compiler-cache", "ccache")
    stats = report["compiler_cache"]
    assert isinstance(stats, dict) and stats["misses"] >= 1  # the changed file compiled anew
    [wheel] = (tmp_path / "out2").glob("*.whl")
    venv = tmp_path / "check"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(venv / "site")
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from kiln_fixture_compiled_setuptools import _arith; print(_arith.add(2, 3))",
            str(venv / "site"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "1005"


def test_a_missing_compiler_cache_is_a_clear_error(tmp_path: Path) -> None:
    source = copy_fixture("compiled_setuptools", tmp_path)
    (tmp_path / "empty-bin").mkdir()
    environ = {**os.environ, "PATH": str(tmp_path / "empty-bin")}  # no ccache on it
    completed = run_kiln(source, "--compiler-cache", "ccache", env=environ)
    assert completed.returncode == 3
    [line] = [ln for ln in completed.stderr.splitlines() if ln.startswith("kiln: error:")]
    assert "ccache" in line
    assert not (source / "dist").exists()


@pytest.mark.needs("redis-server")
def test_a_shared_redis_serves_a_second_machine(tmp_path: Path) -> None:
    from tests.redis_server import redis_server

    with redis_server(tmp_path / "redis") as url:
        for machine in ("one", "two"):
            root = tmp_path / machine
            source = copy_fixture("compiled_setuptools", root)
            environ = {
                **os.environ,
                **ccache_env(root / "ccache"),  # an empty local compiler cache each
                "KILN_CACHE_DIR": str(root / "kiln-cache"),
                "KILN_COMPILER_CACHE": "ccache",
                "KILN_COMPILER_CACHE_REMOTE": url,
            }
            report = build(source, root / "out", environ)
        stats = report["compiler_cache"]
    assert isinstance(stats, dict)
    assert stats["remote"] == url
    assert stats["remote_hits"] >= 5, stats
    assert stats["hits"] / (stats["hits"] + stats["misses"]) >= 0.95, stats


@pytest.mark.needs("cargo", "sccache")
def test_rust_second_build_hits_with_sccache(tmp_path: Path) -> None:
    """maturin's Rust: sccache caches the library crate (a binary crate it never can)."""
    source = copy_fixture("compiled_rust", tmp_path)
    environ = {**os.environ, "SCCACHE_DIR": str(tmp_path / "sccache"), "CARGO_NET_OFFLINE": "true"}
    build(source, tmp_path / "out1", environ, "--compiler-cache", "sccache")
    report = build(source, tmp_path / "out2", environ, "--compiler-cache", "sccache")
    stats = report["compiler_cache"]
    assert isinstance(stats, dict) and stats["tool"] == "sccache"
    assert stats["hits"] >= 1 and stats["misses"] == 0, stats
    [wheel] = (tmp_path / "out2").glob("*.whl")
    assert any(
        n.endswith("/scripts/kiln-fixture-compiled-rust") for n in zipfile.ZipFile(wheel).namelist()
    )


def rust_environ(root: Path) -> dict[str, str]:
    """The environment for Rust builds: an sccache directory and a CARGO_HOME (with the
    vendored crate) of the test's own, and cargo offline."""
    return {
        **os.environ,
        **vendored_cargo_home(root / "cargo-home"),
        "SCCACHE_DIR": str(root / "sccache"),
        "CARGO_NET_OFFLINE": "true",
    }


def copy_rust_fixture(root: Path) -> Path:
    """compiled_rust at ``root``, depending on the vendored crate besides its own library."""
    source = copy_fixture("compiled_rust", root)
    add_vendored_dependency(source)
    return source


@needs_rust_and_sccache
def test_rust_builds_hit_across_cache_locations(tmp_path: Path) -> None:
    """Two CI workspaces: two kiln caches at different absolute paths, one sccache.

    What is compiled outside kiln's cache hits: the dependencies, from CARGO_HOME.
    The project's own library crate is compiled with its working directory and
    CARGO_MANIFEST_DIR under kiln's cache, which sccache 0.16 hashes as they are
    (SCCACHE_BASEDIRS covers C and C++ only: mozilla/sccache#2652), so it misses
    once the cache directory moves; the next test shows the way around.
    """
    environ = rust_environ(tmp_path)
    source = copy_rust_fixture(tmp_path / "workspace-a")
    other = copy_rust_fixture(tmp_path / "elsewhere" / "workspace-b")
    environ_a = {**environ, "KILN_CACHE_DIR": str(tmp_path / "cache-a")}
    environ_b = {**environ, "KILN_CACHE_DIR": str(tmp_path / "x" / "cache-b")}
    first = build(source, tmp_path / "out-a", environ_a, "--compiler-cache", "sccache")
    second = build(other, tmp_path / "out-b", environ_b, "--compiler-cache", "sccache")
    first_cache, stats = first["compiler_cache"], second["compiler_cache"]
    assert isinstance(first_cache, dict) and isinstance(stats, dict)
    # Two cacheable crates: the vendored dependency and the project's library.
    assert (first_cache["hits"], first_cache["misses"]) == (0, 2), first_cache
    assert stats["hits"] + stats["misses"] == 2, stats
    assert stats["hits"] >= 1, stats  # the dependency, whatever the cache's path


@needs_rust_and_sccache
def test_rust_builds_hit_on_another_machine_with_the_same_cache_path(tmp_path: Path) -> None:
    """Machines that share an sccache and give kiln's cache the same path (each a fresh
    one here) hit for every cacheable crate, the project's own ones too, wherever
    the checkout is."""
    environ = {**rust_environ(tmp_path), "KILN_CACHE_DIR": str(tmp_path / "kiln-cache")}
    source = copy_rust_fixture(tmp_path / "machine-a")
    build(source, tmp_path / "out-a", environ, "--compiler-cache", "sccache")
    shutil.rmtree(tmp_path / "kiln-cache")
    other = copy_rust_fixture(tmp_path / "machine-b" / "work" / "checkout")
    report = build(other, tmp_path / "out-b", environ, "--compiler-cache", "sccache")
    stats = report["compiler_cache"]
    assert isinstance(stats, dict)
    assert (stats["hits"], stats["misses"]) == (2, 0), stats


def long_cache_dir(tmp_path: Path) -> Path:
    """A kiln cache whose project place gives TMPDIR a path too long for a socket in it."""
    cache_dir = tmp_path / ("long-" * 10 + "kiln-cache")
    place_tmp = cache_dir / "projects-v1" / "compiled_rust" / "tmp"
    assert len(os.fsencode(f"{place_tmp}{_SCCACHE_STARTUP_SOCKET}")) > _SUN_PATH_BYTES
    return cache_dir


def sccache_stats(environ: dict[str, str]) -> dict[str, object]:
    """The statistics of the sccache server that ``environ`` points to."""
    sccache = find_sccache()
    assert sccache is not None
    result = subprocess.run(
        [sccache, "--show-stats", "--stats-format", "json"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data: dict[str, object] = json.loads(result.stdout)
    return data


@needs_rust_and_sccache
def test_rust_with_the_users_own_sccache_and_a_long_cache_path(tmp_path: Path) -> None:
    """RUSTC_WRAPPER=sccache of the user's own, no --compiler-cache, and kiln's TMPDIR
    too long for the socket the sccache client makes there when it starts a server:
    kiln starts the user's server first, with its own TMPDIR, and the builds work."""
    sccache = find_sccache()
    assert sccache is not None
    cache_dir = long_cache_dir(tmp_path)
    # A server of the test's own, on a port of its own: the machine's stays untouched.
    environ = {
        **rust_environ(tmp_path),
        "RUSTC_WRAPPER": sccache,
        "SCCACHE_SERVER_PORT": str(free_port()),
        "SCCACHE_IDLE_TIMEOUT": "120",
    }
    source = copy_fixture("compiled_rust", tmp_path)
    try:
        build(source, tmp_path / "out1", environ, "--cache-dir", str(cache_dir))
        before = sccache_stats(environ)
        build(source, tmp_path / "out2", environ, "--cache-dir", str(cache_dir))
        stats = sccache_stats_difference(before, sccache_stats(environ))
    finally:
        subprocess.run(
            [sccache, "--stop-server"], env=environ, capture_output=True, timeout=60, check=False
        )
    assert stats is not None, "the user's server restarted during the second build"
    assert stats.hits >= 1 and stats.misses == 0, stats  # the library crate, from the cache


@needs_rust_and_sccache
def test_rust_with_compiler_cache_sccache_and_a_long_cache_path(tmp_path: Path) -> None:
    """kiln's own sccache server takes a loopback port when its socket in the run
    directory would be too long, and is started with kiln's TMPDIR, not the build's."""
    cache_dir = long_cache_dir(tmp_path)
    source = copy_fixture("compiled_rust", tmp_path)
    environ = rust_environ(tmp_path)
    options = ("--cache-dir", str(cache_dir), "--compiler-cache", "sccache")
    build(source, tmp_path / "out1", environ, *options)
    report = build(source, tmp_path / "out2", environ, *options)
    stats = report["compiler_cache"]
    assert isinstance(stats, dict)
    assert stats["hits"] >= 1 and stats["misses"] == 0, stats


def test_compiler_cache_from_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kiln

    source = copy_fixture("compiled_setuptools", tmp_path)
    for name, value in ccache_env(tmp_path / "ccache").items():
        monkeypatch.setenv(name, value)
    kiln.build(source, tmp_path / "out1", ["wheel"], compiler_cache="ccache")
    shutil.rmtree(source / "build")  # setuptools would otherwise reuse its objects
    result = kiln.build(source, tmp_path / "out2", ["wheel"], compiler_cache="ccache")
    assert result.compiler_cache is not None
    assert result.compiler_cache["tool"] == "ccache"
    assert result.compiler_cache["hits"] == COMPILED_FIXTURES["compiled_setuptools"].cacheable_calls
    assert result.compiler_cache["misses"] == 0
