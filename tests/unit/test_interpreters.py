"""--python: finding the interpreter a spec names, and handing it to the build's parts.

No interpreter is run here: ``kiln.interpreters.query`` is replaced by a table of
fake executables (tests/integration/test_python_option.py runs real ones).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.builder import assemble_parts
from kiln.cli import build_parser, fill_from_environment, request_from_args
from kiln.compilers.setuptools import wrap_compilers
from kiln.environments.cached import EnvironmentKey
from kiln.environments.virtual import site_packages
from kiln.errors import UsageError
from kiln.interpreters import Interpreter, find_interpreter, remember, to_json
from kiln.interpreters import query as real_query
from kiln.options import environment_defaults
from kiln.planning import plan_build
from kiln.project import SourceInput
from kiln.request import BuildRequest


def an_interpreter(
    path: Path, version: tuple[int, int, int], implementation: str = "cpython"
) -> Interpreter:
    prefix = "pp" if implementation == "pypy" else "cp"
    return Interpreter(
        path=path,
        version=version,
        implementation=implementation,
        platform="linux-x86_64",
        tag=f"{prefix}{version[0]}{version[1]}",
        sys_version=f"{'.'.join(map(str, version))} (main) [GCC 12]",
        site_packages=(f"lib/python{version[0]}.{version[1]}/site-packages",),
        markers={"python_version": f"{version[0]}.{version[1]}"},
        compilers={"CC": "fakecc -pthread", "CXX": "fakecxx -pthread"},
    )


class FakeMachine:
    """Executables on a fake PATH and under a fake pyenv root, each answering as the
    interpreter registered for it (the stand-in for kiln.interpreters.query)."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.pyenv = root / "pyenv"
        self.bin.mkdir()
        (self.pyenv / "versions").mkdir(parents=True)
        self.answers: dict[Path, Interpreter] = {}
        self.asked: list[Path] = []

    @property
    def environ(self) -> dict[str, str]:
        return {"PATH": str(self.bin), "PYENV_ROOT": str(self.pyenv), "HOME": str(self.bin)}

    def on_path(
        self, name: str, version: tuple[int, int, int], implementation: str = "cpython"
    ) -> Path:
        return self._add(self.bin / name, version, implementation)

    def in_pyenv(
        self, directory: str, version: tuple[int, int, int], implementation: str = "cpython"
    ) -> Path:
        name = "pypy3" if implementation == "pypy" else "python3"
        return self._add(
            self.pyenv / "versions" / directory / "bin" / name, version, implementation
        )

    def _add(self, path: Path, version: tuple[int, int, int], implementation: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(0o755)
        self.answers[path] = an_interpreter(path, version, implementation)
        return path

    def query(self, executable: Path) -> Interpreter | None:
        self.asked.append(Path(executable))
        return self.answers.get(Path(executable))


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMachine]:
    fake = FakeMachine(tmp_path)
    monkeypatch.setattr("kiln.interpreters.query", fake.query)
    yield fake


# --- finding the interpreter ------------------------------------------------------


def test_a_version_is_found_on_path_first(machine: FakeMachine) -> None:
    on_path = machine.on_path("python3.12", (3, 12, 4))
    machine.in_pyenv("3.12.1", (3, 12, 1))
    assert find_interpreter("3.12", machine.environ).path == on_path


def test_a_version_not_on_path_is_found_under_pyenv_newest_first(machine: FakeMachine) -> None:
    machine.in_pyenv("3.10.2", (3, 10, 2))
    newest = machine.in_pyenv("3.10.13", (3, 10, 13))
    machine.in_pyenv("3.11.7", (3, 11, 7))
    assert find_interpreter("3.10", machine.environ).path == newest


