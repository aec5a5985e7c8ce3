"""The --timings pages in a real browser: headless Chromium (Debian's package) opens
the file a real run wrote, offline, and the tests read the DOM it built; a
screenshot of each page is kept in the test's temporary directory (CI keeps it as
an artifact)."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ProjectFactory
from tests.helpers import run_kiln
from tests.integration.test_wheelhouse import tree_index, wheelhouse_args

__all__ = ["tree_index"]  # the session fixture, shared with the wheelhouse tests

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs chromium (apt-get install chromium): the page is checked in it"
)


def chromium(page: Path, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    """Chromium, headless and shut off from the network and its own updates."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            *action,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    )


class Dom(html.parser.HTMLParser):
    """The bars of the DOM Chromium built, and the critical path it states."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.lanes: list[str] = []
        self.scripts = 0
        self._in_critical = False
        self.critical_text = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        classes = attributes.get("class", "").split()
        if tag == "script":
            self.scripts += 1
        if "bar" in classes:
            self.bars.append(attributes)
        if "lane" in classes:
            self.lanes.append(attributes.get("data-lane", ""))
        self._in_critical = "critical-path" in classes

    def handle_data(self, data: str) -> None:
        if self._in_critical:
            self.critical_text += data

    def handle_endtag(self, tag: str) -> None:
        self._in_critical = False


def seen(page: Path, tmp_path: Path) -> Dom:
    """The page as Chromium rendered it; its screenshot is kept beside it."""
    dom = chromium(page, tmp_path / "chromium-profile", "--dump-dom").stdout
    screenshot = page.with_suffix(".png")
    chromium(page, tmp_path / "chromium-profile", f"--screenshot={screenshot}")
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 5000
    return Dom(dom)


def test_the_wheelhouse_timings_page_has_a_bar_per_package_and_marks_the_critical_path(
    tmp_path: Path, tree_index: Path, wheelhouse: Path
) -> None:
    out = tmp_path / "wh"
    args: list[str | Path] = ["kt-plugin", "tomli", "kt-broken", "-o", out]
    args += ["--build-deps", "source", "--timings"]
    done = run_kiln(*wheelhouse_args(tree_index, wheelhouse, *args))
    assert done.returncode == 1, done.stderr  # kt-broken fails, by design
    page = out / "timings.html"
    assert f"timings: {page}" in done.stderr
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    packages = {p["id"]: p for p in report["packages"]}
    # The report carries the data the page draws: spans, lanes, the critical path.
    for package in packages.values():
        assert package["start"] is not None and package["end"] >= package["start"]
        assert package["lane"] in (0, 1)
        # A failed build's too: the time it spent before it failed.
        assert package["timings"]["environment"] > 0 and package["timings"]["build_wheel"] > 0
    critical = report["critical_path"]
    names = [packages[node]["name"] for node in critical]
    assert names[-2:] == ["kt-base", "kt-plugin"] or names[-2:] == ["flit-core", "tomli"]

    dom = seen(page, tmp_path)
    assert dom.scripts == 0
    bars = {bar["data-package"]: bar for bar in dom.bars}
    assert sorted(bars) == sorted(packages) and len(dom.bars) == len(packages)
    for node, bar in bars.items():
        classes = bar["class"].split()
        assert packages[node]["status"] in classes
        assert ("critical" in classes) == (node in critical), node
        assert node in bar["title"]  # what hovering shows
    assert set(dom.lanes) <= {"lane 0", "lane 1"}
    assert dom.critical_text.count("→") == len(critical) - 1
    assert all(node.split("@")[0] in dom.critical_text for node in critical)


def test_a_single_builds_timings_page_shows_its_environment_and_hooks(
    project: ProjectFactory, tmp_path: Path
) -> None:
    source = project("flit_project")
    page = tmp_path / "timings" / "build.html"
    done = run_kiln(source, "-w", "-o", tmp_path / "out", f"--timings={page}")
    assert done.returncode == 0, done.stderr
    assert f"timings: {page}" in done.stderr
    dom = seen(page, tmp_path)
    titles = sorted(bar["title"].split(":")[0] for bar in dom.bars)
    assert titles == sorted(["environment", "get_requires_for_build_wheel", "build_wheel"])
