"""kiln.wheelhouse.resolution without uv: pins written, keys, kept resolutions, errors."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln.errors import EnvironmentSetupError
from kiln.layout import RESOLUTIONS
from kiln.wheelhouse.inputs import read_inputs
from kiln.wheelhouse.model import FileRef, Pin
from kiln.wheelhouse.resolution import (
    NoSdistError,
    ResolutionError,
    _failure,
    resolution_key,
    resolve,
    write_pins,
)


@dataclass(frozen=True)
class FakeInterpreter:
    path: Path
    key: str
    version: tuple[int, int, int] = (3, 11, 0)


PYTHON = FakeInterpreter(Path(sys.executable), "cp311-test")
PINS = [
    Pin("six", "1.17.0", FileRef("file:///w/six-1.17.0.tar.gz", "six-1.17.0.tar.gz", "a" * 64)),
    Pin(
        "cmake",
        "4.4.4",
        wheels=(FileRef("https://e.org/cmake-4.4.4-py3-none-any.whl", "cmake.whl", "b" * 64),),
    ),
    Pin("proj", "1.0", project_dir=Path("/src/proj")),
]


def test_written_pins_read_back_as_a_lock(tmp_path: Path) -> None:
    path = write_pins(PINS, tmp_path / "pylock.cp311.toml", requires_python=">=3.11")
    assert read_inputs([str(path)]).locked == sorted(PINS, key=lambda p: p.name)


def test_the_key_follows_what_decides_a_resolution(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("six==1.16\n")
    environ = {"UV_NO_CONFIG": "1", "UV_INDEX_URL": "https://a.example/simple"}

    def key(**changes: object) -> str:
        arguments: dict[str, object] = {
            "requirements": ["six"],
            "interpreter": PYTHON,
            "constraints": [constraints],
            "sdists": True,
            "binary": frozenset(),
            "environ": environ,
        }
        arguments.update(changes)
        return resolution_key(**arguments)  # type: ignore[arg-type]

    first = key()
    assert key(environ={**environ, "UV_CACHE_DIR": "/elsewhere"}) == first
    assert key(requirements=["six", "attrs"]) != first
    assert key(interpreter=FakeInterpreter(PYTHON.path, "cp312-test")) != first
    assert key(binary=frozenset({"six"})) != first
    assert key(sdists=False) != first
    assert key(environ={**environ, "UV_INDEX_URL": "https://b.example/simple"}) != first
    constraints.write_text("six==1.17\n")
    assert key() != first


def test_a_kept_resolution_is_used_without_running_uv(tmp_path: Path) -> None:
    environ = {"UV_NO_CONFIG": "1"}
    key = resolution_key(["six"], PYTHON, [], True, frozenset(), environ)
    write_pins(PINS[:1], tmp_path / "pylock.toml")
    stored = tmp_path / "cache" / RESOLUTIONS / f"{key}.toml"
    stored.parent.mkdir(parents=True)
    (tmp_path / "pylock.toml").rename(stored)
    arguments = {
        "sdists": True,
        "environ": environ,
        "scratch": tmp_path / "scratch",
        "cache_dir": tmp_path / "cache",
        "uv": str(tmp_path / "no-uv-here"),
    }
    assert resolve(["six"], PYTHON, **arguments) == PINS[:1]  # type: ignore[arg-type]
    # Older than the TTL: resolved again, so uv (missing here) is run.
    old = time.time() - 2 * 24 * 3600
    os.utime(stored, (old, old))
    with pytest.raises(EnvironmentSetupError, match="no-uv-here"):
        resolve(["six"], PYTHON, **arguments)  # type: ignore[arg-type]


UV_NO_SDIST = """\
  x No solution found when resolving dependencies:
  ╰─▶ Because pluggy==1.7.0 has no source distribution and all versions of hatchling depend
      on pluggy==1.7.0, we can conclude that all versions of hatchling cannot be used.

hint: A source distribution is required for `pluggy` because using pre-built wheels is
disabled for `pluggy` (i.e., with `--no-binary-package pluggy`)
"""


def test_a_package_without_an_sdist_is_named_with_the_way_out() -> None:
    error = _failure(UV_NO_SDIST, PYTHON)
    assert isinstance(error, NoSdistError)
    assert error.names == ["pluggy"]
    assert "--binary pluggy" in str(error)
    assert "\n" not in str(error)


def test_another_resolver_failure_is_one_line_with_uvs_reason() -> None:
    error = _failure(
        "error: No solution found when resolving dependencies\n"
        "  cause: Because nothing-here was not found in the package registry\n",
        PYTHON,
    )
    assert type(error) is ResolutionError
    assert str(error) == (
        f"the requirements cannot be resolved for {PYTHON.path}: No solution found when "
        "resolving dependencies cause: Because nothing-here was not found in the package registry"
    )
    assert error.exit_code == 2


def test_binary_all_asks_the_resolver_for_no_sdist(tmp_path: Path) -> None:
    # A stand-in for uv: it records its arguments and writes a lock of one wheel.
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "uv"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        "open(out, 'w').write('lock-version = \"1.0\"\\n[[packages]]\\nname = \"ninja\"\\n'\n"
        '    \'version = "1"\\nwheels = [{ url = "https://e/ninja-1-py3-none-any.whl" }]\\n\')\n'
    )
    fake.chmod(0o755)
    pins = resolve(
        ["ninja"],
        PYTHON,
        sdists=True,
        binary=frozenset({":all:"}),
        environ={"UV_NO_CONFIG": "1"},
        scratch=tmp_path / "scratch",
        uv=str(fake),
    )
    assert [pin.name for pin in pins] == ["ninja"]
    assert "--no-binary" not in calls.read_text()
