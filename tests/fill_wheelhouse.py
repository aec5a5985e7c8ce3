"""Fill the local wheelhouse that kiln's integration tests install from.

Usage: python tests/fill_wheelhouse.py [--dest DIR] [--python X.Y ...] [--force]

The tests never touch the network: their build environments install only from the
wheelhouse this script fills, once, from the configured package index:

* every pin in tests/wheelhouse.txt, as a wheel (``--only-binary=:all: --no-deps``), for the
  running interpreter and for each target Python version (3.10, 3.11 and 3.12 by default,
  Linux x86_64), so that version-specific wheels are there for each of them; environment
  markers in wheelhouse.txt are ignored here, so one wheelhouse serves every version;
* every pin in tests/sdists.txt, as an sdist (``--no-binary=:all: --no-deps``), into
  ``DIR/sdists/``.

Wheels and sdists in DIR that no pin asks for any more are deleted. A stamp file in DIR
records a hash of both lists and the Python versions; when it matches and every pinned file
is present, the script does nothing. The machine's pip configuration may choose the index
to download from, but never where files go or which kinds are fetched.

Stdlib only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

TESTS_DIR = Path(__file__).resolve().parent
WHEELHOUSE_TXT = TESTS_DIR / "wheelhouse.txt"
SDISTS_TXT = TESTS_DIR / "sdists.txt"
DEFAULT_DEST = TESTS_DIR / "wheelhouse"
DEFAULT_PYTHONS = ("3.10", "3.11", "3.12")
STAMP_NAME = ".fill-stamp"
STAMP_FORMAT = "kiln-wheelhouse-stamp-1"
# Platforms of the target Python versions other than the running one (CI is Linux x86_64).
TARGET_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "linux_x86_64")
SDIST_SUFFIXES = (".tar.gz", ".zip")

# pip settings (from the environment) that would change where files go or what kind of file
# is fetched. They are dropped for the child pip; index settings are left alone.
_SCRUBBED_PIP_ENV = frozenset(
    {
        "PIP_ABI",
        "PIP_CONSTRAINT",
        "PIP_DEST",
        "PIP_IGNORE_REQUIRES_PYTHON",
        "PIP_IMPLEMENTATION",
        "PIP_NO_BINARY",
        "PIP_NO_DEPS",
        "PIP_ONLY_BINARY",
        "PIP_PLATFORM",
        "PIP_PRE",
        "PIP_PREFER_BINARY",
        "PIP_PREFIX",
        "PIP_PYTHON",
        "PIP_PYTHON_VERSION",
        "PIP_REQUIRE_HASHES",
        "PIP_REQUIRE_VIRTUALENV",
        "PIP_REQUIREMENT",
        "PIP_ROOT",
        "PIP_SRC",
        "PIP_TARGET",
        "PIP_USER",
    }
)

_PIN_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==(?P<version>[^\s=;]+)$"
)


class FillError(Exception):
    """A failure worth a one-line message and a non-zero exit."""


def log(message: str) -> None:
    print(f"fill_wheelhouse: {message}", flush=True)


def canonical(name: str) -> str:
    """A name as it appears, normalised, in wheel and sdist file names."""
    return re.sub(r"[-_.]+", "_", name).lower()


def read_pins(path: Path) -> list[tuple[str, str]]:
    """Read ``name==version`` lines, dropping comments, blank lines and environment markers."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FillError(f"cannot read {path}: {exc.strerror}") from None
    pins: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        match = _PIN_RE.match(line.replace(" ", ""))
        if match is None:
            raise FillError(f"{path.name}:{number}: expected an exact pin 'name==version': {raw!r}")
        if any(canonical(name) == canonical(match["name"]) for name, _ in pins):
            raise FillError(f"{path.name}:{number}: {match['name']} is pinned twice")
        pins.append((match["name"], match["version"]))
    if not pins:
        raise FillError(f"{path} lists no packages")
    return pins


def python_tag(version: str) -> str:
    return "cp" + version.replace(".", "")


