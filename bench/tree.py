"""The tree benchmark: ``kiln wheelhouse`` against ``pip wheel --no-binary``,
``uv pip install --no-binary --target`` and (optionally) ``fromager bootstrap`` on a
tree of 20 real packages, each built from its sdist.

Usage::

    python bench/tree.py [--rounds N] [--arms kiln-cold,pip,uv,...] [--fromager]
                         [--workdir DIR] [--markdown] [--json PATH]

The sdists and the build dependencies' wheels are downloaded once, into a bench
wheelhouse in the work directory (``--workdir``, default ``.bench-tree/`` in the
repository, git-ignored); after that every arm but fromager runs offline from it, so
the arms compare builds, not downloads. See bench/README.md.

Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cells import REPO_DIR, BenchError, log
from harness import Context, find_uv
from machine import capture, machine_info, warn_if_busy
from run import csv_choice
from timing import run_in_session, tail
from treeparts import (
    ARMS,
    DEFAULT_ARMS,
    FROMAGER,
    KILN_COLD,
    KILN_PATCHED,
    KILN_SEQUENCE,
    KILN_SOURCE,
    KILN_WARM,
    PIP,
    TREE_REQUIREMENTS,
    UV,
    TreeResults,
    TreeSetup,
    build_requires_from_pyproject,
    command,
    missing_installed,
    missing_wheels,
    read_pins,
    report_statuses,
    round_patch,
    sdist_name_version,
    sdist_pyproject,
    settings_toml,
    wheel_name_version,
)

DEFAULT_WORKDIR = REPO_DIR / ".bench-tree"
PATCHED_PACKAGE = "six"  # pure and quick: the rebuild count is what is measured


class TreeRunFailed(Exception):
    pass


# ---- the bench wheelhouse ----------------------------------------------------------------


def pip_download(python: str, args: Sequence[str], wheelhouse: Path) -> None:
    """``pip download`` from PyPI (the one online step), with the machine's pip
    configuration left out so that only PyPI is asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    cmd = [python, "-m", "pip", "download", "-q", "-d", str(wheelhouse), *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} failed:\n{tail(result.stdout + result.stderr)}")


