"""A PEP 503 simple index over the wheels of a wheelhouse directory.

``simple/index.html`` lists the projects, ``simple/<name>/index.html`` their
wheels with relative links (``../../<wheel>``) carrying ``#sha256=`` fragments
and ``data-requires-python``, so the wheelhouse can be moved or served as it is:
``pip install --index-url file://…/simple`` and ``uv pip install --find-links DIR``
both work offline.
"""

from __future__ import annotations

import contextlib
import html
import os
import zipfile
from collections.abc import Iterable, Mapping
from email.parser import HeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kiln.digests import file_sha256
from kiln.jsonfiles import read_json_object, write_json

SIMPLE = "simple"
INDEX = "index.html"
# The hashes of the last write, by file name with its size and mtime: a rewrite
# hashes only new or changed wheels (a big wheelhouse's no-change run stays fast).
HASHES = ".hashes.json"


def write_index(wheelhouse: Path) -> Path:
    """(Re)write ``wheelhouse/simple`` over every ``*.whl`` in ``wheelhouse``; return it.

    Each page is replaced whole (written beside it, then renamed), project pages
    before the root page, so a reader never sees half a page nor a link to a page
    that is not there; pages of projects no longer in the directory are removed last.
    Raises OSError.
    """
    simple = wheelhouse / SIMPLE
    projects: dict[str, list[Path]] = {}
    for wheel in sorted(wheelhouse.glob("*.whl")):
        if wheel.is_file():
            projects.setdefault(_project(wheel.name), []).append(wheel)
    simple.mkdir(exist_ok=True)
    known = read_json_object(simple / HASHES)
    hashes: dict[str, list[Any]] = {}
    for name, wheels in projects.items():
        (simple / name).mkdir(exist_ok=True)
        _replace(simple / name / INDEX, _project_page(name, wheels, known, hashes))
    _replace(simple / INDEX, _root_page(sorted(projects)))
    # Only the pages the last write made (its hashes name their wheels): anything
    # else under simple/ is the user's and stays.
    for name in sorted({_project(wheel) for wheel in known} - set(projects)):
        if "/" not in name and os.sep not in name and name not in ("", ".", ".."):
            _remove_page(simple / name)
    write_json(simple / HASHES, hashes)
    return simple


def _remove_page(directory: Path) -> None:
    """A project page kiln wrote, and its directory if nothing else is in it."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        (directory / INDEX).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


def _project(filename: str) -> str:
    """The normalized project name of a wheel file name (PEP 503)."""
    from packaging.utils import canonicalize_name, parse_wheel_filename

    try:
        return str(parse_wheel_filename(filename)[0])
    except ValueError:  # a name packaging refuses: its first dash-separated part
        return str(canonicalize_name(filename.split("-", 1)[0]))


def _root_page(names: Iterable[str]) -> str:
    links = "".join(f'    <a href="{quote(name)}/">{html.escape(name)}</a>\n' for name in names)
    return _page("Simple index", links)


def _project_page(
    name: str, wheels: Iterable[Path], known: Mapping[str, Any], hashes: dict[str, list[Any]]
) -> str:
    lines = []
    for wheel in wheels:
        status = wheel.stat()
        stamp = [status.st_size, status.st_mtime_ns]
        previous = known.get(wheel.name)
        if isinstance(previous, list) and previous[:2] == stamp and len(previous) == 3:
            digest = str(previous[2])
        else:
            digest = file_sha256(wheel)
        hashes[wheel.name] = [*stamp, digest]
        href = f"../../{quote(wheel.name)}#sha256={digest}"
        requires = _requires_python(wheel)
        attribute = f' data-requires-python="{html.escape(requires)}"' if requires else ""
        lines.append(f'    <a href="{href}"{attribute}>{html.escape(wheel.name)}</a><br/>\n')
    return _page(f"Links for {name}", "".join(lines))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}  </body>\n</html>\n"
    )


def _requires_python(wheel: Path) -> str | None:
    """The wheel's Requires-Python, or None (also for a wheel that cannot be read)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                parts = member.split("/")
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                    text = archive.read(member).decode("utf-8", errors="replace")
                    value = HeaderParser().parsestr(text).get("Requires-Python")
                    return str(value).strip() if value else None
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