def test_pyenv_shims_on_path_are_passed_over_for_the_versions_behind_them(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    shim = machine._add(machine.pyenv / "shims" / "python3.12", (3, 12, 1), "cpython")
    behind = machine.in_pyenv("3.12.1", (3, 12, 1))
    environ = {**machine.environ, "PATH": f"{shim.parent}:{machine.bin}"}
    assert find_interpreter("3.12", environ).path == behind
    assert shim not in machine.asked, "a shim starts pyenv: slow, and not needed"
    # Named as a command, the shim is what the user asked for.
    assert find_interpreter("python3.12", environ).path == shim


def test_a_full_version_picks_that_release(machine: FakeMachine) -> None:
    machine.in_pyenv("3.10.13", (3, 10, 13))
    older = machine.in_pyenv("3.10.2", (3, 10, 2))
    assert find_interpreter("3.10.2", machine.environ).path == older


def test_a_command_that_answers_with_another_version_is_passed_over(machine: FakeMachine) -> None:
    # e.g. a `python` on PATH that is 3.11 when 3.12 was asked for.
    machine.on_path("python", (3, 11, 7))
    wanted = machine.in_pyenv("3.12.1", (3, 12, 1))
    assert find_interpreter("3.12", machine.environ).path == wanted


def test_tags_name_the_implementation(machine: FakeMachine) -> None:
    cpython = machine.in_pyenv("3.13.0", (3, 13, 0))
    pypy = machine.in_pyenv("pypy3.10-7.3.17", (3, 10, 14), "pypy")
    assert find_interpreter("cp313", machine.environ).path == cpython
    assert find_interpreter("pp310", machine.environ).path == pypy
    assert find_interpreter("pypy3.10", machine.environ).tag == "pp310"
    with pytest.raises(UsageError, match="--python cp310: no such interpreter"):
        find_interpreter("cp310", machine.environ)


def test_a_path_and_a_command_name(machine: FakeMachine, tmp_path: Path) -> None:
    elsewhere = tmp_path / "opt" / "python"
    machine._add(elsewhere, (3, 12, 1), "cpython")
    named = machine.on_path("mypython", (3, 11, 7))
    assert find_interpreter(str(elsewhere), machine.environ).path == elsewhere
    assert find_interpreter("mypython", machine.environ).path == named


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3.99", "--python 3.99: no such interpreter on PATH or under pyenv"),
        ("nosuchpython", "--python nosuchpython: no such command on PATH"),
        ("/no/such/python", "--python /no/such/python: /no/such/python does not exist"),
        (" ", "--python needs a version, a path or a command name"),
    ],
)
def test_a_spec_that_names_nothing_is_a_usage_error_naming_it(
    machine: FakeMachine, spec: str, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        find_interpreter(spec, machine.environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_an_interpreter_older_than_kiln_supports_is_refused(machine: FakeMachine) -> None:
    machine.in_pyenv("3.9.18", (3, 9, 18))
    with pytest.raises(
        UsageError, match=r"--python 3\.9: CPython 3\.9\.18 .* older than Python 3\.10"
    ):
        find_interpreter("3.9", machine.environ)


# --- what it is -------------------------------------------------------------------


def test_the_key_is_stable_and_tells_rebuilt_interpreters_apart(tmp_path: Path) -> None:
    one = an_interpreter(tmp_path / "python3.12", (3, 12, 1))
    assert one.key == an_interpreter(tmp_path / "python3.12", (3, 12, 1)).key
    assert one.key.startswith("cp312-linux_x86_64-")
    rebuilt = Interpreter(**{**one.__dict__, "sys_version": "3.12.1 (main, rebuilt) [GCC 13]"})
    assert rebuilt.key != one.key
    moved = Interpreter(**{**one.__dict__, "path": tmp_path / "other" / "python3.12"})
    assert moved.key != one.key


def test_environments_are_keyed_and_laid_out_per_interpreter(tmp_path: Path) -> None:
    py310 = an_interpreter(tmp_path / "python3.10", (3, 10, 13))
    py312 = an_interpreter(tmp_path / "python3.12", (3, 12, 1))
    keys = {
        EnvironmentKey.for_requirements(["setuptools"], "uv", [], interpreter).digest
        for interpreter in (py310, py312, None)
    }
    assert len(keys) == 3
    key = EnvironmentKey.for_requirements(["setuptools"], "uv", [], py312)
    assert (key.python, key.python_version) == (str(py312.path), py312.sys_version)
    env = tmp_path / "env"
    assert site_packages(env, py312) == [str(env / "lib/python3.12/site-packages")]


def test_a_compiler_cache_wraps_the_target_interpreters_compilers(tmp_path: Path) -> None:
    for name in ("fakecc", "fakecxx"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    environ = {"PATH": str(tmp_path)}
    target = an_interpreter(tmp_path / "python3.12", (3, 12, 1))
    wrap_compilers(
        environ, cache_name="ccache", executable="/usr/bin/ccache", configured=target.compilers
    )
    assert environ["CC"].endswith(" fakecc -pthread")
    assert environ["CXX"].endswith(" fakecxx -pthread")


# --- the option, the variable, the request ------------------------------------------


def test_the_option_and_the_variable_fill_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    for argv in (["-p", "3.12"], ["--python", "3.12"]):
        assert request_from_args(build_parser().parse_args(argv)).python == "3.12"
    monkeypatch.setenv("KILN_PYTHON", "3.10")
    args = build_parser().parse_args([])
    fill_from_environment(args)
    assert request_from_args(args).python == "3.10"
    args = build_parser().parse_args(["-p", "3.12"])
    fill_from_environment(args)
    assert request_from_args(args).python == "3.12", "the option wins over the variable"


def test_kiln_python_is_not_read_without_isolation() -> None:
    fields = {"python": None, "isolation": False}
    assert environment_defaults(fields, {"KILN_PYTHON": "3.12"}) == {}


def test_no_isolation_with_python_is_refused() -> None:
    with pytest.raises(UsageError, match="--python makes a build environment from another"):
        BuildRequest(isolation=False, python="3.12")


# --- the parts: an interpreter is asked only when --python is given ---------------------


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def test_without_python_no_interpreter_is_asked(tmp_path: Path, no_processes: None) -> None:
    source = SourceInput(tmp_path / "proj", is_archive=False)
    plan = plan_build(BuildRequest(source.path, cache_dir=tmp_path / "c"), source)
    parts = assemble_parts(plan, {"PATH": ""})
    assert parts.interpreter is None
    assert parts.provider.interpreter is None  # type: ignore[attr-defined]


def test_with_python_the_parts_get_the_interpreter(
    tmp_path: Path, machine: FakeMachine, no_processes: None
) -> None:
    machine.in_pyenv("3.12.1", (3, 12, 1))
    source = SourceInput(tmp_path / "proj", is_archive=False)
    request = BuildRequest(source.path, cache_dir=tmp_path / "c", python="3.12")
    parts = assemble_parts(plan_build(request, source), machine.environ)
    assert parts.interpreter is not None
    assert parts.interpreter.version == (3, 12, 1)
    assert parts.provider.interpreter is parts.interpreter  # type: ignore[attr-defined]


def test_an_interpreter_handed_to_another_process_needs_no_query(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = machine.in_pyenv("3.12.1", (3, 12, 1))
    known = machine.answers[path]
    data = json.loads(json.dumps(to_json(known)))
    # In the other process: no interpreter answers; what was handed over does.
    monkeypatch.setattr("kiln.interpreters.query", real_query)
    monkeypatch.setattr("kiln.interpreters._queried", {})
    monkeypatch.setattr(subprocess, "run", refuse_processes)
    assert remember(data) == known
    assert find_interpreter(str(path), machine.environ) == known
    assert remember({"path": str(path)}) is None


def refuse_processes(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a process was started: {args}")
