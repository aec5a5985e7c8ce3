"""The report a wheelhouse run writes (kiln.wheelhouse.run._write_report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiln.wheelhouse.graph import Graph
from kiln.wheelhouse.model import FileRef, JobResult, Node, Outcome, Pin, Provenance, Status
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.run import WheelhouseResult, _write_report
from kiln.wheelhouse.settings import load_settings
from kiln.wheelhouse.tree import PlannedNode, TreePlan
from tests.helpers import target_interpreter

KEY = "a" * 64


def write(
    tmp_path: Path,
    outcome: Outcome | None,
    *,
    provenance: Provenance = Provenance.SOURCE,
    wheel: FileRef | None = None,
) -> dict[str, Any]:
    """The report of a run of one package, ``a``, that ended with ``outcome``."""
    interpreter = target_interpreter()
    settings = load_settings(None, environ={})
    sdist = FileRef("https://e/a-1.0.tar.gz", "a-1.0.tar.gz", "c" * 64)
    pin = Pin(name="a", version="1.0", sdist=sdist)
    node = Node(pin=pin, python=interpreter.key, provenance=provenance)
    graph = Graph()
    graph.add(node)
    planned = PlannedNode(node, interpreter, settings.settings_for("a", "1.0"), wheel=wheel)
    planned.key = None if wheel else KEY
    plan = TreePlan(graph, {node.id: planned})
    outcomes = {node.id: outcome} if outcome else {}
    result = WheelhouseResult(outdir=tmp_path, outcomes=outcomes, seconds=2.5)
    path = tmp_path / "report.json"
    _write_report(path, WheelhouseRequest(requirements=("a",)), plan, result)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_failed_package_reports_the_key_it_would_have_had(tmp_path: Path) -> None:
    failed = Outcome("a==1.0", Status.FAILED, result=JobResult("a==1.0", False, error="boom"))
    (package,) = write(tmp_path, failed)["packages"]
    assert package["key"] == KEY


def test_the_run_says_when_it_started_and_finished(tmp_path: Path) -> None:
    from datetime import datetime

    run = write(tmp_path, None)["run"]
    started = datetime.fromisoformat(run["started"])
    finished = datetime.fromisoformat(run["finished"])
    assert started.tzinfo is not None
    assert (finished - started).total_seconds() == run["seconds"] == 2.5


def test_a_package_taken_as_a_wheel_reports_that_wheel_and_its_hash(tmp_path: Path) -> None:
    from kiln.digests import file_sha256

    wheel = tmp_path / "a-1.0-py3-none-any.whl"
    wheel.write_bytes(b"a wheel")
    taken = FileRef(wheel.as_uri(), wheel.name)  # find-links: no hash given
    outcome = Outcome("a==1.0", Status.BINARY, wheel=wheel)
    (package,) = write(tmp_path, outcome, provenance=Provenance.BINARY, wheel=taken)["packages"]
    assert package["inputs"]["wheel"] == {
        "url": wheel.as_uri(),
        "filename": wheel.name,
        "sha256": file_sha256(wheel),
    }
