"""The test layers themselves: the directory decides the integration mark, and
@pytest.mark.needs skips a test whose tool is missing, saying how to install it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import INTEGRATION, UNIT, missing


def test_the_directory_decides_the_integration_mark(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    assert any(item.path.is_relative_to(UNIT) for item in items)
    for item in items:
        marked = item.get_closest_marker("integration") is not None
        if item.path.is_relative_to(INTEGRATION):
            assert marked, item.nodeid
        elif item.path.is_relative_to(UNIT):
            assert not marked, item.nodeid


@pytest.mark.parametrize(
    ("tool", "reason"),
    [
        ("ccache", "needs ccache (apt-get install ccache)"),
        ("redis-server", "needs redis-server (apt-get install redis-server)"),
        ("make", "needs make (apt-get install make)"),
    ],
)
def test_a_missing_tool_is_named_with_how_to_install_it(
    tool: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    assert missing.__wrapped__(tool) == reason


def test_a_tool_on_path_is_not_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "make"
    script.write_text("#!/bin/sh\necho 'GNU Make 4.3'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    assert missing.__wrapped__("make") is None
