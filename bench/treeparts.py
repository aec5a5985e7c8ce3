"""The tree benchmark's pure parts: its arms, each arm's command line, reading an
sdist's build requirements, the patch that changes one package, reading kiln's
wheelhouse report, and the rows of the result tables. No processes are started here.

``bench/tree.py`` puts them together and runs them.
"""

from __future__ import annotations

import io
import re
import sys
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cells import BENCH_DIR
from render import fmt_ratio, render_markdown, render_text
from stats import median, ratio

TREE_REQUIREMENTS = BENCH_DIR / "tree" / "requirements.txt"

# The arms, in the order of the tables. kiln's warm, no-change and patched runs share
# one cache and always run in this order within a round; the others are shuffled.
KILN_COLD = "kiln-cold"
KILN_WARM = "kiln-warm"
KILN_NO_CHANGE = "kiln-no-change"
KILN_PATCHED = "kiln-patched"
KILN_SOURCE = "kiln-source"
PIP = "pip"
UV = "uv"
FROMAGER = "fromager"
ARMS = (KILN_COLD, KILN_WARM, KILN_NO_CHANGE, KILN_PATCHED, PIP, UV, KILN_SOURCE, FROMAGER)
DEFAULT_ARMS = (KILN_COLD, KILN_WARM, KILN_NO_CHANGE, KILN_PATCHED, PIP, UV)
KILN_SEQUENCE = (KILN_WARM, KILN_NO_CHANGE, KILN_PATCHED)  # one cache, in this order

ARM_TITLES = {
    KILN_COLD: "kiln wheelhouse, cold (empty kiln cache)",
    KILN_WARM: "kiln wheelhouse, warm (environments kept, no cached wheels)",
    KILN_NO_CHANGE: "kiln wheelhouse, no change (second run)",
    KILN_PATCHED: "kiln wheelhouse, one patch changed",
    KILN_SOURCE: "kiln wheelhouse --build-deps source, cold",
    PIP: "pip wheel --no-binary",
    UV: "uv pip install --no-binary --target",
    FROMAGER: "fromager bootstrap",
}

# The targets.
TARGET_COLD_VS_UV = 0.5
TARGET_COLD_VS_PIP = 0.3
TARGET_NO_CHANGE_SECONDS = 2.0
TARGET_PATCHED_REBUILDS = 1

# kiln's wheelhouse report: the statuses a package can end in.
STATUSES = ("built", "cached", "failed", "blocked", "binary")


def canonical(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> list[tuple[str, str]]:
    """(name, version) of every ``name==version`` line of a requirements file.

    The benchmark's file is pins only; anything else is an error, so that every tool
    is certain to build the same versions."""
    pins = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)", line)
        if match is None:
            raise ValueError(f"line {number}: {raw.strip()!r} is not a name==version pin")
        pins.append((canonical(match.group(1)), match.group(2)))
    return pins


