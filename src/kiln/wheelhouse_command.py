"""``kiln wheelhouse``: arguments in, a WheelhouseRequest out; outcomes in, text out.

Like :mod:`kiln.cli`, it prints; the library under :mod:`kiln.wheelhouse` only logs.
Progress goes to stderr, one line per finished package (on a terminal, with
status lines under them: :mod:`kiln.wheelhouse_progress`); the summary to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kiln.errors import EXIT_BACKEND, EXIT_OK, KilnError
from kiln.options import COMPILER_CACHE_CHOICES, HOOK_RUNNER_CHOICES, INSTALLER_CHOICES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kiln.wheelhouse.request import WheelhouseRequest
    from kiln.wheelhouse.run import WheelhouseResult
    from kiln.wheelhouse.scheduler import Event

# `--timings` without a path: the page goes into the wheelhouse, beside report.json.
TIMINGS_NAME = "timings.html"

DESCRIPTION = """\
Build a whole dependency tree from source into a wheelhouse: the wheels, a PEP 503
simple index over them (DIR/simple) and a JSON report (DIR/report.json).

Each INPUT is a requirement ("attrs>=23", "six==1.17.0"), a project directory, or a
pylock.toml. Unpinned input is resolved once per interpreter, to versions that have
an sdist, and the pins are written to DIR/pylock.<python>.toml. Every package is
built from its sdist; a wheel built before from the same inputs is taken from
kiln's wheel cache instead."""

EPILOG = """\
exit codes:
  0    every package was built (or taken from the cache or the index)
  1    a package failed to build (or its patch did not apply), or was blocked
       by one that did
  2    bad usage; a bad requirements, lock or settings file (or a patch it names
       is missing); input that cannot be resolved (no version fits, or a package
       has no sdist)
  3    an sdist could not be fetched, or a build environment could not be set up;
       the Dask scheduler (--scheduler) cannot be reached, or no worker joined it
  130  interrupted (Ctrl-C); 143 by SIGTERM, 129 by SIGHUP; finished wheels are
       kept in the cache and the next run resumes

A failed package's build is kept: `kiln debug NAME` opens it.
Full reference: https://github.com/kiln-build/kiln/tree/main/docs/wheelhouse.md"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln wheelhouse",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="*",
        help="a requirement, a project directory or a pylock.toml",
    )
    what = parser.add_argument_group("what to build")
    what.add_argument(
        "-r",
        "--requirement",
        dest="requirement_files",
        metavar="FILE",
        action="append",
        type=Path,
        default=[],
        help="a requirements file or a pylock.toml (repeatable)",
    )
    what.add_argument(
        "-c",
        "--constraint",
        dest="constraints",
        metavar="FILE",
        action="append",
        type=Path,
        default=[],
        help="constrain the resolution and the build environments (repeatable)",
    )
    what.add_argument(
        "-p",
        "--python",
        dest="pythons",
        metavar="SPEC",
        action="append",
        default=[],
        help="build for this interpreter: 3.12, a path, or a name on PATH or under pyenv "
        "(repeatable; default: the one running kiln)",
    )
    what.add_argument(
        "--build-deps",
        choices=("index", "source"),
        default="index",
        help="where build requirements come from: wheels from the index (default), or "
        "built from source here first",
    )
    what.add_argument(
        "--binary",
        metavar="NAME[,NAME]",
        action="append",
        default=[],
        help="take these packages' wheels from the index instead of building them "
        "(repeatable; :all: for every package)",
    )
    what.add_argument("--settings", metavar="FILE", type=Path, help="per-package settings (TOML)")
    what.add_argument(
        "--overrides",
        metavar="DIR",
        type=Path,
        help="a fromager overrides tree (settings/*.yaml, patches/)",
    )
    where = parser.add_argument_group("where")
    where.add_argument(
        "-o",
        "--outdir",
        metavar="DIR",
        type=Path,
        default=Path("wheelhouse"),
        help="the wheelhouse (default: ./wheelhouse)",
    )
    where.add_argument("--cache-dir", metavar="PATH", type=Path, help="kiln's cache directory")
    where.add_argument(
        "--report", metavar="PATH", type=Path, help="the JSON report (default: DIR/report.json)"
    )
    where.add_argument(
        "--timings",
        metavar="PATH",
        nargs="?",
        const="",
        help="write an HTML timeline of the run, rendered from the report "
        "(default PATH: DIR/timings.html)",
    )
    index = parser.add_argument_group("package index")
    index.add_argument("-i", "--index-url", metavar="URL", help="the package index")
    index.add_argument(
        "--extra-index-url",
        dest="extra_index_urls",
        metavar="URL",
        action="append",
        default=[],
        help="another index (repeatable)",
    )
    index.add_argument(
        "-f",
        "--find-links",
        metavar="PATH|URL",
        action="append",
        default=[],
        help="a directory or page of distributions (repeatable)",
    )
    index.add_argument("--no-index", action="store_true", help="use --find-links only")
    how = parser.add_argument_group("how")
    how.add_argument(
        "-j", "--jobs", metavar="N", type=int, help="parallel builds (default: the CPU count)"
    )
    how.add_argument("--fail-fast", action="store_true", help="stop at the first failed package")
    how.add_argument("--installer", choices=INSTALLER_CHOICES, default="auto")
    how.add_argument("--hook-runner", choices=HOOK_RUNNER_CHOICES, default="auto")
    how.add_argument("--compiler-cache", choices=COMPILER_CACHE_CHOICES)
    how.add_argument("--compiler-cache-remote", metavar="URL")
    how.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the builds on this Dask scheduler's workers (tcp://host:8786; "
        "$KILN_SCHEDULER; needs kiln-build[dask])",
    )
    out = parser.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="count", default=0, help="show more")
    out.add_argument("-q", "--quiet", action="count", default=0, help="show less")
    return parser


def request_from_args(args: argparse.Namespace) -> WheelhouseRequest:
    from kiln.wheelhouse.request import WheelhouseRequest, binary_names

    request = WheelhouseRequest(
        # read_inputs tells requirements, project directories and lock files apart.
        requirements=tuple(args.inputs),
        requirement_files=tuple(f.absolute() for f in args.requirement_files),
        constraints=tuple(c.absolute() for c in args.constraints),
        outdir=args.outdir.absolute(),
        cache_dir=args.cache_dir,
        pythons=tuple(args.pythons),
        jobs=args.jobs,
        build_deps=args.build_deps,
        binary=binary_names(args.binary),
        settings=args.settings.absolute() if args.settings else None,
        overrides=args.overrides.absolute() if args.overrides else None,
        fail_fast=args.fail_fast,
        installer=args.installer,
        hook_runner=args.hook_runner,
        compiler_cache=args.compiler_cache or "auto",
        compiler_cache_remote=args.compiler_cache_remote,
        index_url=args.index_url,
        extra_index_urls=tuple(args.extra_index_urls),
        find_links=tuple(args.find_links),
        no_index=args.no_index,
        report=args.report,
        scheduler=args.scheduler,
    )
    return request.with_environment_defaults(os.environ)


def run(argv: Sequence[str]) -> int:
    from kiln.cli import interrupt_status
    from kiln.terminal import configure_logging, print_error, print_interrupted, progress_display
    from kiln.wheelhouse_progress import RunProgress

    args = build_parser().parse_args(argv)
    verbosity = args.verbose - args.quiet
    configure_logging(verbosity)
    try:
        from kiln.wheelhouse.run import build_wheelhouse

        request = request_from_args(args)
        printer = _ProgressPrinter(verbosity)
        # On a terminal, a summary line and a line per running job; elsewhere, heartbeats.
        progress = RunProgress()

        def heard(event: Event) -> None:
            progress(event)
            printer(event)

        with progress_display(verbosity, progress.status_lines, progress.watched):
            result = build_wheelhouse(request, on_event=heard)
    except KilnError as error:
        print_error(error, verbosity)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        print_interrupted(interrupt)
        print("  finished wheels are kept in the cache: run again to resume", file=sys.stderr)
        return interrupt_status(interrupt)
    _print_summary(result, verbosity)
    if args.timings is not None and result.report is not None:
        try:
            _write_timings(result.report, result.outdir, args.timings, verbosity)
        except KilnError as error:
            print_error(error, verbosity)
            return error.exit_code
    return EXIT_OK if result.ok else EXIT_BACKEND


def _write_timings(report: Path, outdir: Path, path: str, verbosity: int) -> None:
    """The run's timings page, rendered from its JSON report."""
    from kiln.errors import UsageError
    from kiln.jsonfiles import read_json_object
    from kiln.timings import wheelhouse_html, write_html

    target = Path(path) if path else outdir / TIMINGS_NAME
    try:
        write_html(target, wheelhouse_html(read_json_object(report)))
    except OSError as error:
        raise UsageError(f"cannot write --timings {target}: {error.strerror or error}") from error
    if verbosity > -2:
        print(f"timings: {target}", file=sys.stderr)


