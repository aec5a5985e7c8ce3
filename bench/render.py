"""The results as text: the plain-text or Markdown report (docs/benchmarks.md) and JSON."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from cells import FLOOR, FLOW_TITLES, TEMPERATURES, TOOL_TITLES, Cell, Results
from stats import Target, cell_median, median, paired_ratio, ratio, spread


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.3f}"


def fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def column_cell(tool: str, project: str, flow: str, temperature: str) -> Cell:
    return Cell(tool, project, flow, temperature if tool == "kiln" else "")


def tables(
    results: Results,
    projects: Sequence[str],
    flows: Sequence[str],
    temperatures: Sequence[str],
    tools: Sequence[str],
    with_floor: bool,
) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table: medians, then ratios, per flow and temperature."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    for temperature in temperatures:
        for flow in flows:
            columns = list(tools) + ([FLOOR] if with_floor and temperature == "warm" else [])
            kiln_note = (
                "kiln's cache kept"
                if temperature == "warm"
                else "kiln's cache emptied before each run"
            )
            others = (
                " (same runs as warm: they keep no environments)" if temperature == "cold" else ""
            )
            title = (
                f"{temperature.upper()}, {FLOW_TITLES[flow]}: median seconds of "
                f"{results.rounds_done} round(s); {kiln_note}{others}"
            )
            rows = []
            ratio_rows = []
            for project in projects:
                medians = {
                    t: cell_median(results, column_cell(t, project, flow, temperature))
                    for t in columns
                }
                rows.append([project, *(fmt(medians[t]) for t in columns)])
                kiln = medians.get("kiln")
                ratio_rows.append(
                    [project, *(fmt_ratio(ratio(medians[t], kiln)) for t in columns if t != "kiln")]
                )
            out.append((title, ["project", *(TOOL_TITLES[t] for t in columns)], rows))
            if "kiln" in columns and len(columns) > 1:
                header = ["project", *(f"{TOOL_TITLES[t]} / kiln" for t in columns if t != "kiln")]
                out.append(
                    (
                        f"{temperature.upper()}, {flow}: tool / kiln (above 1: kiln is faster)",
                        header,
                        ratio_rows,
                    )
                )
    return out


def render_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_lines(results: Results, meta: Mapping[str, Any]) -> list[str]:
    """Machine, versions, date and method: the same facts in both output formats."""
    machine: Mapping[str, str] = meta["machine"]
    vers: Mapping[str, str] = meta["versions"]
    if results.version_samples:
        version_line = (
            f"kiln --version: {fmt(median(results.version_samples))} s, median of "
            f"{len(results.version_samples)} (python -c pass: "
            f"{fmt(median(results.python_startup_samples))} s)"
        )
    else:
        version_line = "kiln --version: not measured"
    return [
        f"Date: {meta['date']}",
        f"Machine: {machine['nproc']} CPUs (nproc), {machine['cpu']}, {machine['memory']} RAM, "
        f"{machine['os']}; load average at start {machine['load']}, "
        f"at end {machine.get('load_at_end', '?')}",
        f"Python {vers['python']}; kiln {vers['kiln']}, installer {results.kiln_installer}; "
        f"uv {vers['uv']}; build {vers['build']}; pip {vers['pip']}",
        f"Backends: {', '.join(meta['backends'].values())}",
        f"Method: {results.rounds_done} round(s) after one discarded warm-up round, order "
        f"shuffled each round (seed {meta['seed']}); {meta['duration_seconds'] / 60:.1f} min; "
        f"`{meta['command']}`",
        version_line,
    ]


def report(
    results: Results,
    meta: Mapping[str, Any],
    table_list: Sequence[tuple[str, list[str], list[list[str]]]],
    target_list: Sequence[Target],
    *,
    markdown: bool,
) -> str:
    summary = summary_lines(results, meta)
    failures = [f"{cell.label}: {why}" for cell, why in sorted(results.failures.items())]
    if markdown:
        lines = [f"### kiln benchmark, {meta['date'][:10]}", ""]
        lines += [f"- {line}" for line in summary] + [""]
        for title, header, rows in table_list:
            lines += [f"**{title}**", "", *render_markdown(header, rows), ""]
        lines += ["**Targets**", "", *(f"- {t.text}" for t in target_list)]
        if failures:
            lines += ["", "**Failed cells** (left out)", "", *(f"- {f}" for f in failures)]
    else:
        lines = ["kiln benchmark", *summary, ""]
        for title, header, rows in table_list:
            lines += [title, *render_text(header, rows), ""]
        lines += ["Targets:", *(f"  {t.text}" for t in target_list)]
        if failures:
            lines += ["", "Failed cells (left out):", *(f"  {f}" for f in failures)]
    if meta.get("kiln_source_changed"):
        lines += ["", "WARNING: kiln's source files changed during the run: results mix versions."]
    if results.interrupted:
        lines += ["", "(interrupted: partial results)"]
    return "\n".join(lines) + "\n"


def artifact_mismatches(results: Results) -> list[str]:
    """Projects and flows whose tools produced differently named artifacts."""
    by_key: dict[tuple[str, str], dict[str, list[str]]] = {}
    for cell, names in results.artifacts.items():
        by_key.setdefault((cell.project, cell.flow), {})[cell.slug] = names
    problems = []
    for (project, flow), seen in sorted(by_key.items()):
        if len({tuple(n) for n in seen.values()}) > 1:
            problems.append(f"{project} {flow}: " + "; ".join(f"{k}: {v}" for k, v in seen.items()))
    return problems


def to_json(
    results: Results, meta: Mapping[str, Any], target_list: Sequence[Target]
) -> dict[str, Any]:
    cells = []
    for cell, samples in sorted(results.samples.items()):
        fastest, slowest = spread(samples)
        entry: dict[str, Any] = {
            "tool": cell.tool,
            "project": cell.project,
            "flow": cell.flow,
            "temperature": cell.temperature or None,
            "samples": [round(s, 4) for s in samples],
            "median": round(statistics.median(samples), 4),
            "min": round(fastest, 4),
            "max": round(slowest, 4),
        }
        if cell.tool != "kiln":
            # Paired with the same round's kiln run: the median of the per-round ratios,
            # which cancels drift between rounds (the tables use the ratio of medians).
            paired = {}
            for temperature in TEMPERATURES:
                kiln = results.samples.get(Cell("kiln", cell.project, cell.flow, temperature), [])
                value = paired_ratio(samples, kiln)
                if value is not None:
                    paired[temperature] = round(value, 3)
            entry["paired_ratio_to_kiln"] = paired
        cells.append(entry)
    return {
        **meta,
        "kiln_installer": results.kiln_installer,
        "rounds": results.rounds_done,
        "interrupted": results.interrupted,
        "cells": cells,
        "failures": {cell.slug: why for cell, why in results.failures.items()},
        "kiln_version_seconds": [round(s, 4) for s in results.version_samples],
        "python_startup_seconds": [round(s, 4) for s in results.python_startup_samples],
        "targets": [{"ok": t.ok, "text": t.text} for t in target_list],
        "stray_processes": results.stray_processes,
        "tmp_leftovers": {tool: sorted(names) for tool, names in results.tmp_leftovers.items()},
    }