def sdist_name_version(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of an sdist file name, or None for other files."""
    match = re.fullmatch(r"(.+)-([0-9][^-]*)\.(tar\.gz|zip)", filename)
    if match is None:
        return None
    return canonical(match.group(1)), match.group(2)


def wheel_name_version(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of a wheel file name, or None for other files."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return None
    return canonical(parts[0]), parts[1]


# setuptools' legacy default, for an sdist without [build-system] (PEP 517).
LEGACY_BUILD_REQUIRES = ["setuptools>=40.8.0", "wheel"]


def build_requires_from_pyproject(text: str | None) -> list[str]:
    """``[build-system].requires`` of a pyproject.toml text (None: no such file)."""
    if text is None:
        return list(LEGACY_BUILD_REQUIRES)
    if sys.version_info >= (3, 11):
        import tomllib

        table = tomllib.loads(text).get("build-system", {})
        if "requires" not in table:
            return list(LEGACY_BUILD_REQUIRES)
        return [str(r) for r in table["requires"]]
    section = re.search(r"^\[build-system\](.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    requires = section and re.search(r"^requires\s*=\s*\[(.*?)\]", section.group(1), re.M | re.S)
    if not requires:
        return list(LEGACY_BUILD_REQUIRES)
    return re.findall(r"""["']([^"']+)["']""", requires.group(1))


def sdist_pyproject(sdist: Path) -> str | None:
    """The top-level pyproject.toml of an sdist, without unpacking it; None if absent."""
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            for name in archive.namelist():
                if name.count("/") == 1 and name.endswith("/pyproject.toml"):
                    return archive.read(name).decode("utf-8")
        return None
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if member.isfile() and name.count("/") == 1 and name.endswith("/pyproject.toml"):
                handle = archive.extractfile(member)
                return None if handle is None else handle.read().decode("utf-8")
    return None


def sdist_top_directory(sdist: Path) -> str:
    """The one directory an sdist unpacks into (``name-version``)."""
    with tarfile.open(sdist, "r:gz") as archive:
        first = archive.next()
        if first is None:
            raise ValueError(f"{sdist}: empty archive")
        return first.name.removeprefix("./").split("/", 1)[0]


def round_patch(round_number: int) -> str:
    """A patch that adds a file whose content names the round: applied to one package,
    it changes that package's wheel key, and nothing else's, on every round."""
    body = f"kiln tree benchmark, round {round_number}\n"
    return f"--- /dev/null\n+++ b/KILN_BENCH_ROUND.txt\n@@ -0,0 +1 @@\n+{body}"


def settings_toml(package: str, patch_file: str) -> str:
    """kiln's settings file applying one patch to one package."""
    return f'[packages.{package}]\npatches = ["{patch_file}"]\n'


# ---- commands ------------------------------------------------------------------------


@dataclass
class TreeSetup:
    """What every arm's command line is made of."""

    python: str
    kiln: list[str]
    uv: str
    fromager: list[str]
    requirements: Path
    names: list[str]  # canonical names of the pinned packages
    jobs: int = 2
    kiln_args: list[str] = field(default_factory=list)


def command(
    setup: TreeSetup, arm: str, out: Path, *, cache: Path, scratch: Path, settings: Path | None
) -> list[str]:
    """The command line of one run of ``arm`` writing to ``out``."""
    no_binary = ",".join(setup.names)
    if arm.startswith("kiln"):
        cmd = [
            *setup.kiln,
            "wheelhouse",
            "-r",
            str(setup.requirements),
            "-o",
            str(out),
            "--cache-dir",
            str(cache),
            "-j",
            str(setup.jobs),
            "--python",
            setup.python,
        ]
        if arm == KILN_SOURCE:
            cmd += ["--build-deps", "source"]
        if settings is not None:
            cmd += ["--settings", str(settings)]
        return cmd + setup.kiln_args
    if arm == PIP:
        return [
            *[setup.python, "-m", "pip", "wheel"],
            *["--no-binary", no_binary, "-r", str(setup.requirements), "-w", str(out)],
        ]
    if arm == UV:
        return [
            *[setup.uv, "pip", "install", "--python", setup.python, "--no-managed-python"],
            *["--no-binary", no_binary, "--target", str(out), "-r", str(setup.requirements)],
        ]
    if arm == FROMAGER:
        # fromager has no option to build only the named packages from source: it
        # builds every package, the build dependencies included, which is what
        # kiln's --build-deps source is compared with. The pins are its constraints
        # too, or it resolves a runtime dependency (jinja2's markupsafe) to the newest
        # version and builds it a second time.
        return [
            *setup.fromager,
            *["--constraints-file", str(setup.requirements)],
            *["--sdists-repo", str(scratch / "sdists-repo")],
            *["--wheels-repo", str(out)],
            *["--work-dir", str(scratch / "work-dir")],
            *["--settings-file", str(scratch / "settings.yaml")],
            *["--settings-dir", str(scratch / "settings")],
            *["--patches-dir", str(scratch / "patches")],
            *["--jobs", str(setup.jobs)],
            "--no-network-isolation",
            *["bootstrap", "-r", str(setup.requirements)],
        ]
    raise AssertionError(arm)


# ---- checking what a run produced ------------------------------------------------------


def report_statuses(report: Any) -> Counter[str]:
    """How many packages of kiln's wheelhouse report ended in each status.

    The report keeps packages as a list of objects with ``name`` and ``status``, or as
    an object keyed by name; either is read (the report's shape is young)."""
    packages: Iterable[Any]
    found = report.get("packages") if isinstance(report, Mapping) else None
    if isinstance(found, Mapping):
        packages = found.values()
    elif isinstance(found, list):
        packages = found
    else:
        raise ValueError("the report has no 'packages'")
    counts: Counter[str] = Counter()
    for package in packages:
        status = package.get("status") if isinstance(package, Mapping) else None
        if isinstance(status, Mapping):  # {"status": {"state": "built", ...}}
            status = status.get("state")
        counts[str(status)] += 1
    return counts


def missing_wheels(names: Iterable[str], wheel_files: Iterable[str]) -> list[str]:
    """The pinned names that no wheel in the output is for."""
    built = {found[0] for w in wheel_files if (found := wheel_name_version(w))}
    return sorted(set(names) - built)


def missing_installed(names: Iterable[str], dist_info_dirs: Iterable[str]) -> list[str]:
    """The pinned names that ``--target`` has no ``*.dist-info`` for."""
    installed = set()
    for entry in dist_info_dirs:
        if entry.endswith(".dist-info"):
            installed.add(canonical(entry[: -len(".dist-info")].rsplit("-", 1)[0]))
    return sorted(set(names) - installed)


# ---- results ------------------------------------------------------------------------


@dataclass
class TreeResults:
    samples: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, int]]] = field(default_factory=dict)  # kiln arms
    rounds_done: int = 0
    interrupted: bool = False


