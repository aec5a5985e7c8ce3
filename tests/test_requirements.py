"""Unmet-requirement detection over real .dist-info directories."""

from __future__ import annotations

from pathlib import Path

import pytest

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
