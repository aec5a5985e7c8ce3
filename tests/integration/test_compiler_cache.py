"""Compiler caches with real compiler runs: CMake builds that hit, an unreachable sccache remote."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kiln.errors import EnvironmentSetupError
from tests.redis_server import free_port

# The compiler-cache fixtures and helpers live with the unit tests of the same module.
from tests.unit.test_compiler_cache import (  # noqa: F401 (Caches and the fixtures)
    Caches,
    Run,
    ccache,
    clean_environ,
    gcc,
    sccache,
    sccache_executable,
    tool,
)


def test_sccache_unreachable_remote_is_a_setup_error(sccache: Caches, tmp_path: Path) -> None:  # noqa: F811
    url = f"redis://:secret@127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(EnvironmentSetupError, match="remote storage cannot be reached") as caught:
        sccache.make().environ(
            clean_environ(tmp_path), base_dir=tmp_path, work_dir=tmp_path / "w", remote=url
        )
    assert "secret" not in str(caught.value)


@pytest.mark.needs("cmake", "make")
def test_cmake_builds_hit(tool: Caches, gcc: str, tmp_path: Path) -> None:  # noqa: F811
    """A CMake project (as scikit-build-core drives it) configured and built in two
    runs: ccache comes in through the launcher variables, sccache through CC."""
    cmake = shutil.which("cmake")
    assert cmake is not None  # needs() above
    results = []
    for run_id in ("run-1", "run-2"):
        cache = tool.make()
        run = Run(tmp_path / "kiln-cache", run_id)
        (run.project / "CMakeLists.txt").write_text(
            "cmake_minimum_required(VERSION 3.15)\nproject(answer C)\n"
            "add_library(answer STATIC answer.c)\n"
            "target_include_directories(answer PRIVATE include $ENV{ENV_INCLUDE})\n"
            "target_compile_options(answer PRIVATE -g)\n"
        )
        environ = run.environ(cache, clean_environ(tmp_path))
        build_dir = run.place / "build"
        for command in (
            [cmake, "-S", str(run.project), "-B", str(build_dir), "-G", "Unix Makefiles"],
            [cmake, "--build", str(build_dir), "--verbose"],
        ):
            done = subprocess.run(
                command, env=environ, capture_output=True, text=True, timeout=300, check=False
            )
            assert done.returncode == 0, done.stdout + done.stderr
        if tool.name == "ccache":
            assert f"{cache.executable} " in done.stdout, "the launcher runs ccache"
        stats = cache.stats()
        cache.close()
        assert stats is not None
        results.append(stats)
    assert results[0].misses >= 1
    # The second run compiles nothing anew: its configure checks and answer.c all hit.
    assert results[1].misses == 0 and results[1].hits >= 1, results
