"""The simple index over a wheelhouse: pages, links, hashes, and replacing an old index."""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path

import pytest

from kiln.wheelhouse.index import write_index


def make_wheel(directory: Path, filename: str, requires_python: str | None = None) -> Path:
    name, version = filename.split("-")[:2]
    path = directory / filename
    with zipfile.ZipFile(path, "w") as archive:
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        if requires_python:
            metadata += f"Requires-Python: {requires_python}\n"
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
    return path


def links(page: Path) -> list[str]:
    return re.findall(r'<a href="([^"]+)"', page.read_text())


def test_pages_link_every_wheel_with_its_hash(tmp_path: Path) -> None:
    first = make_wheel(tmp_path, "Foo_Bar-1.0-py3-none-any.whl", ">=3.9")
    make_wheel(tmp_path, "foo_bar-1.1-py3-none-any.whl")
    make_wheel(tmp_path, "zeta-2.0-cp312-cp312-linux_x86_64.whl")
    (tmp_path / "not-a-wheel.tar.gz").write_text("x")
    simple = write_index(tmp_path)
    assert simple == tmp_path / "simple"
    assert links(simple / "index.html") == ["foo-bar/", "zeta/"]
    page = simple / "foo-bar" / "index.html"
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert links(page)[0] == f"../../Foo_Bar-1.0-py3-none-any.whl#sha256={digest}"
    assert len(links(page)) == 2
    assert 'data-requires-python="&gt;=3.9"' in page.read_text()
    # Every link resolves, relative to the page, to the wheel itself.
    for href in links(page):
        assert (page.parent / href.partition("#")[0]).resolve().is_file()


def test_rewriting_drops_projects_that_left_and_leaves_no_partials(tmp_path: Path) -> None:
    make_wheel(tmp_path, "alpha-1.0-py3-none-any.whl")
    gone = make_wheel(tmp_path, "beta-1.0-py3-none-any.whl")
    write_index(tmp_path)
    gone.unlink()
    make_wheel(tmp_path, "alpha-1.1-py3-none-any.whl")
    simple = write_index(tmp_path)
    assert links(simple / "index.html") == ["alpha/"]
    assert not (simple / "beta").exists()
    assert len(links(simple / "alpha" / "index.html")) == 2
    assert not list(simple.rglob("*.partial"))


def test_a_rewrite_removes_only_the_pages_it_wrote(tmp_path: Path) -> None:
    # The user's own files under simple/ (a static index made by another tool, with
    # its files beside its pages) are theirs: only kiln's stale page goes.
    make_wheel(tmp_path, "alpha-1.0-py3-none-any.whl")
    theirs = tmp_path / "simple" / "mine"
    theirs.mkdir(parents=True)
    (theirs / "mine-1.0.tar.gz").write_text("the user's")
    (theirs / "index.html").write_text("the user's page")
    simple = write_index(tmp_path)
    assert (theirs / "mine-1.0.tar.gz").read_text() == "the user's"
    gone = make_wheel(tmp_path, "beta-1.0-py3-none-any.whl")
    write_index(tmp_path)
    gone.unlink()
    write_index(tmp_path)
    assert not (simple / "beta").exists()
    assert (theirs / "mine-1.0.tar.gz").read_text() == "the user's"


def test_an_empty_wheelhouse_has_an_empty_index(tmp_path: Path) -> None:
    simple = write_index(tmp_path)
    assert links(simple / "index.html") == []


def test_a_rewrite_hashes_only_new_or_changed_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiln.wheelhouse import index

    kept = make_wheel(tmp_path, "alpha-1.0-py3-none-any.whl")
    write_index(tmp_path)
    hashed: list[str] = []
    from kiln.digests import file_sha256 as real

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(index, "file_sha256", counting)
    make_wheel(tmp_path, "beta-1.0-py3-none-any.whl")
    write_index(tmp_path)
    assert hashed == ["beta-1.0-py3-none-any.whl"]
    # A wheel replaced under the same name is hashed again (its size or mtime changed).
    make_wheel(tmp_path, "alpha-1.0-py3-none-any.whl", ">=3.10")
    os.utime(kept, ns=(1, 1))
    write_index(tmp_path)
    digest = hashlib.sha256(kept.read_bytes()).hexdigest()
    assert f"#sha256={digest}" in (tmp_path / "simple" / "alpha" / "index.html").read_text()
