"""kiln.wheelhouse.tree: the decisions made before anything is built."""

from __future__ import annotations

from pathlib import Path

from packaging import tags

from kiln.interpreters import Interpreter
from kiln.wheelhouse.model import FileRef, Node, Pin, Provenance
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.settings import load_settings
from kiln.wheelhouse.tree import PlannedNode, TreePlanner


def test_a_binary_package_takes_the_wheel_its_interpreter_can_install(tmp_path: Path) -> None:
    # A lock file made for several interpreters lists every one's wheel; the first
    # listed is not necessarily the target's.
    platform = next(iter(tags.platform_tags()))  # this machine's, as the target's
    wheels = tuple(
        FileRef(url=f"file:///w/{name}", filename=name)
        for name in (
            f"cython-3.3.1-cp310-cp310-{platform}.whl",
            f"cython-3.3.1-cp312-cp312-{platform}.whl",
            "cython-3.3.1-cp312-cp312-win_amd64.whl",
        )
    )
    settings = load_settings(None, environ={})
    planner = TreePlanner(
        WheelhouseRequest(requirements=("cython",)),
        cache_root=tmp_path,
        scratch=tmp_path,
        settings=settings,
        environ={},
    )
    interpreter = Interpreter(
        path=Path("/usr/bin/python3.12"),
        version=(3, 12, 4),
        implementation="cpython",
        platform="linux-x86_64",
        tag="cp312",
    )
    pin = Pin(name="cython", version="3.3.1", wheels=wheels)
    node = Node(pin=pin, python=interpreter.key, provenance=Provenance.BINARY)
    planned = PlannedNode(node, interpreter, settings.settings_for("cython", "3.3.1"))
    chosen = planner._binary_wheel(planned, ())
    assert chosen.filename == f"cython-3.3.1-cp312-cp312-{platform}.whl"
