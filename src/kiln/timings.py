"""The ``--timings`` report: one self-contained HTML file rendered from a JSON report.

:func:`wheelhouse_html` draws a wheelhouse report (:mod:`kiln.wheelhouse.report`):
a timeline with one bar per package on its lane (its ``-j`` slot, or its worker
when the run was distributed), coloured by outcome, packages taken from the
cache on a lane of their own, the critical path outlined, a title on each bar to
hover; then a table of where each package's time went. :func:`build_html` draws
a single build's ``--report`` data (:meth:`kiln.result.BuildResult.report`).

The page has no script and loads nothing: inline CSS and plain elements, so it
opens offline and reads the same in any browser. Every element a reader (or a
test) looks for has a class: ``bar`` (with the status, ``critical`` on the
critical path), ``lane``, ``critical-path``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kiln.wheelhouse.model import node_label

# Statuses that built nothing: their packages sit on the cache lane, not in time.
_NOT_BUILT = ("cached", "binary", "skipped")
CACHE_LANE = "from cache or index"

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
.meta { color: #555; margin-bottom: 1em; }
.timeline { border: 1px solid #ccc; padding: .5em 2em .5em .5em; margin-bottom: 1.5em; }
.row { display: flex; align-items: center; height: 26px; }
.lane-name { width: 11em; flex: none; color: #555; font-size: 12px; overflow: hidden;
  white-space: nowrap; text-overflow: ellipsis; }
.lane { position: relative; flex: 1; height: 22px; background: #f6f6f6; }
.bar { position: absolute; top: 2px; height: 18px; min-width: 3px; box-sizing: border-box;
  border-radius: 3px; font-size: 11px; line-height: 18px; color: #fff; overflow: hidden;
  white-space: nowrap; padding: 0 3px; }
.lane.chips { display: flex; gap: 2px; background: none; }
.lane.chips .bar { position: static; margin-top: 2px; }
.built { background: #2e8b57; }
.failed { background: #c0392b; }
.cancelled { background: #888; }
.cached { background: #4a90d9; }
.binary { background: #8e6bbf; }
.skipped { background: #bbb; color: #222; }
.bar.critical { outline: 3px solid #f39c12; outline-offset: -1px; z-index: 1; }
.axis { position: relative; height: 16px; margin-left: 11em; font-size: 11px; color: #777; }
.axis span { position: absolute; transform: translateX(-50%); }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .4em; border-radius: 3px;
  color: #fff; font-size: 12px; }
.legend .critical-key { color: #222; outline: 3px solid #f39c12; }
.critical-path { margin: .5em 0 1em; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 1.5em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
tr.critical td:first-child { border-left: 4px solid #f39c12; }
"""


def write_html(path: Path, page: str) -> None:
    """Write ``page`` to ``path`` atomically. Raises OSError."""
    from kiln.jsonfiles import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, page)


def wheelhouse_html(report: Mapping[str, Any]) -> str:
    """The timings page of a wheelhouse report."""
    packages: list[Mapping[str, Any]] = list(report.get("packages", ()))
    critical = list(report.get("critical_path", ()))
    run = report.get("run", {})
    ran = [p for p in packages if p.get("start") is not None]
    end = max([p.get("end") or p["start"] for p in ran] + [float(run.get("seconds") or 0), 0.001])
    lanes: dict[str, list[Mapping[str, Any]]] = {}
    for package in sorted(ran, key=lambda p: (p["start"], p["id"])):
        lanes.setdefault(_lane_name(package), []).append(package)
    rows = [
        _timeline_row(name, [_timed_bar(p, end, p["id"] in critical) for p in lane])
        for name, lane in sorted(lanes.items(), key=lambda item: _lane_order(item[0]))
    ]
    untimed = [p for p in packages if p.get("start") is None and p.get("status") in _NOT_BUILT]
    if untimed:
        rows.append(_timeline_row(CACHE_LANE, [_chip(p) for p in untimed], chips=True))
    summary = ", ".join(
        f"{n} {status}" for status, n in report.get("summary", {}).get("status", {}).items()
    )
    body = [
        "<h1>kiln wheelhouse: timings</h1>",
        f'<p class="meta">{_e(run.get("outdir", ""))} · {len(packages)} packages ({_e(summary)})'
        f" · {_seconds(run.get('seconds'))} · {_e(run.get('jobs', '?'))} jobs"
        f" · kiln {_e(run.get('kiln_version', ''))}</p>",
        _legend(),
        '<div class="timeline">',
        _axis(end),
        *rows,
        "</div>",
        _critical_path(critical),
        _wheelhouse_table(packages, critical),
    ]
    return _page("kiln wheelhouse timings", body)


def build_html(report: Mapping[str, Any]) -> str:
    """The timings page of a single build (``kiln --timings``): where its time went."""
    timings: Mapping[str, float] = report.get("timings", {})
    steps = report.get("steps", [])
    total = float(report.get("seconds") or 0) or 0.001
    parts = [(name, float(seconds)) for name, seconds in timings.items()]
    rows = [
        _timeline_row(
            name,
            [
                f'<div class="bar built" style="left:0;width:{_percent(seconds, total)}"'
                f' title="{_e(name)}: {_seconds(seconds)}">{_seconds(seconds)}</div>'
            ],
        )
        for name, seconds in parts
    ]
    cache = report.get("compiler_cache") or {}
    table = _table(
        ["step", "seconds"],
        [[_e(name), _seconds(seconds)] for name, seconds in parts]
        + [[f"build {_e(s['distribution'])} (all of it)", _seconds(s["seconds"])] for s in steps]
        + [["compiler cache hits / misses", _hits(cache)], ["total", _seconds(total)]],
    )
    artifacts = _table(
        ["artifact", "size"],
        [[_e(a["name"]), _size(a.get("size"))] for a in report.get("artifacts", [])],
    )
    body = [
        "<h1>kiln build: timings</h1>",
        f'<p class="meta">{_e(report.get("source", ""))} · {_seconds(total)}'
        f" · kiln {_e(report.get('kiln_version', ''))}</p>",
        '<div class="timeline">',
        _axis(total),
        *rows,
        "</div>",
        table,
        artifacts,
    ]
    return _page("kiln build timings", body)


