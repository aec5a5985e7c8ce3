"""The wheelhouse run's report: ``report.json`` beside the wheels.

One JSON object (shape versioned by ``format``): the run, a summary, the
cycles broken and their seeds, and per package its inputs and their hashes,
its wheel key, the environment that built it, its time and compiler-cache hits,
and its outcome. Described field by field in docs/wheelhouse.md ("Report").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kiln.jsonfiles import write_json
from kiln.wheelhouse.model import Node, Outcome, Status

REPORT_FORMAT = 1
REPORT_NAME = "report.json"
# What a finished run counts as success: everything in the wheelhouse or meant to be out.
_OK = frozenset({Status.BUILT, Status.CACHED, Status.BINARY, Status.SKIPPED})


def write_report(
    path: Path,
    run: Mapping[str, Any],
    outcomes: Mapping[str, Outcome],
    nodes: Iterable[Node],
    cycles: Sequence[tuple[str, Sequence[str]]] = (),
    *,
    inputs: Mapping[str, Mapping[str, Any]] | None = None,
    timeline: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the report to ``path`` (atomically) and return it.

    ``run``: plain data about the run (the request, interpreters, jobs, times:
    ``started``/``finished`` as ISO 8601 and ``seconds``, the lead's choice).
    ``outcomes`` by node id; a node without one is reported ``"pending"``.
    ``cycles``: (seed id, the cycle's ids), as the graph broke them.
    ``inputs`` by node id: the wheel key's inputs (kiln.wheelhouse.keys.key_inputs)
    and whatever else fed the build (settings files, patch paths, sdist file).
    ``timeline`` by node id: ``start``, ``end`` (seconds since the run began) and
    ``lane`` of each job that started (:class:`kiln.wheelhouse.timeline.Timeline`).
    Raises OSError.
    """
    report = build_report(run, outcomes, nodes, cycles, inputs=inputs, timeline=timeline)
    write_json(path, report, indent=2)
    return report


def build_report(
    run: Mapping[str, Any],
    outcomes: Mapping[str, Outcome],
    nodes: Iterable[Node],
    cycles: Sequence[tuple[str, Sequence[str]]] = (),
    *,
    inputs: Mapping[str, Mapping[str, Any]] | None = None,
    timeline: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report as plain data (what :func:`write_report` writes)."""
    from kiln.wheelhouse.timeline import critical_path

    inputs = inputs or {}
    timeline = timeline or {}
    packages = [
        _package(node, outcomes.get(node.id), inputs.get(node.id, {}), timeline.get(node.id, {}))
        for node in sorted(nodes, key=lambda node: node.id)
    ]
    counts: dict[str, int] = {}
    for package in packages:
        counts[package["status"]] = counts.get(package["status"], 0) + 1
    ok = all(outcomes.get(package["id"]) is not None for package in packages) and all(
        Status(package["status"]) in _OK for package in packages if package["status"] != "pending"
    )
    return {
        "format": REPORT_FORMAT,
        "run": dict(run),
        "summary": {"ok": ok, "packages": len(packages), "status": dict(sorted(counts.items()))},
        "cycles": [{"seed": seed, "cycle": list(cycle)} for seed, cycle in cycles],
        # The builds that decided when the run ended, first to last.
        "critical_path": critical_path(packages),
        "packages": packages,
    }


def _package(
    node: Node, outcome: Outcome | None, inputs: Mapping[str, Any], span: Mapping[str, Any]
) -> dict[str, Any]:
    pin = node.pin
    entry: dict[str, Any] = {
        "id": node.id,
        "name": pin.name,
        "version": pin.version,
        "python": node.python,
        "kind": node.kind.value,
        "provenance": node.provenance.value,
        "source": _source(node),
        "build_requires": list(node.build_requires),
        "build_deps": list(node.build_deps),
        "runtime_deps": list(node.runtime_deps),
        "inputs": dict(inputs),
        "status": outcome.status.value if outcome else "pending",
        "reason": outcome.reason if outcome else None,
        "key": outcome.key if outcome else None,
        "wheel": str(outcome.wheel) if outcome and outcome.wheel else None,
        "wheel_size": _size(outcome.wheel) if outcome and outcome.wheel else None,
        # When its job ran, in seconds since the run began, and on which lane.
        "start": span.get("start"),
        "end": span.get("end"),
        "lane": span.get("lane"),
    }
    result = outcome.result if outcome else None
    entry.update(
        {
            "seconds": result.seconds if result else None,
            # Seconds per distribution built ("wheel"), in setting up the build
            # environment ("environment") and in each hook (by hook name).
            "timings": dict(result.timings) if result else {},
            "compiler_cache": result.compiler_cache if result else None,
            "worker": result.worker if result else None,
            "exit_code": result.exit_code if result else None,
            "error": result.error if result else None,
            "log": result.log_path if result else None,
            "kept": result.kept if result else None,
        }
    )
    return entry


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _source(node: Node) -> dict[str, Any] | None:
    pin = node.pin
    if pin.project_dir is not None:
        return {"project_dir": str(pin.project_dir)}
    if pin.sdist is not None:
        return {"url": pin.sdist.url, "filename": pin.sdist.filename, "sha256": pin.sdist.sha256}
    return None
