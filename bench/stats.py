"""Medians, spreads and ratios of the samples, and the issue's targets checked on them.

(Not named ``statistics``: ``python bench/run.py`` puts bench/ first on ``sys.path``,
where that name would hide the standard library's module.)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cells import FLOOR, Cell, Results

# The targets.
TARGET_WARM_DEFAULT_VS_UV = 0.5
TARGET_WARM_DEFAULT_VS_FLOOR = 1.2
TARGET_WARM_WHEEL_VS_UV = 0.6
TARGET_COLD_VS_BUILD_UV = 1.0
TARGET_VERSION_SECONDS = 0.060
TARGET_FLOOR_PROJECTS = ("hatchling", "setuptools")


def median(samples: Sequence[float]) -> float | None:
    """The median, or None when there is nothing to take it of."""
    return statistics.median(samples) if samples else None


def cell_median(results: Results, cell: Cell) -> float | None:
    """The median of a cell's timed runs; None if it was not measured or failed."""
    if cell in results.failures:
        return None
    return median(results.samples.get(cell, []))


def spread(samples: Sequence[float]) -> tuple[float, float]:
    """The fastest and the slowest run."""
    return min(samples), max(samples)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    return None if a is None or b is None or b == 0 else a / b


def paired_ratio(samples: Sequence[float], kiln: Sequence[float]) -> float | None:
    """The median of the per-round ratios sample / kiln, which cancels drift between
    rounds (the tables use the ratio of medians). None unless the rounds pair up."""
    if not kiln or len(kiln) != len(samples):
        return None
    return statistics.median(s / k for s, k in zip(samples, kiln, strict=True))


@dataclass
class Target:
    ok: bool | None  # None: not measured
    text: str


def targets(results: Results, projects: Sequence[str], flows: Sequence[str]) -> list[Target]:
    found: list[Target] = []

    def check(what: str, kiln_cell: Cell, other_cell: Cell, limit: float, other_name: str) -> None:
        value = ratio(cell_median(results, kiln_cell), cell_median(results, other_cell))
        if value is None:
            found.append(Target(None, f"SKIP  {what}: not measured (kiln or {other_name} missing)"))
            return
        verdict = "PASS" if value <= limit else "FAIL"
        found.append(
            Target(
                value <= limit,
                f"{verdict}  {what}: kiln / {other_name} = {value:.2f} (target ≤ {limit:g})",
            )
        )

    for project in (p for p in TARGET_FLOOR_PROJECTS if p in projects):
        if "default" in flows:
            kiln = Cell("kiln", project, "default", "warm")
            check(
                f"warm default, {project}",
                kiln,
                Cell("uv-build", project, "default", ""),
                TARGET_WARM_DEFAULT_VS_UV,
                "uv build",
            )
            check(
                f"warm default, {project}",
                kiln,
                Cell(FLOOR, project, "default", ""),
                TARGET_WARM_DEFAULT_VS_FLOOR,
                "floor",
            )
    if "wheel" in flows:
        for project in projects:
            check(
                f"warm --wheel, {project}",
                Cell("kiln", project, "wheel", "warm"),
                Cell("uv-build", project, "wheel", ""),
                TARGET_WARM_WHEEL_VS_UV,
                "uv build",
            )
    for flow in flows:
        for project in projects:
            check(
                f"cold {flow}, {project}",
                Cell("kiln", project, flow, "cold"),
                Cell("build-uv", project, flow, ""),
                TARGET_COLD_VS_BUILD_UV,
                "build --installer uv",
            )
    if results.version_samples:
        median_ms = statistics.median(results.version_samples) * 1000
        limit_ms = TARGET_VERSION_SECONDS * 1000
        ok = median_ms < limit_ms
        verdict = "PASS" if ok else "FAIL"
        found.append(
            Target(
                ok, f"{verdict}  kiln --version: {median_ms:.1f} ms (target < {limit_ms:.0f} ms)"
            )
        )
    return found