def _page(title: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_e(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


def _lane_name(package: Mapping[str, Any]) -> str:
    worker = package.get("worker")
    if worker and worker != "local":
        return str(worker)
    return f"lane {package.get('lane') if package.get('lane') is not None else '?'}"


def _lane_order(name: str) -> tuple[int, int | str]:
    number = name.removeprefix("lane ")
    return (0, int(number)) if number.isdigit() else (1, name)


def _timeline_row(name: str, bars: Sequence[str], *, chips: bool = False) -> str:
    lane_class = "lane chips" if chips else "lane"
    return (
        f'<div class="row"><div class="lane-name" title="{_e(name)}">{_e(name)}</div>'
        f'<div class="{lane_class}" data-lane="{_e(name)}">{"".join(bars)}</div></div>'
    )


def _timed_bar(package: Mapping[str, Any], end: float, critical: bool) -> str:
    start = float(package["start"])
    stop = float(package.get("end") or start)
    status = str(package.get("status", "pending"))
    classes = f"bar {status}" + (" critical" if critical else "")
    title = f"{package['id']}: {status}, {_seconds(stop - start)}"
    title += f" (from {_seconds(start)} to {_seconds(stop)})"
    timings = package.get("timings") or {}
    if timings:
        title += "; " + ", ".join(f"{k} {_seconds(v)}" for k, v in timings.items())
    if critical:
        title += "; on the critical path"
    return (
        f'<div class="{classes}" data-package="{_e(package["id"])}"'
        f' style="left:{_percent(start, end)};width:{_percent(stop - start, end)}"'
        f' title="{_e(title)}">{_e(package.get("name", package["id"]))}</div>'
    )


def _chip(package: Mapping[str, Any]) -> str:
    status = str(package.get("status"))
    title = f"{package['id']}: {status}, nothing built"
    return (
        f'<div class="bar {_e(status)}" data-package="{_e(package["id"])}"'
        f' title="{_e(title)}">{_e(package.get("name", package["id"]))}</div>'
    )


def _axis(end: float) -> str:
    ticks = [end * n / 5 for n in range(6)]
    marks = "".join(f'<span style="left:{_percent(t, end)}">{_seconds(t)}</span>' for t in ticks)
    return f'<div class="axis">{marks}</div>'


def _legend() -> str:
    keys = ["built", "failed", "cancelled", "cached", "binary"]
    spans = "".join(f'<span class="{key}">{key}</span>' for key in keys)
    return f'<p class="legend">{spans}<span class="critical-key">critical path</span></p>'


def _critical_path(critical: Sequence[str]) -> str:
    if not critical:
        return '<p class="critical-path">critical path: none (nothing was built)</p>'
    chain = " → ".join(_e(node_label(node)) for node in critical)
    return f'<p class="critical-path">critical path: {chain}</p>'


def _wheelhouse_table(packages: Sequence[Mapping[str, Any]], critical: Sequence[str]) -> str:
    hooks = sorted(
        {name for p in packages for name in (p.get("timings") or {}) if name not in _NON_HOOKS}
    )
    header = ["package", "status", "lane", "start", "seconds", "environment", *hooks]
    header += ["compiler cache hits / misses", "wheel size"]
    rows = []
    for package in packages:
        timings = package.get("timings") or {}
        cells = [
            f'<span title="{_e(package["id"])}">{_e(node_label(package["id"]))}</span>',
            _e(package.get("status", "")),
            _e(_lane_name(package) if package.get("start") is not None else ""),
            _seconds(package.get("start")),
            _seconds(package.get("seconds")),
            _seconds(timings.get("environment")),
            *(_seconds(timings.get(hook)) for hook in hooks),
            _hits(package.get("compiler_cache") or {}),
            _size(package.get("wheel_size")),
        ]
        rows.append((cells, "critical" if package["id"] in critical else ""))
    return _table(header, [cells for cells, _ in rows], [cls for _, cls in rows])


# Keys of a job's timings that are not hooks: the environment, and each distribution's whole step.
_NON_HOOKS = frozenset({"environment", "sdist", "wheel", "editable"})


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for n, row in enumerate(rows):
        cls = classes[n] if n < len(classes) and classes[n] else ""
        attr = f' class="{cls}"' if cls else ""
        lines.append(f"<tr{attr}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _hits(cache: Mapping[str, Any]) -> str:
    if cache.get("hits") is None:
        return ""
    return f"{cache['hits']} / {cache.get('misses', 0)}"


def _seconds(value: object) -> str:
    if value is None:
        return ""
    seconds = float(value)  # type: ignore[arg-type]
    if seconds >= 60:
        return f"{int(seconds // 60)}m {seconds % 60:.0f}s"
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"


def _size(value: object) -> str:
    if value is None:
        return ""
    size = float(value)  # type: ignore[arg-type]
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _percent(value: float, whole: float) -> str:
    return f"{max(0.0, min(100.0, 100 * value / whole)):.3f}%"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
