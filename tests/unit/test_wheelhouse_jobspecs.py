"""kiln.wheelhouse.jobspecs: a planned node turned into the job that builds it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from kiln.locks import FileLock
from kiln.wheelhouse.jobspecs import job_spec
from kiln.wheelhouse.model import Node, Pin
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.settings import load_settings
from kiln.wheelhouse.tree import PlannedNode
from tests.helpers import target_interpreter


def test_two_runs_building_one_patched_source_do_not_unpack_over_each_other(
    tmp_path: Path,
) -> None:
    sdist = tmp_path / "a-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name, data in (
            ("PKG-INFO", b"Metadata-Version: 2.1\nName: a\nVersion: 1.0\n"),
            ("a.py", b"VALUE = 1\n"),
        ):
            member = tarfile.TarInfo(f"a-1.0/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    patch = tmp_path / "a.patch"
    patch.write_text("--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-VALUE = 1\n+VALUE = 2\n")
    interpreter = target_interpreter()
    node = Node(pin=Pin(name="a", version="1.0"), python=interpreter.key)
    settings = load_settings(None, environ={})
    planned = PlannedNode(
        node, interpreter, settings.settings_for("a", "1.0"), sdist=sdist, patches=(patch,)
    )
    planned.key = "b" * 64
    cache = tmp_path / "cache"
    request = WheelhouseRequest(requirements=("a",))

    def spec(run: str, held: list[FileLock]) -> Path:
        made = job_spec(
            planned,
            request=request,
            place=tmp_path / run,
            cache_root=cache,
            environ={},
            dep_wheels=(),
            empty_index=tmp_path / "empty",
            held=held,
        )
        return Path(made.source)

    first_held: list[FileLock] = []
    first = spec("run-1", first_held)
    # The first run's build is under way in its source tree.
    (first / "build").mkdir()
    second = spec("run-2", [])
    assert (first / "build").is_dir()
    assert second != first
    assert (second / "a.py").read_text() == "VALUE = 2\n"
    for lock in first_held:
        lock.release()
