"""The command line: arguments in, a BuildRequest out; a BuildResult in, text out.

With :mod:`kiln.terminal` and :mod:`kiln.subcommands`, the only code that
prints. Progress and backend output go to stderr; what a script may want to
capture (the success line, ``--metadata`` JSON) goes to stdout.

Only what reading the arguments needs is imported up front: right after that,
the warm worker of this project's last build starts (:mod:`kiln.headstart`),
and the rest of kiln is imported while it does.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from kiln import __version__
from kiln.errors import EXIT_INTERRUPTED, EXIT_OK, KilnError, Terminated, UsageError
from kiln.options import (
    COMPILER_CACHE_CHOICES,
    HOOK_RUNNER_CHOICES,
    INSTALLER_CHOICES,
    environment_defaults,
)
from kiln.subcommands import SUBCOMMANDS

TYPE_CHECKING = False  # spares importing typing
if TYPE_CHECKING:
    from kiln.headstart import HeadStart
    from kiln.request import BuildRequest

DESCRIPTION = """\
Build a Python project into an sdist and wheels, in an isolated environment.

SRC is a project directory (default: the current directory) or an sdist
archive (.tar.gz, or a legacy .zip). With none of -s, -w and --editable, kiln
builds the sdist, then builds the wheel from that sdist; from an archive, it
builds the wheel."""

EPILOG = """\
exit codes:
  0    built
  1    the build backend failed
  2    bad usage or bad project configuration
  3    the build environment could not be set up (installer failure, missing
       requirements with --no-isolation)
  130  interrupted (Ctrl-C); 143 stopped by SIGTERM, 129 by SIGHUP (128 + the
       signal); the child processes are stopped and the failed build is kept

more commands:
  kiln wheelhouse [INPUT...] [-r FILE] [-o DIR]   build a whole tree into a wheelhouse
  kiln cache {dir,info,prune,clean}   inspect or clean the cache directory
  kiln debug [NAME] [--env-dir PATH]  open the last failed build's environment

Full reference: https://github.com/kiln-build/kiln/tree/main/docs"""


# Options that are about the command line's output, not the build: no request field.
CLI_ONLY = ("metadata", "report", "timings", "verbose", "quiet", "help", "version")
# The options that make up one request field, where the names differ.
DISTRIBUTION_FLAGS = {"sdist": "sdist", "wheel": "wheel", "editable": "editable"}
CONFIG_OPTIONS = ("config_setting", "config_json")


def build_parser() -> argparse.ArgumentParser:
    """The build's options. Each dest is a :class:`kiln.request.BuildRequest` field
    of that name, one of the two groups above, or in ``CLI_ONLY``; tests/unit/test_cli.py
    checks that against the request's fields and choices."""
    parser = argparse.ArgumentParser(
        prog="kiln",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        metavar="SRC",
        nargs="?",
        default=".",
        help="project directory or sdist archive (default: .)",
    )
    what = parser.add_argument_group("what to build")
    what.add_argument("-s", "--sdist", action="store_true", help="build an sdist")
    what.add_argument("-w", "--wheel", action="store_true", help="build a wheel")
    what.add_argument("--editable", action="store_true", help="build an editable wheel (PEP 660)")
    what.add_argument(
        "--metadata",
        action="store_true",
        help="print the wheel's core metadata as JSON instead of building",
    )
    where = parser.add_argument_group("where")
    where.add_argument(
        "-o",
        "--outdir",
        metavar="PATH",
        type=Path,
        help="output directory (default: SRC/dist, or the archive's directory)",
    )
    where.add_argument(
        "--cache-dir",
        metavar="PATH",
        type=Path,
        help="kiln's cache directory (default: $KILN_CACHE_DIR, "
        "else the platform's user cache directory)",
    )
    where.add_argument(
        "--report",
        metavar="PATH",
        type=Path,
        help="write a JSON report of the artifacts and how they were built",
    )
    where.add_argument(
        "--timings",
        metavar="PATH",
        nargs="?",
        const="",
        help="write an HTML page of where the build's time went (default PATH: "
        "beside the build's log in the cache; kiln prints where)",
    )
    backend = parser.add_argument_group("backend")
    backend.add_argument(
        "-C",
        "--config-setting",
        metavar="KEY[=VALUE]",
        action="append",
        default=[],
        help="pass a setting to the backend (repeatable; a repeated key becomes a list)",
    )
    backend.add_argument(
        "--config-json",
        metavar="JSON",
        help="backend settings as a JSON object; -C entries add to it",
    )
    env = parser.add_argument_group("build environment")
    env.add_argument(
        "-n",
        "--no-isolation",
        dest="isolation",
        action="store_false",
        help="build with the current interpreter; only check the requirements",
    )
    env.add_argument(
        "-x",
        "--skip-dependency-check",
        action="store_true",
        help="with --no-isolation, do not check the build requirements",
    )
    env.add_argument(
        "-p",
        "--python",
        metavar="SPEC",
        help="build for this interpreter: a version (3.12, 3.12.1), a tag (cp312), "
        "a path, or a command on PATH; versions are also looked for under pyenv "
        "(default: the interpreter running kiln)",
    )
    env.add_argument(
        "--installer",
        choices=INSTALLER_CHOICES,
        default="auto",
        help="what installs build requirements (default: auto, uv when installed, else pip)",
    )
    env.add_argument(
        "--env-dir",
        metavar="PATH",
        type=Path,
        help="build in an environment at PATH (absent or empty; default: $KILN_ENV_DIR); "
        "removed after success, kept after failure",
    )
    env.add_argument(
        "--fresh-env",
        action="store_true",
        help="use a throwaway environment, as python -m build does, instead of a "
        "reusable one from the cache",
    )
    env.add_argument(
        "--refresh",
        action="store_true",
        help="resolve the cached environment's requirements again now "
        "(otherwise unpinned ones are re-resolved after $KILN_ENV_TTL seconds, default a day)",
    )
    env.add_argument(
        "--hook-runner",
        choices=HOOK_RUNNER_CHOICES,
        default="auto",
        help="how hook processes start: warm (forked from an interpreter with the "
        "backend imported), plain (a new interpreter each), or auto (warm where fork "
        "is safe; default: $KILN_HOOK_RUNNER, else auto)",
    )
    env.add_argument(
        "--compiler-cache",
        choices=COMPILER_CACHE_CHOICES,
        help="route the backends' C, C++ and Rust compilers through a compiler cache "
        "(auto: whichever is installed; default: $KILN_COMPILER_CACHE, else none)",
    )
    env.add_argument(
        "--compiler-cache-remote",
        metavar="URL",
        help="shared storage for the compiler cache, e.g. redis://host:6379 "
        "(default: $KILN_COMPILER_CACHE_REMOTE)",
    )
    env.add_argument(
        "-c",
        "--constraint",
        "--dependency-constraints-txt",
        metavar="FILE",
        dest="constraints",
        action="append",
        default=[],
        help="constrain build requirement versions (repeatable; hashes kept)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show backend and installer output (-vv: also kiln's debug log)",
    )
    out.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="show less (-q: warnings and the result; -qq: errors only)",
    )
    out.add_argument("-V", "--version", action="version", version=f"kiln {__version__}")
    # No option: only $KILN_ENV_TTL sets it (kiln.options.environment_defaults).
    parser.set_defaults(env_ttl=None)
    return parser