class _ProgressPrinter:
    """One line per finished package on stderr."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    def __call__(self, event: Event) -> None:
        if self.verbosity < 0:
            return
        from kiln.wheelhouse.model import Status

        outcome = event.outcome
        if event.kind == "started":
            if self.verbosity > 0:
                print(f"* building {event.node}", file=sys.stderr)
            return
        if outcome is None:
            return
        job = outcome.result
        where = f" on {job.worker}" if job is not None and job.worker != "local" else ""
        progress = f"[{event.done}/{event.total}]"
        if outcome.status is Status.BUILT and job is not None:
            print(f"* {progress} built {event.node} in {job.seconds:.1f} s{where}", file=sys.stderr)
        elif outcome.status is Status.FAILED:
            first = ((job.error if job else None) or outcome.reason or "failed").splitlines()[0]
            print(f"kiln: {progress} {event.node} failed{where}: {first}", file=sys.stderr)


def _print_summary(result: WheelhouseResult, verbosity: int) -> None:
    from kiln.wheelhouse.model import Status

    for outcome in result.outcomes.values():
        if outcome.status is Status.FAILED and verbosity > -2:
            job = outcome.result
            name = outcome.node.split("==", 1)[0]
            # The reason again: with -q no progress line showed it.
            reason = ((job.error if job else None) or outcome.reason or "").splitlines()
            why = f": {reason[0]}" if reason else ""
            print(f"kiln: failed: {outcome.node}{why}", file=sys.stderr)
            if job is not None and job.log_path:
                print(f"  log: {job.log_path}", file=sys.stderr)
            if job is not None and job.kept:  # a patch that does not apply keeps none
                print(f"  open it where it failed: kiln debug {name}", file=sys.stderr)
        elif outcome.status is Status.BLOCKED and verbosity > -2:
            print(f"kiln: blocked: {outcome.node} (needs {outcome.reason})", file=sys.stderr)
    for seed, cycle in result.cycles:
        print(
            f"kiln: build cycle {' -> '.join(cycle)}: {seed} taken as a wheel (seed)",
            file=sys.stderr,
        )
    if verbosity <= -2:
        return
    counts = ", ".join(
        f"{result.count(status)} {status.value}" for status in Status if result.count(status)
    )
    print(f"wheelhouse {result.outdir}: {counts or 'nothing to build'} in {result.seconds:.1f} s")
