"""The command line's own behaviour: help, version, usage errors (no builds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiln import __version__
from kiln.__main__ import main
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