def fill_from_environment(args: argparse.Namespace) -> None:
    """Give the options not given their ``KILN_*`` defaults: the one place the
    command line reads them, before the head start, which needs some."""
    vars(args).update(environment_defaults(vars(args), os.environ))


def request_from_args(args: argparse.Namespace) -> BuildRequest:
    """The request the options describe (their ``KILN_*`` defaults filled in already)."""
    import dataclasses
    import logging

    from kiln.request import BuildRequest, absolute_paths, parse_config_settings

    chosen = [d for d, dest in DISTRIBUTION_FLAGS.items() if getattr(args, dest)]
    if args.metadata and chosen:
        raise UsageError("--metadata cannot be combined with -s, -w or --editable")
    if args.metadata and args.outdir is not None:
        raise UsageError("--metadata prints to stdout; -o/--outdir has no effect with it")
    if args.metadata and args.timings is not None:
        raise UsageError("--metadata builds nothing; --timings has no effect with it")
    if args.report is not None and args.report.is_dir():
        raise UsageError(f"--report {args.report} is a directory; name a file")
    if args.skip_dependency_check and args.isolation:
        logging.getLogger("kiln").warning(
            "-x/--skip-dependency-check only applies with --no-isolation; ignoring it"
        )
    given = vars(args)
    fields = {f.name: given[f.name] for f in dataclasses.fields(BuildRequest) if f.name in given}
    fields.update(
        source=Path(args.source),
        distributions=tuple(chosen),
        config_settings=parse_config_settings(args.config_setting, args.config_json),
        constraints=absolute_paths(args.constraints),
    )
    return BuildRequest(**fields)


def run(argv: Sequence[str]) -> int:
    if argv and argv[0] == "wheelhouse":
        from kiln import wheelhouse_command

        return wheelhouse_command.run(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        from kiln import subcommands
        from kiln.terminal import print_error

        try:
            return subcommands.run(argv)
        except KilnError as error:
            print_error(error, 0)
            return error.exit_code
        except KeyboardInterrupt as interrupt:
            return interrupt_status(interrupt)
    args = build_parser().parse_args(argv)
    try:
        fill_from_environment(args)
    except UsageError as error:  # a bad KILN_* value; the terminal module is not loaded yet
        from kiln.terminal import print_error

        print_error(error, 0)
        return error.exit_code
    head_start = _head_start(args)
    try:
        return _build(args, head_start)
    finally:
        if head_start is not None:
            head_start.discard()  # unless a hook runner took it


def _head_start(args: argparse.Namespace) -> HeadStart | None:
    """Start the last build's warm worker, where this build may use one: a cached
    environment (not --no-isolation, --env-dir or --fresh-env) and warm hooks."""
    if not args.isolation or args.env_dir is not None or args.fresh_env:
        return None
    from kiln.headstart import start_for_build

    return start_for_build(Path(args.source), args.cache_dir, args.hook_runner, args.python)


def _build(args: argparse.Namespace, head_start: HeadStart | None) -> int:
    from kiln.terminal import configure_logging, print_error, print_interrupted, success_line

    verbosity = args.verbose - args.quiet
    configure_logging(verbosity)
    try:
        request = request_from_args(args)
        if args.metadata:
            import json

            from kiln.builder import prepare_metadata

            result = prepare_metadata(request, head_start=head_start)
            print(json.dumps(result.metadata, indent=2, sort_keys=True))
        else:
            from kiln.builder import build
            from kiln.terminal import build_progress

            with build_progress(verbosity):
                result = build(request, head_start=head_start)
            if verbosity > -2:
                print(success_line(result))
        if args.report:
            from kiln.result import write_report

            write_report(result, args.report)
        if args.timings is not None:
            from kiln.terminal import write_build_timings

            write_build_timings(result, args.timings, verbosity)
    except KilnError as error:
        print_error(error, verbosity)
        return error.exit_code
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or Terminated: SIGTERM, SIGHUP
        print_interrupted(interrupt)
        return interrupt_status(interrupt)
    return EXIT_OK


def interrupt_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal that stopped kiln: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return interrupt.exit_code if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
