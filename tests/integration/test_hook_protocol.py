"""kiln and pyproject-hooks' in-process script: every supported version, and hooks
that end without a result."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import run_kiln


@pytest.mark.integration
@pytest.mark.parametrize(("flag", "hook"), [("-s", "build_sdist"), ("-w", "build_wheel")])
def test_a_hook_that_exits_0_without_a_result_is_a_backend_error(
    project: ProjectFactory, tmp_path: Path, flag: str, hook: str
) -> None:
    # The backend calls os._exit(0) inside the hook: the process succeeds, no result.
    completed = run_kiln(project("hook_exits_early"), flag, "-o", tmp_path / "dist")
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    line = next(x for x in completed.stderr.splitlines() if x.startswith("kiln: error:"))
    assert line.startswith(f"kiln: error: the build backend's {hook} hook exited with status 0")
    assert "wrote no result" in line
    assert "full log:" in completed.stderr
    assert not list((tmp_path / "dist").glob("*"))