def fill_wheelhouse(
    python: str, pins: list[tuple[str, str]], wheelhouse: Path, *, sources: bool
) -> None:
    """The pinned sdists, the wheels of their build dependencies (each package's set
    downloaded on its own, as ranges may differ), and with ``sources`` the sdists of
    those build dependencies too (for --build-deps source)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    have = {found for f in wheelhouse.iterdir() if (found := sdist_name_version(f.name))}
    wanted = [f"{name}=={version}" for name, version in pins if (name, version) not in have]
    if wanted:
        log(f"bench: downloading {len(wanted)} sdist(s) into {wheelhouse}")
        pip_download(python, ["--no-deps", "--no-binary", ":all:", *wanted], wheelhouse)
    marker = wheelhouse / ".build-deps-done"
    if not marker.exists():
        pinned = {name for name, _ in pins}
        for sdist in sorted(wheelhouse.iterdir()):
            found = sdist_name_version(sdist.name)
            if found is None or found[0] not in pinned:
                continue
            requires = build_requires_from_pyproject(sdist_pyproject(sdist))
            log(f"bench: build dependencies of {sdist.name}: {', '.join(requires)}")
            pip_download(python, ["--only-binary", ":all:", *requires], wheelhouse)
        marker.touch()
    source_marker = wheelhouse / ".build-deps-sources-done"
    if sources and not source_marker.exists():
        sdists = {found for f in wheelhouse.iterdir() if (found := sdist_name_version(f.name))}
        for wheel in sorted(wheelhouse.glob("*.whl")):
            found = wheel_name_version(wheel.name)
            if found and found not in sdists:
                name, version = found
                log(f"bench: sdist of build dependency {name}=={version}")
                pip_download(
                    python, ["--no-deps", "--no-binary", name, f"{name}=={version}"], wheelhouse
                )
        source_marker.touch()


# ---- one run ------------------------------------------------------------------------------


def timed(cmd: list[str], env: dict[str, str], rundir: Path, timeout: float) -> float:
    """Run ``cmd`` as bench/run.py runs a tool (its own session, output to files);
    the seconds it took."""
    done = run_in_session(cmd, env, rundir, timeout)
    if done.timed_out:
        raise TreeRunFailed(f"timed out after {timeout:g} s\n  $ {shlex.join(cmd)}")
    if done.returncode != 0:
        raise TreeRunFailed(
            f"exit status {done.returncode}\n  $ {shlex.join(cmd)}\n{tail(done.output)}"
        )
    return done.seconds


class TreeBench:
    def __init__(self, ctx: Context, setup: TreeSetup, timeouts: dict[str, float]) -> None:
        self.ctx = ctx
        self.setup = setup
        self.timeouts = timeouts
        self.results = TreeResults()

    def kiln_cache(self, arm: str) -> Path:
        shared = arm in KILN_SEQUENCE
        return self.ctx.work / ("kiln-cache-warm" if shared else f"kiln-cache-{arm}")

    def compiler_cache(self, arm: str) -> Path:
        """The arm's ccache/sccache directory: a wheelhouse turns the compiler cache on,
        and a cold run must not find objects an earlier round compiled."""
        return self.kiln_cache(arm).with_name(self.kiln_cache(arm).name + "-compilers")

    def env_for(self, arm: str) -> dict[str, str]:
        env = self.ctx.base_env()
        if arm.startswith("kiln-"):
            env["CCACHE_DIR"] = str(self.compiler_cache(arm) / "ccache")
            env["SCCACHE_DIR"] = str(self.compiler_cache(arm) / "sccache")
        if arm == FROMAGER:
            # fromager resolves and downloads from PyPI itself (it has no offline mode
            # for a bootstrap); its sdists-repo is kept from run to run, so that after
            # the warm-up round it downloads nothing.
            for key in [k for k in env if k.startswith(("PIP_", "UV_"))]:
                del env[key]
            env["UV_CACHE_DIR"] = str(self.ctx.work / "uv-cache-fromager")
            env["PIP_CONFIG_FILE"] = os.devnull
            # fromager runs the uv of its own environment, found on PATH.
            bindir = str(Path(self.setup.fromager[0]).parent)
            env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
        return env

    def before(self, arm: str, rundir: Path, round_number: int) -> Path | None:
        """Empty what the arm must not reuse; write the settings file of a patched run."""
        if arm in (KILN_COLD, KILN_SOURCE):
            shutil.rmtree(self.kiln_cache(arm), ignore_errors=True)
            shutil.rmtree(self.compiler_cache(arm), ignore_errors=True)
        if arm == KILN_WARM:  # environments kept, every wheel built again
            shutil.rmtree(self.kiln_cache(arm) / "wheels-v1", ignore_errors=True)
        if arm == PIP:
            shutil.rmtree(self.ctx.work / "pip-cache" / "wheels", ignore_errors=True)
        if arm == UV:  # uv's built wheels; its downloaded wheels stay
            for bucket in (self.ctx.work / "uv-cache").glob("*"):
                if bucket.name.startswith(("sdists-v", "built-wheels-v")):
                    shutil.rmtree(bucket, ignore_errors=True)
        if arm == FROMAGER:  # its downloads stay; its built wheels and work go
            scratch = self.ctx.work / "fromager"
            for sub in ("sdists-repo/builds", "work-dir"):
                shutil.rmtree(scratch / sub, ignore_errors=True)
            # No settings file, settings dir or patches: fromager's defaults, not the
            # repository's overrides/ (the paths point into the scratch directory).
        if arm == KILN_PATCHED:
            (rundir / "bench.patch").write_text(round_patch(round_number), encoding="utf-8")
            settings = rundir / "settings.toml"
            settings.write_text(settings_toml(PATCHED_PACKAGE, "bench.patch"), encoding="utf-8")
            return settings
        return None

    def run(self, arm: str, round_number: int) -> float:
        rundir = self.ctx.work / "runs" / arm
        shutil.rmtree(rundir, ignore_errors=True)
        rundir.mkdir(parents=True)
        out = (self.ctx.work / "fromager" / "wheels-repo") if arm == FROMAGER else rundir / "out"
        if arm == FROMAGER:
            shutil.rmtree(out, ignore_errors=True)
        settings = self.before(arm, rundir, round_number)
        scratch = self.ctx.work / "fromager"
        cmd = command(
            self.setup, arm, out, cache=self.kiln_cache(arm), scratch=scratch, settings=settings
        )
        try:
            elapsed = timed(
                cmd, self.env_for(arm), rundir, self.timeouts.get(arm, self.ctx.timeout)
            )
        finally:  # no arm sees what another left in TMPDIR
            for entry in self.ctx.tmp.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        self.check(arm, out, cmd)
        shutil.rmtree(rundir)
        return elapsed

    def check(self, arm: str, out: Path, cmd: list[str]) -> None:
        """The run made all 20 packages (and, for kiln, says what it built)."""
        names = self.setup.names
        if arm == UV:
            missing = missing_installed(names, (p.name for p in out.iterdir()))
        else:
            missing = missing_wheels(names, (p.name for p in out.rglob("*.whl")))
        if missing:
            raise TreeRunFailed(f"no wheel for {', '.join(missing)}\n  $ {shlex.join(cmd)}")
        if arm.startswith("kiln"):
            report_path = out / "report.json"
            try:
                statuses = report_statuses(json.loads(report_path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise TreeRunFailed(f"{report_path}: {exc}") from None
            self.results.statuses.setdefault(arm, []).append(dict(statuses))

    def round(self, arms: Sequence[str], rng: random.Random, number: int, *, warmup: bool) -> None:
        # kiln's warm, no-change and patched runs share a cache: one block, in order.
        blocks: list[list[str]] = [[a] for a in arms if a not in KILN_SEQUENCE]
        sequence = [a for a in KILN_SEQUENCE if a in arms]
        if sequence:
            blocks.append(sequence)
        rng.shuffle(blocks)
        for block in blocks:
            for position, arm in enumerate(block):
                if arm not in self.results.failures and not self.run_arm(arm, number, warmup):
                    # The later runs of the block measure what this one left behind.
                    for later in block[position + 1 :]:
                        self.results.failures.setdefault(later, f"skipped: {arm} failed")
                    break

    def run_arm(self, arm: str, number: int, warmup: bool) -> bool:
        """One run of ``arm``, its time recorded unless ``warmup``; False if it failed."""
        try:
            elapsed = self.run(arm, number)
        except TreeRunFailed as exc:
            self.results.failures[arm] = str(exc).splitlines()[0]
            log(f"bench: FAILED {arm}: {exc}\nbench: {arm} is left out from now on")
            return False
        note = " (warm-up)" if warmup else ""
        log(f"bench:   {arm:<16} {elapsed:8.1f} s{note}")
        if not warmup:
            self.results.samples.setdefault(arm, []).append(elapsed)
        return True


# ---- the command line -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build a tree of 20 real packages from source with kiln wheelhouse, "
        "pip wheel, uv pip install and fromager. See bench/README.md.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default: 3)")
    parser.add_argument(
        "--arms",
        type=csv_choice(ARMS),
        default=list(DEFAULT_ARMS),
        help=f"default: {','.join(DEFAULT_ARMS)}",
    )
    parser.add_argument(
        "--fromager",
        action="store_true",
        help="also time kiln --build-deps source and fromager bootstrap (slow)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up round")
    parser.add_argument(
        "--requirements", type=Path, default=TREE_REQUIREMENTS, help="the pinned tree"
    )
    parser.add_argument("--python", default=sys.executable, help="the interpreter built for")
    parser.add_argument("--kiln", help="the kiln command (default: next to --python)")
    parser.add_argument("--uv", help="the uv binary (default: the uv package of --python)")
    parser.add_argument(
        "--fromager-cmd", help="the fromager command (default: WORKDIR/fromager-venv/bin/fromager)"
    )
    parser.add_argument("--kiln-arg", action="append", default=[], metavar="ARG")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="kiln's and fromager's jobs")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument(
        "--fromager-timeout", type=float, default=3600, help="seconds per fromager run"
    )
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    if args.fromager:
        args.arms = [a for a in ARMS if a in args.arms or a in (KILN_SOURCE, FROMAGER)]
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def fromager_command(args: argparse.Namespace, work: Path) -> list[str]:
    """The fromager command; installs it from PyPI into a bench venv when needed."""
    if args.fromager_cmd:
        return shlex.split(args.fromager_cmd)
    venv = work / "fromager-venv"
    script = venv / "bin" / "fromager"
    if not script.is_file():
        log(f"bench: installing fromager into {venv}")
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "fromager"],
            check=True,
            env=env,
        )
    return [str(script)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    python = str(Path(args.python).absolute())
    work = args.workdir.absolute()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    kiln_script = Path(python).parent / "kiln"
    kiln = shlex.split(args.kiln) if args.kiln else [str(kiln_script)]
    uv = find_uv(python, args.uv)
    try:
        if uv is None:
            raise BenchError("uv not found (install the uv package, or pass --uv PATH)")
        try:
            pins = read_pins(args.requirements.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"{args.requirements}: {exc}") from None
        wheelhouse = work / "wheelhouse"
        fill_wheelhouse(python, pins, wheelhouse, sources=KILN_SOURCE in args.arms)
        for sub in ("tmp", "empty-index", "xdg-cache", "runs"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        ctx = Context(python, kiln, uv, wheelhouse, work, list(args.kiln_arg), args.timeout, False)
        setup = TreeSetup(
            python=python,
            kiln=kiln,
            uv=uv,
            fromager=fromager_command(args, work) if FROMAGER in args.arms else [],
            requirements=args.requirements.absolute(),
            names=[name for name, _ in pins],
            jobs=args.jobs,
            kiln_args=list(args.kiln_arg),
        )
        if any(a.startswith("kiln") for a in args.arms) and capture([*kiln, "--version"]) == "?":
            raise BenchError(f"kiln does not run: {shlex.join(kiln)} --version failed")
        machine = machine_info()
        warn_if_busy(machine)
        log(f"bench: work directory {work}, seed {seed}, arms {','.join(args.arms)}")
        bench = TreeBench(ctx, setup, {FROMAGER: args.fromager_timeout})
        rng = random.Random(seed)
        started = time.perf_counter()
        try:
            if not args.no_warmup:
                log("bench: warm-up round (discarded)")
                bench.round(args.arms, rng, 0, warmup=True)
            for number in range(1, args.rounds + 1):
                bench.round(args.arms, rng, number, warmup=False)
                bench.results.rounds_done = number
                log(f"bench: round {number}/{args.rounds} done")
        except KeyboardInterrupt:
            bench.results.interrupted = True
            log("bench: interrupted; reporting what was measured")
    except BenchError as exc:
        log(f"bench: error: {exc}")
        return 2
    from treeparts import report_text

    header = [
        f"Tree benchmark: {len(pins)} packages from sdists, -j {args.jobs}, "
        f"{bench.results.rounds_done} round(s), seed {seed}",
        f"Machine: {machine.get('cpu')}, {machine.get('nproc')} CPUs, load {machine.get('load')}"
        f" -> {machine_info().get('load')}",
        f"Took {(time.perf_counter() - started) / 60:.1f} min",
        "",
    ]
    sys.stdout.write(
        "\n".join(header) + "\n" + report_text(bench.results, args.arms, markdown=args.markdown)
    )
    if args.json:
        data: dict[str, Any] = {
            "seed": seed,
            "machine": machine,
            "arms": list(args.arms),
            "samples": bench.results.samples,
            "failures": bench.results.failures,
            "statuses": bench.results.statuses,
            "rounds_done": bench.results.rounds_done,
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 1 if bench.results.failures or bench.results.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
