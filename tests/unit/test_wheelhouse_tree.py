"""kiln.wheelhouse.tree: the decisions made before anything is built."""

from __future__ import annotations

from pathlib import Path

from packaging import tags

from kiln.wheelhouse.model import FileRef, Node, NodeKind, Pin, Provenance
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.settings import load_settings
from kiln.wheelhouse.tree import PlannedNode, TreePlanner
from tests.helpers import target_interpreter

SETTINGS = load_settings(None, environ={})


def planner(tmp_path: Path, name: str) -> TreePlanner:
    return TreePlanner(
        WheelhouseRequest(requirements=(name,)),
        cache_root=tmp_path / "cache",
        scratch=tmp_path,
        settings=SETTINGS,
        environ={},
    )


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
    interpreter = target_interpreter()
    pin = Pin(name="cython", version="3.3.1", wheels=wheels)
    node = Node(pin=pin, python=interpreter.key, provenance=Provenance.BINARY)
    planned = PlannedNode(node, interpreter, SETTINGS.settings_for("cython", "3.3.1"))
    chosen = planner(tmp_path, "cython")._binary_wheel(planned, ())
    assert chosen.filename == f"cython-3.3.1-cp312-cp312-{platform}.whl"


def test_a_pin_whose_sdist_is_another_version_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    import pytest

    from kiln.errors import UsageError

    sdist = tmp_path / "six-1.17.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        data = b'[build-system]\nrequires = ["setuptools"]\n'
        member = tarfile.TarInfo("six-1.17.0/pyproject.toml")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    # A lock file that says 9.9 for an sdist of 1.17.0: the wheel would not be the pin.
    pin = Pin(name="six", version="9.9", sdist=FileRef(sdist.as_uri(), sdist.name))
    message = r"six 9\.9: its sdist six-1\.17\.0\.tar\.gz is 1\.17\.0 of six"
    with pytest.raises(UsageError, match=message):
        planner(tmp_path, "six")._add(pin, target_interpreter(), NodeKind.RUNTIME)
