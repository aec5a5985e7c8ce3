"""Unmet-requirement detection over real .dist-info directories; constraints files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kiln.constraints import constraint_inputs, local_input, local_target, read_constraints
from kiln.errors import UsageError
from kiln.requirements import unmet_requirements


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site directory with a few installed distributions, as installers lay them out."""
    install(
        tmp_path,
        "alpha",
        "2.0",
        ["beta>=1", "gamma; extra == 'fast'", "delta; python_version < '3'"],
    )
    install(tmp_path, "beta", "1.5")
    install(tmp_path, "Mixed_Case.Name", "1.0")
    return tmp_path


def install(site: Path, name: str, version: str, requires: list[str] | None = None) -> None:
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {req}" for req in requires or []]
    (dist_info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")


def unmet(site: Path, *requirements: str) -> list[str]:
    return [str(item) for item in unmet_requirements(requirements, [str(site)])]


def test_met_requirements_including_transitive(site: Path) -> None:
    assert unmet(site, "alpha>=1.0", "beta") == []


def test_missing_requirement(site: Path) -> None:
    assert unmet(site, "zeta") == ["zeta (not installed)"]


def test_wrong_version(site: Path) -> None:
    assert unmet(site, "beta>=2") == ["beta>=2 (installed: 1.5)"]


def test_names_are_normalized(site: Path) -> None:
    assert unmet(site, "mixed-case-name==1.0") == []


def test_markers_are_evaluated(site: Path) -> None:
    assert unmet(site, "zeta; python_version < '3'") == []
    assert unmet(site, "zeta; python_version >= '3'") == [
        'zeta; python_version >= "3" (not installed)'
    ]


def test_extras_pull_in_their_requirements(site: Path) -> None:
    assert unmet(site, "alpha[fast]") == [
        'gamma; extra == "fast" (not installed), required by alpha[fast]'
    ]


def test_transitive_requirement_reports_its_chain(tmp_path: Path) -> None:
    install(tmp_path, "top", "1.0", ["middle"])
    install(tmp_path, "middle", "1.0", ["bottom>=3"])
    install(tmp_path, "bottom", "2.0")
    assert unmet(tmp_path, "top") == ["bottom>=3 (installed: 2.0), required by top -> middle"]


def test_prereleases_satisfy_a_plain_specifier(tmp_path: Path) -> None:
    # An installed pre-release meets ">=1" (pip and build judge it the same way).
    install(tmp_path, "pre", "2.0b1")
    assert unmet(tmp_path, "pre>=1") == []


def test_empty_site(tmp_path: Path) -> None:
    assert unmet(tmp_path, "anything") == ["anything (not installed)"]


# Constraints files as the installer reads them (kiln.constraints).


def test_includes_are_followed_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "top.txt").write_text(
        "# comment\n-c sub/a.txt\n--requirement=sub/b.txt  # trailing comment\nx==1\n"
    )
    (tmp_path / "sub" / "a.txt").write_text("--constraint ../c.txt\n")
    (tmp_path / "sub" / "b.txt").write_text("y==2\n")
    (tmp_path / "c.txt").write_text("z==3\n-c top.txt\n")  # a cycle: read once
    found = read_constraints([tmp_path / "top.txt"])
    assert [f.path.name for f in found.files] == ["top.txt", "a.txt", "c.txt", "b.txt"]
    assert found.top == (0,)


def test_copies_point_at_each_other(tmp_path: Path) -> None:
    (tmp_path / "top.txt").write_text("-r inner.txt\r\nx==1\n-c https://example.org/c.txt\n")
    (tmp_path / "inner.txt").write_text("y==2")
    found = read_constraints([tmp_path / "top.txt"])
    [copy] = found.write(tmp_path / "copies")
    assert copy.read_bytes() == b"-r 1-inner.txt\r\nx==1\n-c https://example.org/c.txt\n"
    assert (copy.parent / "1-inner.txt").read_bytes() == b"y==2"
    # The copies key like the originals: same content read, includes followed.
    assert constraint_inputs([copy])[0] == [copy.read_bytes(), b"y==2"]


def test_a_missing_include_names_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "top.txt").write_text("-c gone.txt\n")
    with pytest.raises(UsageError, match=r"gone\.txt \(included by .*top\.txt\) does not exist"):
        read_constraints([tmp_path / "top.txt"])


def test_a_directory_is_not_a_constraints_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        read_constraints([tmp_path])


def test_a_fifo_is_read_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("x==1\n"))
    writer.start()
    found = read_constraints([fifo])
    writer.join()
    assert [f.data for f in found.files] == [b"x==1\n"]


@pytest.mark.parametrize(
    ("line", "target"),
    [
        (
            "pkg @ file:///srv/wheels/pkg-1.0-py3-none-any.whl",
            "/srv/wheels/pkg-1.0-py3-none-any.whl",
        ),
        ("pkg @ file:///srv/my%20dir", "/srv/my dir"),
        ("pkg @ file:///srv/pkg.whl --hash=sha256:00", "/srv/pkg.whl"),
        ("./wheels/pkg-1.0.tar.gz", "{cwd}/wheels/pkg-1.0.tar.gz"),
        ("/abs/plugin", "/abs/plugin"),
        ("pkg @ https://example.org/pkg.whl", None),
        ("pkg @ git+https://example.org/pkg", None),
        ("pkg>=1", None),
        ("--index-url https://example.org", None),
    ],
)
def test_local_targets(line: str, target: str | None) -> None:
    expected = target.format(cwd=Path.cwd()) if target else None
    assert local_target(line) == expected


def test_local_input_follows_content(tmp_path: Path) -> None:
    wheel = tmp_path / "pkg.whl"
    wheel.write_bytes(b"one")
    first = local_input(str(wheel))
    wheel.write_bytes(b"two")
    assert local_input(str(wheel)) != first
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "m.py").write_text("a")
    before = local_input(str(tmp_path / "dir"))
    (tmp_path / "dir" / "m.py").write_text("ab")
    assert local_input(str(tmp_path / "dir")) != before
    assert local_input(str(tmp_path / "missing")) == b"missing"
