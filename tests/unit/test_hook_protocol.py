"""The hook protocol's scripts, read without running a build."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln.hooks.caller import KilnHookCaller


class _Recorder:
    """A runner that records what it was given and writes the result the script would."""

    def __init__(self) -> None:
        self.environ: dict[str, str] = {}

    def __call__(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        self.environ = dict(extra_environ or {})
        (Path(cmd[-1]) / "output.json").write_text(json.dumps({"return_val": []}))


def test_the_backend_path_reaches_every_supported_in_process_script(tmp_path: Path) -> None:
    # pyproject-hooks 1.1 and 1.2 read the os.pathsep-joined variable, 1.3 the JSON one
    # (the lowest-versions pass of .ci/run builds in-tree backends with 1.1).
    recorder = _Recorder()
    caller = KilnHookCaller(
        str(tmp_path),
        "kiln_intree:backend",
        ["_backend", "more"],
        runner=recorder,
        python_executable=sys.executable,
        handoff_root=tmp_path,
        environ={},
    )
    assert caller.get_requires_for_build_wheel({}) == []
    paths = [str(tmp_path / "_backend"), str(tmp_path / "more")]
    assert recorder.environ["_PYPROJECT_HOOKS_BUILD_BACKEND"] == "kiln_intree:backend"
    assert recorder.environ["_PYPROJECT_HOOKS_BACKEND_PATH"].split(os.pathsep) == paths
    assert json.loads(recorder.environ["_PYPROJECT_HOOKS_BACKEND_PATH_JSON"]) == paths
