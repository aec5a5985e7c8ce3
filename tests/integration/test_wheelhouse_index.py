"""The index kiln writes over a wheelhouse installs with real pip and uv, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from kiln.wheelhouse.index import write_index

# Two wheels of the test wheelhouse, pure, from two projects.
WHEELS = ("pluggy-*-py3-none-any.whl", "editables-*-py3-none-any.whl")


def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(path)
    return path / ("Scripts" if os.name == "nt" else "bin") / "python"


def only_our_wheelhouse(tmp_path: Path) -> dict[str, str]:
    """The test environment without its find-links and no-index settings (which
    point pip and uv at the test wheelhouse): what installs must come from ours."""
    dropped = {"PIP_NO_INDEX", "PIP_FIND_LINKS", "UV_FIND_LINKS", "UV_DEFAULT_INDEX"}
    environ = {name: value for name, value in os.environ.items() if name not in dropped}
    return {**environ, "PIP_NO_INPUT": "1", "UV_CACHE_DIR": str(tmp_path / "uv-cache")}


def installed(python: Path, name: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {name}"], check=False)
    return probe.returncode == 0


@pytest.fixture
def our_wheelhouse(tmp_path: Path, wheelhouse: Path) -> Path:
    out = tmp_path / "wheelhouse"
    out.mkdir()
    for pattern in WHEELS:
        shutil.copy2(sorted(wheelhouse.glob(pattern))[-1], out)
    write_index(out)
    return out


def test_pip_installs_from_the_index(our_wheelhouse: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    index = (our_wheelhouse / "simple").as_uri()
    # pip runs from kiln's own environment into the fresh one (--python).
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
         "--no-cache-dir", "--disable-pip-version-check", "--index-url", index,
         "pluggy", "editables"],
        check=True,
        env=only_our_wheelhouse(tmp_path),
    )  # fmt: skip
    assert installed(python, "pluggy") and installed(python, "editables")


@pytest.mark.parametrize("how", ["--find-links", "--index-url"])
def test_uv_installs_from_the_wheelhouse(our_wheelhouse: Path, tmp_path: Path, how: str) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    python = fresh_venv(tmp_path / "venv")
    if how == "--find-links":  # the directory itself, as uv users point at one
        where = ["--no-index", "--find-links", str(our_wheelhouse)]
    else:  # the simple index kiln wrote
        where = ["--index-url", (our_wheelhouse / "simple").as_uri()]
    subprocess.run(
        [uv, "pip", "install", "--python", python, "--offline", "--no-deps", *where,
         "pluggy", "editables"],
        check=True,
        env=only_our_wheelhouse(tmp_path),
    )  # fmt: skip
    assert installed(python, "pluggy") and installed(python, "editables")
