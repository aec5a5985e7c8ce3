"""One job: build one node's wheel with kiln, as a library call.

:func:`run_job` turns a :class:`JobSpec` into a :class:`BuildRequest` and a
:class:`JobResult`; a build that fails is a failed result (exit code, message,
log, where it was kept for ``kiln debug``), not an exception. An interrupt is not
a failure: it propagates, after kiln has stopped the build and kept it.

``python -m kiln.wheelhouse.job SPEC.json RESULT.json`` runs one job in a process
of its own (what :class:`kiln.wheelhouse.executors.LocalPool` starts): it reads
the spec, builds, and writes the result atomically. Its stderr is kiln's log;
interrupted (SIGINT, SIGTERM, SIGHUP) it writes a cancelled result and exits with
128 + the signal.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.errors import KilnError
from kiln.wheelhouse.model import JobResult, JobSpec

if TYPE_CHECKING:
    from kiln.request import BuildRequest
    from kiln.result import BuildResult

# What each build system reads for how many compilers it may run at once, so that
# N jobs do not each start a compiler per core. A variable the user set is kept.
PARALLELISM: dict[str, str] = {
    # make, run by autotools builds and CMake's Makefile generator.
    "MAKEFLAGS": "-j{n}",
    # `cmake --build`: scikit-build-core, and setup.py files that call CMake.
    "CMAKE_BUILD_PARALLEL_LEVEL": "{n}",
    # cargo: maturin, setuptools-rust.
    "CARGO_BUILD_JOBS": "{n}",
    # ninja as meson-python runs it honours no variable; distributions' ninja read
    # NINJAJOBS and samurai (samu) reads SAMUFLAGS. Otherwise: -C compile-args=-jN.
    "NINJAJOBS": "{n}",
    "SAMUFLAGS": "-j{n}",
    # numpy.distutils builds (older SciPy-stack packages).
    "NPY_NUM_BUILD_JOBS": "{n}",
    # torch.utils.cpp_extension and the builds modelled on it.
    "MAX_JOBS": "{n}",
}


def compiler_parallelism(environ: Mapping[str, str], cpu_share: int) -> dict[str, str]:
    """``environ`` with the compilers' parallelism set to ``cpu_share`` wherever the
    user left it unset."""
    share = max(1, cpu_share)
    filled = dict(environ)
    for name, value in PARALLELISM.items():
        filled.setdefault(name, value.format(n=share))
    return filled


def build_request(spec: JobSpec) -> BuildRequest:
    """The :class:`kiln.request.BuildRequest` for ``spec``: its wheel alone, into its
    own outdir, with its options (no ``KILN_*`` defaults: the run chose them)."""
    from kiln.request import BuildRequest

    options: dict[str, Any] = {
        "source": Path(spec.source),
        "outdir": Path(spec.outdir),
        "distributions": ("wheel",),
        "config_settings": dict(spec.config_settings),
        "constraints": tuple(Path(c) for c in spec.constraints),
        "cache_dir": Path(spec.cache_dir),
        "installer": spec.installer,
        "hook_runner": spec.hook_runner,
        "compiler_cache": spec.compiler_cache,
        "compiler_cache_remote": spec.compiler_cache_remote,
    }
    if spec.python is not None:
        options["python"] = spec.python
    return BuildRequest(**options)


def run_job(spec: JobSpec) -> JobResult:
    """Build ``spec``'s wheel; a failure is a failed result."""
    from kiln.builder import build

    started = time.monotonic()
    if spec.interpreter:
        from kiln.interpreters import remember

        remember(spec.interpreter)  # the run asked it already: no second query
    try:
        request = build_request(spec)
        result = build(request, environ=compiler_parallelism(spec.environ, spec.cpu_share))
    except KilnError as error:
        kept = error.kept_build
        return JobResult(
            node=spec.node,
            ok=False,
            seconds=time.monotonic() - started,
            exit_code=error.exit_code,
            error=str(error),
            log_path=str(error.log_path) if error.log_path else None,
            kept=str(kept.run_dir) if kept else None,
            timings={name: round(s, 3) for name, s in (error.timings or {}).items()},
        )
    wheels = [a.path for a in result.artifacts if a.kind == "wheel"]
    return JobResult(
        node=spec.node,
        ok=True,
        wheel=str(wheels[0]) if wheels else None,
        seconds=time.monotonic() - started,
        log_path=str(result.log_path) if result.log_path else None,
        compiler_cache=result.compiler_cache,
        timings=job_timings(result),
    )


def job_timings(result: BuildResult) -> dict[str, float]:
    """Seconds per distribution built, in setting up the environment, and per hook."""
    timings = {step.distribution: step.seconds for step in result.steps}
    timings.update(result.timings)
    return {name: round(seconds, 3) for name, seconds in timings.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kiln.wheelhouse.job SPEC RESULT``; see the module's docstring."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 2:
        print("usage: python -m kiln.wheelhouse.job SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec_file, result_file = map(Path, args)
    # The command line's own handling: SIGTERM and SIGHUP raise Terminated, as Ctrl-C
    # raises KeyboardInterrupt, so that every one of them stops and keeps the build.
    from kiln.__main__ import _by, _exit_status, _stop_on_termination

    _stop_on_termination()
    _log_to_stderr(result_file.parent)
    import json

    from kiln.jsonfiles import write_json

    spec = JobSpec.from_json(json.loads(spec_file.read_text(encoding="utf-8")))
    try:
        result = run_job(spec)
    except KeyboardInterrupt as interrupt:
        kept = getattr(interrupt, "kept_build", None)
        result = JobResult(
            node=spec.node,
            ok=False,
            exit_code=_exit_status(interrupt),
            error=f"interrupted{_by(interrupt)}",
            log_path=str(kept.log) if kept else None,
            kept=str(kept.run_dir) if kept else None,
        )
        write_json(result_file, result.to_json(), indent=2, private=True)
        return result.exit_code
    write_json(result_file, result.to_json(), indent=2, private=True)
    return 0


def _log_to_stderr(job_dir: Path) -> None:
    """kiln's own messages, with times, to stderr (the job's output file); the
    backends' output is in the build's log already. The step and the latest output
    line also go to the job's status file, for the command line's progress display."""
    from kiln.wheelhouse.jobstatus import STATUS_FILE, StatusFile

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    status = StatusFile(job_dir / STATUS_FILE)
    kiln_logger = logging.getLogger("kiln")
    kiln_logger.addHandler(handler)
    kiln_logger.addHandler(status)
    kiln_logger.setLevel(logging.INFO)
    output_logger = logging.getLogger("kiln.output")
    output_logger.handlers[:] = [status]
    output_logger.propagate = False  # not into the output file: the build log has it
    output_logger.setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
