"""kiln as a drop-in for ``python -m build`` on real projects that no one here wrote.

For each sdist in the wheelhouse (see tests/sdists.txt), both tools run their
default flow (sdist, then the wheel from it) on the same source tree; the
artifact names, the wheel file lists, the sdist file lists and METADATA must match.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_sdist_filename

from tests.helpers import TESTS, WHEELHOUSE, run_kiln, wheel_files, wheel_metadata

pytestmark = pytest.mark.integration


def real_sdists() -> list[str]:
    listed = (TESTS / "sdists.txt").read_text().splitlines()
    return [
        line.split("==")[0].strip() for line in listed if line.strip() and not line.startswith("#")
    ]


def find_sdist(name: str) -> Path:
    matches = [
        p
        for p in (WHEELHOUSE / "sdists").iterdir()
        if parse_sdist_filename(p.name)[0] == canonicalize_name(name)
    ]
    assert len(matches) == 1, f"expected one sdist of {name} in the wheelhouse, found {matches}"
    return matches[0]


def sdist_files(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        return sorted(m.name for m in archive.getmembers() if not m.isdir())


@pytest.mark.parametrize("name", real_sdists())
def test_same_artifacts_as_pypa_build(name: str, tmp_path: Path, wheelhouse: Path) -> None:
    with tarfile.open(find_sdist(name)) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    [tree] = (tmp_path / "unpacked").iterdir()
    for tool in ("kiln", "build"):
        shutil.copytree(tree, tmp_path / tool / tree.name)

    kiln_out, build_out = tmp_path / "kiln-dist", tmp_path / "build-dist"
    completed = run_kiln(tmp_path / "kiln" / tree.name, "-o", kiln_out)
    assert completed.returncode == 0, completed.stderr
    reference = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--installer",
            "uv",
            "-o",
            str(build_out),
            str(tmp_path / "build" / tree.name),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    assert reference.returncode == 0, reference.stdout + reference.stderr

    names = sorted(p.name for p in kiln_out.iterdir())
    assert names == sorted(p.name for p in build_out.iterdir())
    [kiln_wheel] = kiln_out.glob("*.whl")
    [kiln_sdist] = kiln_out.glob("*.tar.gz")
    assert wheel_files(kiln_wheel) == wheel_files(build_out / kiln_wheel.name)
    assert wheel_metadata(kiln_wheel) == wheel_metadata(build_out / kiln_wheel.name)
    assert sdist_files(kiln_sdist) == sdist_files(build_out / kiln_sdist.name)
