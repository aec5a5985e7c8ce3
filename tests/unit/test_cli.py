"""The command line's own behaviour: help, version, usage errors (no builds)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from kiln import __version__
from kiln.__main__ import main
from kiln.cli import (
    CLI_ONLY,
    CONFIG_OPTIONS,
    DISTRIBUTION_FLAGS,
    build_parser,
    fill_from_environment,
    request_from_args,
)
from kiln.options import DISTRIBUTIONS
from kiln.request import BuildRequest, Distribution
from tests.helpers import run_kiln


def test_version_via_python_m_kiln() -> None:
    completed = run_kiln("--version")
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"kiln {__version__}"


def test_help_lists_every_option() -> None:
    completed = run_kiln("--help")
    assert completed.returncode == 0
    for option in (
        "--sdist",
        "--wheel",
        "--editable",
        "--metadata",
        "--outdir",
        "--config-setting",
        "--config-json",
        "--no-isolation",
        "--skip-dependency-check",
        "--installer",
        "--constraint",
        "--dependency-constraints-txt",
        "--report",
        "--cache-dir",
        "--verbose",
        "--quiet",
        "--version",
    ):
        assert option in completed.stdout, option
    assert "exit codes:" in completed.stdout
    assert "130" in completed.stdout


def test_unknown_option_is_a_usage_error() -> None:
    completed = run_kiln("--frobnicate")
    assert completed.returncode == 2
    assert "unrecognized arguments: --frobnicate" in completed.stderr


def test_metadata_with_wheel_is_a_usage_error(tmp_path: Path) -> None:
    completed = run_kiln(tmp_path, "--metadata", "-w")
    assert completed.returncode == 2
    assert "--metadata cannot be combined" in completed.stderr


def test_source_that_does_not_exist(tmp_path: Path) -> None:
    completed = run_kiln(tmp_path / "missing")
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"kiln: error: source {tmp_path / 'missing'} does not exist"


def test_source_that_is_a_plain_file(tmp_path: Path) -> None:
    (tmp_path / "setup.cfg").write_text("[metadata]\n")
    completed = run_kiln(tmp_path / "setup.cfg")
    assert completed.returncode == 2
    assert "neither a project directory nor an sdist archive" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_bad_config_json_is_a_usage_error(tmp_path: Path) -> None:
    completed = run_kiln(tmp_path, "--config-json", "[1]")
    assert completed.returncode == 2
    assert "--config-json must be a JSON object" in completed.stderr


def test_missing_constraint_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("")
    completed = run_kiln(tmp_path, "-c", tmp_path / "nope.txt")
    assert completed.returncode == 2
    assert f"constraint file {tmp_path / 'nope.txt'} does not exist" in completed.stderr


def test_wheel_with_editable_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("")
    completed = run_kiln(tmp_path, "-w", "--editable")
    assert completed.returncode == 2
    assert "cannot be built in one run" in completed.stderr
    assert not (tmp_path / "dist").exists()


def test_metadata_with_outdir_is_a_usage_error(tmp_path: Path) -> None:
    completed = run_kiln(tmp_path, "--metadata", "-o", tmp_path / "out")
    assert completed.returncode == 2
    assert "-o/--outdir has no effect" in completed.stderr


def test_report_that_is_a_directory_is_refused_before_building(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("")
    completed = run_kiln(tmp_path, "--report", tmp_path)
    assert completed.returncode == 2
    assert "is a directory; name a file" in completed.stderr
    assert not (tmp_path / "dist").exists()


def test_main_returns_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_console_script_fails_when_its_output_cannot_be_written() -> None:
    # It skips the interpreter's teardown, yet fails as the interpreter's own exit
    # would: status 120 when the output it buffered cannot be flushed.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "kiln", "--version"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            # Buffered, as a pipe is by default: the write fails at the flush on exit.
            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
            check=False,
        )
    finally:
        os.close(write_end)
    assert completed.returncode == 120, completed.stderr


def test_version_flag_from_main(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-V"]) == 0
    assert capsys.readouterr().out == f"kiln {__version__}\n"


# --- The options and BuildRequest: one list -----------------------------------

# A value for each option that takes one, where any string will not do.
OPTION_VALUES = {"config_json": '{"k": 1}', "config_setting": "k=v"}


def _option_args(action: argparse.Action) -> list[str]:
    """The arguments that give ``action`` a value other than its default."""
    if not action.option_strings:
        return ["elsewhere"]  # SRC
    flag = action.option_strings[-1]
    if action.nargs == 0:
        return [flag]
    if action.choices is not None:
        return [flag, next(c for c in action.choices if c != action.default)]
    return [flag, OPTION_VALUES.get(action.dest, "/somewhere/else")]


def _options() -> list[argparse.Action]:
    return [a for a in build_parser()._actions if a.dest not in CLI_ONLY]


def test_every_option_sets_a_request_field_and_every_field_has_an_option() -> None:
    """The CLI is checked against BuildRequest: each of its build options changes the
    request, and each request field but env_ttl (a variable only) is reachable."""
    default = request_from_args(build_parser().parse_args([]))
    reached = set()
    for action in _options():
        request = request_from_args(build_parser().parse_args(_option_args(action)))
        changed = {
            f.name
            for f in dataclasses.fields(request)
            if getattr(request, f.name) != getattr(default, f.name)
        }
        assert changed, f"{action.option_strings or action.dest} sets no BuildRequest field"
        reached |= changed
    fields = {f.name for f in dataclasses.fields(BuildRequest)}
    assert fields - reached == {"env_ttl"}


def test_option_dests_are_request_fields_or_named_groups() -> None:
    fields = {f.name for f in dataclasses.fields(BuildRequest)}
    grouped = set(DISTRIBUTION_FLAGS.values()) | set(CONFIG_OPTIONS)
    for action in _options():
        assert action.dest in fields | grouped, action.dest


def _literal(hint: object) -> object | None:
    """The ``Literal`` a field is typed with, alone or ``| None``."""
    if typing.get_origin(hint) is typing.Literal:
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next((a for a in typing.get_args(hint) if _literal(a) is not None), None)
    return None


def test_option_choices_are_the_request_literals() -> None:
    hints = typing.get_type_hints(BuildRequest)
    literals = {name: _literal(hint) for name, hint in hints.items() if _literal(hint)}
    with_choices = {a.dest: tuple(a.choices) for a in _options() if a.choices is not None}
    assert set(with_choices) == set(literals)
    for name, choices in with_choices.items():
        assert choices == typing.get_args(literals[name]), name
    # The distributions: one flag each, named as the Literal's values.
    assert tuple(DISTRIBUTION_FLAGS) == typing.get_args(Distribution) == DISTRIBUTIONS


def test_the_environment_fills_what_the_options_leave_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KILN_ENV_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("KILN_HOOK_RUNNER", "plain")
    monkeypatch.setenv("KILN_ENV_TTL", "60")  # not read: --env-dir uses no cached environment
    args = build_parser().parse_args(["--hook-runner", "warm"])
    fill_from_environment(args)
    request = request_from_args(args)
    assert request.env_dir == tmp_path / "env"
    assert request.hook_runner == "warm", "an option given wins over the variable"
    assert request.env_ttl is None


def test_a_bad_variable_is_a_usage_error_before_anything_starts(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "kiln", str(tmp_path)],
        env={**os.environ, "KILN_HOOK_RUNNER": "lukewarm"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        "kiln: error: KILN_HOOK_RUNNER='lukewarm' is not a hook runner; "
        "choose one of auto, warm, plain\n"
    )
