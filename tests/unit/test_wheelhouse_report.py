"""The run's report: every node with its inputs, key, outcome and timings, as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from kiln.wheelhouse.model import (
    FileRef,
    JobResult,
    Node,
    NodeKind,
    Outcome,
    Pin,
    Provenance,
    Status,
)
from kiln.wheelhouse.report import build_report, write_report

PY = "cp312-linux_x86_64-abc"


def node(name: str, **fields: object) -> Node:
    sdist = FileRef(f"file:///s/{name}-1.0.tar.gz", f"{name}-1.0.tar.gz", "a" * 64)
    return Node(Pin(name, "1.0", sdist=sdist), PY, **fields)  # type: ignore[arg-type]


def test_report_names_every_package_its_inputs_and_outcome(tmp_path: Path) -> None:
    flit = node("flit-core", kind=NodeKind.BUILD, provenance=Provenance.SEED)
    app = node("app", build_deps=(flit.id,), build_requires=("flit-core",))
    lib = node("lib")
    result = JobResult(
        app.id,
        ok=True,
        wheel="/out/app.whl",
        seconds=3.5,
        compiler_cache={"tool": "ccache", "hits": 4, "misses": 1},
        timings={"environment": 0.5, "build_wheel": 3.0},
    )
    outcomes = {
        app.id: Outcome(app.id, Status.BUILT, Path("/wh/app.whl"), "k" * 64, result),
        flit.id: Outcome(flit.id, Status.BINARY, Path("/wh/flit.whl")),
        lib.id: Outcome(lib.id, Status.BLOCKED, reason=flit.id),
    }
    path = tmp_path / "report.json"
    written = write_report(
        path,
        {"started": "2026-12-05T23:00:00Z", "jobs": 2},
        outcomes,
        [lib, app, flit],
        [(flit.id, [flit.id, app.id])],
        inputs={app.id: {"sdist_sha256": "a" * 64, "build_env": ["flit-core==3.9"]}},
    )
    report = json.loads(path.read_text())
    assert report == written
    assert report["format"] == 1 and report["run"]["jobs"] == 2
    assert report["cycles"] == [{"seed": flit.id, "cycle": [flit.id, app.id]}]
    assert report["summary"] == {
        "ok": False,
        "packages": 3,
        "status": {"binary": 1, "blocked": 1, "built": 1},
    }
    by_id = {package["id"]: package for package in report["packages"]}
    built = by_id[app.id]
    assert built["inputs"]["build_env"] == ["flit-core==3.9"]
    assert built["key"] == "k" * 64 and built["wheel"] == "/wh/app.whl"
    assert built["source"]["sha256"] == "a" * 64
    assert built["compiler_cache"]["hits"] == 4 and built["timings"]["build_wheel"] == 3.0
    assert built["build_deps"] == [flit.id]
    assert by_id[lib.id]["status"] == "blocked" and by_id[lib.id]["reason"] == flit.id
    assert by_id[flit.id]["provenance"] == "seed" and by_id[flit.id]["kind"] == "build"


def test_all_built_or_cached_is_ok_and_a_missing_outcome_is_pending() -> None:
    a, b = node("a"), node("b")
    done = {a.id: Outcome(a.id, Status.CACHED), b.id: Outcome(b.id, Status.SKIPPED)}
    assert build_report({}, done, [a, b])["summary"]["ok"] is True
    partial = build_report({}, {a.id: done[a.id]}, [a, b])
    assert partial["summary"]["ok"] is False
    assert [p["status"] for p in partial["packages"]] == ["cached", "pending"]