def stamp_text(pythons: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for path in (WHEELHOUSE_TXT, SDISTS_TXT):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(",".join(pythons).encode())
    return f"{STAMP_FORMAT} {digest.hexdigest()} pythons={','.join(pythons)}\n"


def _wheel_key(filename: str) -> tuple[str, str] | None:
    parts = filename[: -len(".whl")].split("-")
    return (canonical(parts[0]), parts[1]) if len(parts) >= 5 else None


def _sdist_key(filename: str) -> tuple[str, str] | None:
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            name, _, version = filename[: -len(suffix)].rpartition("-")
            return (canonical(name), version) if name else None
    return None


def missing_files(
    dest: Path, wheels: Sequence[tuple[str, str]], sdists: Sequence[tuple[str, str]]
) -> list[str]:
    """Pins with no matching file in the wheelhouse (checks presence, not every tag)."""
    have_wheels = {key for p in dest.glob("*.whl") if (key := _wheel_key(p.name)) is not None}
    sdist_dir = dest / "sdists"
    have_sdists = {
        key
        for p in (sdist_dir.iterdir() if sdist_dir.is_dir() else ())
        if (key := _sdist_key(p.name)) is not None
    }
    missing = [f"{n}=={v} (wheel)" for n, v in wheels if (canonical(n), v) not in have_wheels]
    missing += [f"{n}=={v} (sdist)" for n, v in sdists if (canonical(n), v) not in have_sdists]
    return missing


def prune_stale(
    dest: Path, wheels: Sequence[tuple[str, str]], sdists: Sequence[tuple[str, str]]
) -> None:
    """Delete wheels and sdists that no pin asks for any more (e.g. after a pin moved back),
    so that an unpinned requirement can never pick them up."""
    wanted_wheels = {(canonical(n), v) for n, v in wheels}
    wanted_sdists = {(canonical(n), v) for n, v in sdists}
    stale = [p for p in dest.glob("*.whl") if _wheel_key(p.name) not in wanted_wheels]
    sdist_dir = dest / "sdists"
    if sdist_dir.is_dir():
        stale += [
            p
            for p in sdist_dir.iterdir()
            if p.name.endswith(SDIST_SUFFIXES) and _sdist_key(p.name) not in wanted_sdists
        ]
    if stale:
        log("removing files no pin asks for: " + ", ".join(sorted(p.name for p in stale)))
        for path in stale:
            path.unlink()


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_PIP_ENV}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def run_pip(args: Sequence[str], step: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--progress-bar", "off", "-q", *args]
    log(step)
    result = subprocess.run(cmd, env=pip_env(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        sys.stderr.write(f"{output}\n" if output else "")
        raise FillError(
            f"'{step}' failed: pip download exited with {result.returncode}"
            f" (command: {' '.join(cmd)})"
        )


def fill(dest: Path, pythons: Sequence[str], *, force: bool) -> None:
    wheels = read_pins(WHEELHOUSE_TXT)
    sdists = read_pins(SDISTS_TXT)
    stamp = dest / STAMP_NAME
    expected = stamp_text(pythons)
    if not force and stamp.is_file() and stamp.read_text(encoding="utf-8") == expected:
        if not missing_files(dest, wheels, sdists):
            log(f"up to date: {dest} ({len(wheels)} wheels, {len(sdists)} sdists)")
            return
        log("stamp matches but files are missing; downloading again")

    sdist_dir = dest / "sdists"
    try:
        sdist_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FillError(f"cannot create {sdist_dir}: {exc.strerror}") from None
    stamp.unlink(missing_ok=True)

    wheel_pins = [f"{n}=={v}" for n, v in wheels]
    common = ["--only-binary=:all:", "--no-deps", "--dest", str(dest)]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    run_pip(
        [*common, *wheel_pins],
        f"wheels for the running Python {running} ({len(wheel_pins)} pins) -> {dest}",
    )
    for version in pythons:
        if version == running:
            continue
        target = [
            "--python-version",
            version,
            "--implementation",
            "cp",
            "--abi",
            python_tag(version),
        ]
        for platform in TARGET_PLATFORMS:
            target += ["--platform", platform]
        run_pip(
            [*common, *target, *wheel_pins],
            f"wheels for CPython {version} linux x86_64 ({len(wheel_pins)} pins) -> {dest}",
        )
    run_pip(
        ["--no-binary=:all:", "--no-deps", "--dest", str(sdist_dir)]
        + [f"{n}=={v}" for n, v in sdists],
        f"sdists ({len(sdists)} pins) -> {sdist_dir}",
    )

    prune_stale(dest, wheels, sdists)
    if missing := missing_files(dest, wheels, sdists):
        raise FillError("pip finished but these are missing: " + ", ".join(missing))
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(expected, encoding="utf-8")
    tmp.replace(stamp)
    log(f"done: {dest} ({len(wheels)} wheels, {len(sdists)} sdists)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Download the wheels and sdists kiln's integration tests build with."
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=DEFAULT_DEST,
        help=f"wheelhouse directory (default: {DEFAULT_DEST.relative_to(TESTS_DIR.parent)})",
    )
    parser.add_argument(
        "--python",
        dest="pythons",
        action="append",
        metavar="X.Y",
        help="a target Python version; repeatable (default: 3.10, 3.11 and 3.12)"
        " - the running interpreter's version is always included",
    )
    parser.add_argument(
        "--force", action="store_true", help="download even if the stamp says it is up to date"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    requested = args.pythons or list(DEFAULT_PYTHONS)
    for version in requested:
        if not re.fullmatch(r"3\.\d+", version):
            print(f"fill_wheelhouse: error: not a Python version: {version!r}", file=sys.stderr)
            return 2
    pythons = sorted({*requested, running}, key=lambda v: tuple(map(int, v.split("."))))
    try:
        fill(args.dest.resolve(), pythons, force=args.force)
    except FillError as exc:
        print(f"fill_wheelhouse: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fill_wheelhouse: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
