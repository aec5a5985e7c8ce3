"""``kiln cache ...`` and ``kiln debug``: the CLI's maintenance commands."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kiln.layout import resolve_cache_dir
from kiln.options import CACHE_DIR_ENV, environment_defaults

TYPE_CHECKING = False  # the command line imports this module before the rest of kiln
if TYPE_CHECKING:
    from kiln.cache import Cache

SUBCOMMANDS = ("cache", "debug")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiln", description="kiln's maintenance commands.")
    commands = parser.add_subparsers(dest="command", required=True)

    cache = commands.add_parser("cache", help="inspect or clean kiln's cache directory")
    cache_commands = cache.add_subparsers(dest="action", required=True)
    for action, text in (
        ("dir", "print the cache directory"),
        ("info", "print the size of each bucket"),
        (
            "prune",
            "remove crashed runs' leftovers, old failed builds, unused environments and old logs",
        ),
        ("clean", "remove everything in the cache except runs in progress"),
    ):
        sub = cache_commands.add_parser(action, help=text, description=text)
        _add_cache_dir(sub)

    debug = commands.add_parser(
        "debug",
        help="open a shell in the last failed build's environment",
        description="Open a shell where the last failed build's hook ran, with its "
        "environment variables, and print the command that runs the hook again.",
    )
    _add_cache_dir(debug)
    debug.add_argument(
        "name",
        metavar="NAME",
        nargs="?",
        help="the package whose failed build to open (a wheelhouse run keeps one per "
        "package; default: the newest failed build)",
    )
    debug.add_argument(
        "--env-dir",
        metavar="PATH",
        type=Path,
        help="the failed build kept in this --env-dir (default: $KILN_ENV_DIR, "
        "else the newest failed build in the cache)",
    )
    debug.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="only print where the build is and how to re-run the hook",
    )
    return parser


def _add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        metavar="PATH",
        type=Path,
        help=f"kiln's cache directory (default: ${CACHE_DIR_ENV}, "
        "else the platform's user cache directory)",
    )


def run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    # --cache-dir and --env-dir from KILN_CACHE_DIR and KILN_ENV_DIR, as for a build.
    vars(args).update(environment_defaults(vars(args), os.environ))
    if args.command == "cache":
        return _cache(args.action, args.cache_dir)
    return _debug(args.cache_dir, args.env_dir, args.name, print_only=args.print_only)


def _cache(action: str, explicit: Path | None) -> int:
    if action == "dir":
        print(resolve_cache_dir(explicit))
        return 0
    from kiln.cache import Cache

    # Only read, or only remove: an existing cache, never one made here.
    cache = Cache.existing(explicit, write=action != "info")
    if cache is None:
        root = resolve_cache_dir(explicit)
        if action == "info":
            print(f"{'total':<12} {_human(0):>10}  {root} (not made yet)")
        else:
            print(f"no kiln cache at {root}: nothing to remove")
        return 0
    if action == "info":
        sizes = cache.sizes()
        for bucket, size in sizes.items():
            print(f"{bucket:<15} {_human(size):>10}")
        print(f"{'total':<15} {_human(sum(sizes.values())):>10}  {cache.root}")
        return 0
    cache.refuse_foreign_entries(f"kiln cache {action}")
    if action == "prune":
        report = cache.prune()
        print(
            f"removed {len(report.stale_runs)} stale run(s), {len(report.failed_runs)} old "
            f"failed build(s), {len(report.environments)} unused environment(s) and "
            f"{report.logs} log(s)"
            + (f", {len(report.partials)} half-written cache entr(ies)" if report.partials else "")
            + f"; freed {_human(report.freed)}"
        )
    else:
        kept = cache.clean()
        print(f"cleaned {cache.root}")
        for path, why in kept:
            print(f"kept {path}: {why}", file=sys.stderr)
    return 0


def _debug(
    explicit_cache: Path | None, env_dir: Path | None, name: str | None, *, print_only: bool
) -> int:
    from kiln.cache import Cache
    from kiln.debug import find_failed_build, local_timestamp
    from kiln.errors import UsageError

    cache: Cache | None
    try:
        # Read, never written: a read-only cache is fine.
        cache = Cache.existing(explicit_cache)
    except UsageError:
        if env_dir is None:
            raise
        cache = None
    failed = find_failed_build(cache, env_dir, name)
    cwd = failed.cwd
    print(f"Failed build of {failed.source} ({local_timestamp(failed.when)})")
    print(f"  reason:      {failed.reason.splitlines()[0]}")
    if failed.environment is not None:
        print(f"  environment: {failed.environment}")
    print(f"  directory:   {cwd}{'' if cwd.is_dir() else ' (no longer there)'}")
    print(f"  log:         {failed.log}")
    rerun = failed.rerun_command()
    if rerun is not None:
        print(f"Re-run the failed {failed.hook.hook if failed.hook else ''} hook with:")
        print(f"  {rerun}")
    if print_only:
        return 0
    if not cwd.is_dir():
        raise UsageError(
            f"the failed build ran in {cwd}, which no longer exists (moved or removed), "
            f"so there is no shell to open there; its log is {failed.log}"
        )
    shell = os.environ.get("SHELL") or ("cmd.exe" if os.name == "nt" else "/bin/sh")
    print(f"Starting {shell} there; exit it to leave.", flush=True)
    environ = failed.environ(dict(os.environ))
    environ["KILN_DEBUG_BUILD"] = str(failed.run_dir)
    return subprocess.call([shell], cwd=cwd, env=environ)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