def arm_median(results: TreeResults, arm: str) -> float | None:
    if arm in results.failures:
        return None
    return median(results.samples.get(arm, []))


def patched_rebuilds(results: TreeResults) -> int | None:
    """The most packages a patched run built (the target is exactly one)."""
    runs = results.statuses.get(KILN_PATCHED, [])
    if not runs:
        return None
    return max(run.get("built", 0) for run in runs)


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f}"


def verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "FAIL")


def time_rows(results: TreeResults, arms: Sequence[str]) -> list[list[str]]:
    """One row per arm: median, fastest and slowest run, runs."""
    rows = []
    for arm in arms:
        samples = results.samples.get(arm, [])
        failed = arm in results.failures
        rows.append(
            [
                ARM_TITLES[arm],
                "failed" if failed else fmt(median(samples)),
                fmt(min(samples)) if samples else "—",
                fmt(max(samples)) if samples else "—",
                str(len(samples)),
            ]
        )
    return rows


def summary_rows(results: TreeResults) -> list[list[str]]:
    """The issue's numbers: (what, value, target, verdict)."""
    cold, uv, pip = (arm_median(results, a) for a in (KILN_COLD, UV, PIP))
    no_change = arm_median(results, KILN_NO_CHANGE)
    cold_uv, cold_pip = ratio(cold, uv), ratio(cold, pip)
    rebuilds = patched_rebuilds(results)
    source_vs_fromager = ratio(arm_median(results, KILN_SOURCE), arm_median(results, FROMAGER))

    def check(value: float | None, ok: bool) -> str:
        return verdict(None if value is None else ok)

    return [
        [
            "kiln cold / uv",
            fmt_ratio(cold_uv),
            f"≤ {TARGET_COLD_VS_UV}",
            check(cold_uv, cold_uv is not None and cold_uv <= TARGET_COLD_VS_UV),
        ],
        [
            "kiln cold / pip",
            fmt_ratio(cold_pip),
            f"≤ {TARGET_COLD_VS_PIP}",
            check(cold_pip, cold_pip is not None and cold_pip <= TARGET_COLD_VS_PIP),
        ],
        [
            "kiln warm / uv",
            fmt_ratio(ratio(arm_median(results, KILN_WARM), uv)),
            "",
            "",
        ],
        [
            "no-change run (s)",
            "—" if no_change is None else f"{no_change:.2f}",
            f"< {TARGET_NO_CHANGE_SECONDS:g}",
            check(no_change, no_change is not None and no_change < TARGET_NO_CHANGE_SECONDS),
        ],
        [
            "packages rebuilt after one patch changed",
            "—" if rebuilds is None else str(rebuilds),
            f"= {TARGET_PATCHED_REBUILDS}",
            check(None if rebuilds is None else 0.0, rebuilds == TARGET_PATCHED_REBUILDS),
        ],
        [
            "kiln --build-deps source / fromager",
            fmt_ratio(source_vs_fromager),
            "(reported)",
            "",
        ],
    ]


def render(header: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool) -> list[str]:
    return render_markdown(header, rows) if markdown else render_text(header, rows)


def report_text(results: TreeResults, arms: Sequence[str], *, markdown: bool) -> str:
    out = io.StringIO()
    out.write("Seconds per run (median, fastest, slowest):\n\n")
    header = ["arm", "median", "min", "max", "runs"]
    out.write("\n".join(render(header, time_rows(results, arms), markdown=markdown)) + "\n\n")
    out.write("The issue's targets:\n\n")
    header = ["what", "measured", "target", ""]
    out.write("\n".join(render(header, summary_rows(results), markdown=markdown)) + "\n")
    for arm, reason in sorted(results.failures.items()):
        out.write(f"\n{arm} failed: {reason}\n")
    return out.getvalue()
