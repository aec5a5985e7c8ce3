"""Tests for kiln.wheelhouse.job (no build runs here) and LocalPool's reading of a
job's result."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from kiln.errors import UsageError
from kiln.request import BuildRequest
from kiln.wheelhouse.executors import job_dir, read_result
from kiln.wheelhouse.job import PARALLELISM, build_request, compiler_parallelism, run_job
from kiln.wheelhouse.model import JobResult, JobSpec


def make_spec(tmp_path: Path, **changes: object) -> JobSpec:
    spec = JobSpec(
        node="six==1.17.0@cp311",
        name="six",
        version="1.17.0",
        source=str(tmp_path / "six-1.17.0.tar.gz"),
        outdir=str(tmp_path / "jobs" / "six"),
        cache_dir=str(tmp_path / "cache"),
        constraints=(str(tmp_path / "c.txt"),),
        config_settings={"--build-option": "--quiet"},
        installer="uv",
        hook_runner="plain",
        compiler_cache="ccache",
        compiler_cache_remote="redis://localhost:6379",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def test_compiler_parallelism_is_the_jobs_share_where_the_user_set_none() -> None:
    environ = compiler_parallelism({"PATH": "/bin", "MAKEFLAGS": "-j7 -k"}, 3)
    assert environ["PATH"] == "/bin"
    assert environ["MAKEFLAGS"] == "-j7 -k"  # the user's own
    assert environ["CMAKE_BUILD_PARALLEL_LEVEL"] == "3"
    assert environ["CARGO_BUILD_JOBS"] == "3"
    assert environ["SAMUFLAGS"] == "-j3"
    assert set(PARALLELISM) <= set(environ)
    assert compiler_parallelism({}, 0)["MAKEFLAGS"] == "-j1"


def test_the_request_is_the_wheel_alone_with_the_specs_options(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    request = build_request(spec)
    assert request.distributions == ("wheel",)
    assert request.source == Path(spec.source)
    assert request.outdir == Path(spec.outdir)
    assert request.cache_dir == Path(spec.cache_dir)
    assert request.constraints == (tmp_path / "c.txt",)
    assert dict(request.config_settings) == {"--build-option": "--quiet"}
    assert (request.installer, request.hook_runner) == ("uv", "plain")
    assert (request.compiler_cache, request.compiler_cache_remote) == (
        "ccache",
        "redis://localhost:6379",
    )


def test_a_target_interpreter_reaches_the_request_or_is_refused(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, python="/usr/bin/python3.12")
    if "python" in {f.name for f in dataclasses.fields(BuildRequest)}:
        assert getattr(build_request(spec), "python") == "/usr/bin/python3.12"  # noqa: B009
    else:  # a kiln without --python must not build for the wrong interpreter
        with pytest.raises(UsageError, match=r"another interpreter \(/usr/bin/python3\.12\)"):
            build_request(spec)


def test_a_build_that_fails_is_a_failed_result(tmp_path: Path) -> None:
    # The source does not exist: kiln refuses before anything runs.
    result = run_job(make_spec(tmp_path))
    assert not result.ok
    assert result.node == "six==1.17.0@cp311"
    assert result.exit_code == 2
    assert result.error == f"source {tmp_path / 'six-1.17.0.tar.gz'} does not exist"


def test_a_job_without_a_result_failed_and_its_output_says_why(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    output = tmp_path / "output.log"
    output.write_text("starting\nMemoryError: out of memory\n\n")
    result = read_result(spec, tmp_path / "result.json", output, -9, time.monotonic())
    assert not result.ok
    assert result.exit_code == 137
    assert result.error == "MemoryError: out of memory"
    assert result.log_path == str(output)


def test_a_jobs_own_result_is_read_with_its_log_defaulting_to_the_output(
    tmp_path: Path,
) -> None:
    from kiln.jsonfiles import write_json

    spec = make_spec(tmp_path)
    written = JobResult(node=spec.node, ok=True, wheel="/w/six.whl", seconds=1.5)
    write_json(tmp_path / "result.json", written.to_json())
    output = tmp_path / "output.log"
    result = read_result(spec, tmp_path / "result.json", output, 0, time.monotonic())
    assert result == dataclasses.replace(written, log_path=str(output))


def test_a_jobs_files_are_beside_its_outdir(tmp_path: Path) -> None:
    assert job_dir(make_spec(tmp_path)) == tmp_path / "jobs" / "six.job"
