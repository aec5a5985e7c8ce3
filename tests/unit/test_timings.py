"""The timings data (kiln.wheelhouse.timeline, the report's new fields) and the
--timings pages rendered from it (kiln.timings); a real browser's view of them is
tests/integration/test_timings_browser.py."""

from __future__ import annotations

import html.parser
import json
from pathlib import Path
from typing import Any

from kiln.timings import build_html, wheelhouse_html
from kiln.wheelhouse.model import FileRef, JobResult, Node, Outcome, Pin, Status
from kiln.wheelhouse.report import build_report
from kiln.wheelhouse.scheduler import Event
from kiln.wheelhouse.timeline import Timeline, critical_path

PY = "cp312-linux_x86_64-abc"


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def started(node: str) -> Event:
    return Event("started", node)


def finished(node: str) -> Event:
    return Event("finished", node, Outcome(node, Status.BUILT))


def test_the_timeline_puts_each_job_on_the_lowest_free_lane() -> None:
    clock = Clock()
    timeline = Timeline(clock.now, clock)
    for at, event in [
        (1, started("a")),
        (1, started("b")),
        (4, finished("a")),
        (4, started("c")),  # a's lane is free again
        (6, finished("b")),
        (9, finished("c")),
        (9, Event("finished", "blocked", Outcome("blocked", Status.BLOCKED))),
    ]:
        clock.now = 500.0 + at
        timeline(event)
    assert timeline.to_json() == {
        "a": {"start": 1.0, "end": 4.0, "lane": 0},
        "b": {"start": 1.0, "end": 6.0, "lane": 1},
        "c": {"start": 4.0, "end": 9.0, "lane": 0},
    }


def package(node: str, start: float, end: float, *deps: str) -> dict[str, Any]:
    return {"id": node, "build_deps": list(deps), "start": start, "end": end}


def test_the_critical_path_follows_the_dependency_each_build_waited_for_last() -> None:
    packages = [
        package("flit", 0, 2),
        package("base", 2, 5, "flit"),
        package("other", 0, 6),  # long, but nothing waits for it
        package("plugin", 5.5, 9, "base", "flit"),
        package("tool", 9, 10, "plugin"),
        {"id": "never-ran", "build_deps": ["tool"], "start": None, "end": None},
    ]
    assert critical_path(packages) == ["flit", "base", "plugin", "tool"]
    assert critical_path([package("a", 0, 3), package("b", 0, 7)]) == ["b"]
    assert critical_path([]) == []


def node(name: str, *deps: str) -> Node:
    sdist = FileRef(f"file:///s/{name}-1.0.tar.gz", f"{name}-1.0.tar.gz", "a" * 64)
    return Node(Pin(name, "1.0", sdist=sdist), PY, build_deps=deps)


def wheelhouse_report(tmp_path: Path) -> dict[str, Any]:
    base, plugin, six, broken = node("base"), node("plugin"), node("six"), node("broken")
    plugin.build_deps = (base.id,)
    wheel = tmp_path / "plugin-1.0-py3-none-any.whl"
    wheel.write_bytes(b"x" * 2048)
    timings = {
        "wheel": 2.0,
        "environment": 0.5,
        "get_requires_for_build_wheel": 0.2,
        "build_wheel": 1.3,
    }
    result = JobResult(
        plugin.id,
        ok=True,
        seconds=3.0,
        timings=timings,
        compiler_cache={"tool": "ccache", "hits": 7, "misses": 2},
    )
    outcomes = {
        base.id: Outcome(base.id, Status.BUILT, result=JobResult(base.id, ok=True, seconds=2.0)),
        plugin.id: Outcome(plugin.id, Status.BUILT, wheel=wheel, result=result),
        six.id: Outcome(six.id, Status.CACHED),
        broken.id: Outcome(broken.id, Status.FAILED, result=JobResult(broken.id, ok=False)),
    }
    timeline = {
        base.id: {"start": 0.5, "end": 2.5, "lane": 0},
        plugin.id: {"start": 2.6, "end": 5.6, "lane": 0},
        broken.id: {"start": 0.5, "end": 1.0, "lane": 1},
    }
    run = {"jobs": 2, "seconds": 6.0, "outdir": "/wh", "kiln_version": "0"}
    return build_report(run, outcomes, [base, plugin, six, broken], timeline=timeline)


def test_the_report_has_each_jobs_span_lane_wheel_size_and_the_critical_path(
    tmp_path: Path,
) -> None:
    report = wheelhouse_report(tmp_path)
    by_name = {p["name"]: p for p in report["packages"]}
    assert (by_name["plugin"]["start"], by_name["plugin"]["end"], by_name["plugin"]["lane"]) == (
        2.6,
        5.6,
        0,
    )
    assert by_name["plugin"]["wheel_size"] == 2048
    assert by_name["plugin"]["timings"]["environment"] == 0.5
    assert by_name["six"]["start"] is None and by_name["six"]["lane"] is None
    assert report["critical_path"] == [by_name["base"]["id"], by_name["plugin"]["id"]]
    json.dumps(report)  # plain data


class Page(html.parser.HTMLParser):
    """The elements of a page by class, and whether it loads anything."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.classes: list[tuple[str, dict[str, str | None]]] = []
        self.loads: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name):
                self.loads.append(str(attributes[name]))
        if tag in ("script", "link", "img", "iframe"):
            self.loads.append(tag)
        self.classes.append((attributes.get("class") or "", attributes))

    def bars(self) -> list[dict[str, str | None]]:
        return [a for cls, a in self.classes if "bar" in cls.split()]


def test_the_wheelhouse_page_has_a_bar_per_package_that_ran_or_came_ready_made(
    tmp_path: Path,
) -> None:
    report = wheelhouse_report(tmp_path)
    page = Page(wheelhouse_html(report))
    assert page.loads == []  # self-contained: nothing to fetch, no script
    bars = {a["data-package"]: a for a in page.bars()}
    ids = {p["name"]: p["id"] for p in report["packages"]}
    assert set(bars) == set(ids.values())
    assert "built" in (bars[ids["plugin"]]["class"] or "").split()
    assert "failed" in (bars[ids["broken"]]["class"] or "").split()
    assert "cached" in (bars[ids["six"]]["class"] or "").split()
    critical = {n for n, a in bars.items() if "critical" in (a["class"] or "").split()}
    assert critical == {ids["base"], ids["plugin"]}
    title = bars[ids["plugin"]]["title"] or ""
    assert ids["plugin"] in title and "3.0 s" in title and "build_wheel 1.3 s" in title
    text = wheelhouse_html(report)
    assert "7 / 2" in text and "2.0 KiB" in text  # compiler-cache hits / misses, wheel size
    assert "<th>get_requires_for_build_wheel</th>" in text


def test_the_build_page_shows_each_step_of_a_single_build() -> None:
    report = {
        "source": "/src/app",
        "seconds": 4.0,
        "kiln_version": "0",
        "timings": {"environment": 1.0, "build_sdist": 0.5, "build_wheel": 2.0},
        "steps": [{"distribution": "wheel", "seconds": 2.4}],
        "artifacts": [{"name": "app-1.0-py3-none-any.whl", "size": 1500}],
        "compiler_cache": {"hits": 3, "misses": 0},
    }
    text = build_html(report)
    page = Page(text)
    assert page.loads == []
    assert len(page.bars()) == 3
    assert "build_wheel: 2.0 s" in text and "3 / 0" in text and "1.5 KiB" in text
