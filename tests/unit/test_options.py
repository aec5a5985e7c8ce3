"""kiln.options: the KILN_* variables, read once into a request's unset fields (no builds)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from kiln.errors import UsageError
from kiln.options import (
    COMPILER_CACHE_CHOICES,
    HOOK_RUNNER_CHOICES,
    INSTALLER_CHOICES,
    VARIABLES,
    environment_defaults,
)
from kiln.request import BuildRequest, CompilerCacheChoice, HookRunner, Installer

SRC = Path(__file__).parents[2] / "src" / "kiln"
UNSET = {f: getattr(BuildRequest(), f) for f in BuildRequest.__dataclass_fields__}


def test_the_tuples_are_the_request_literals() -> None:
    assert get_args(Installer) == INSTALLER_CHOICES
    assert get_args(HookRunner) == HOOK_RUNNER_CHOICES
    assert get_args(CompilerCacheChoice) == COMPILER_CACHE_CHOICES


def test_each_variable_fills_its_field(tmp_path: Path) -> None:
    environ = {
        "KILN_CACHE_DIR": str(tmp_path / "cache"),
        "KILN_ENV_DIR": str(tmp_path / "env"),
        "KILN_HOOK_RUNNER": "plain",
        "KILN_COMPILER_CACHE": "SCCACHE",
        "KILN_COMPILER_CACHE_REMOTE": "redis://host:6379",
    }
    assert environment_defaults(UNSET, environ) == {
        "cache_dir": tmp_path / "cache",
        "env_dir": tmp_path / "env",
        "hook_runner": "plain",
        "compiler_cache": "sccache",
        "compiler_cache_remote": "redis://host:6379",
    }
    assert environment_defaults(UNSET, {"KILN_ENV_TTL": "1.5"}) == {"env_ttl": 1.5}
    assert {field for _, field, _ in VARIABLES} <= set(UNSET), "each names a request field"


def test_options_given_win_and_empty_variables_are_unset(tmp_path: Path) -> None:
    given = {**UNSET, "cache_dir": tmp_path, "hook_runner": "warm", "compiler_cache": "none"}
    environ = {"KILN_CACHE_DIR": "/elsewhere", "KILN_HOOK_RUNNER": "plain"}
    assert environment_defaults(given, environ | {"KILN_COMPILER_CACHE": "ccache"}) == {}
    assert environment_defaults(UNSET, dict.fromkeys(environ, " ")) == {}
    # `--compiler-cache auto` takes the variable when it is set (docs/cli.md).
    auto = {**UNSET, "compiler_cache": "auto"}
    assert environment_defaults(auto, {"KILN_COMPILER_CACHE": "none"}) == {"compiler_cache": "none"}


def test_fields_not_asked_about_are_left_alone() -> None:
    # `kiln cache` asks about its cache directory only: a bad TTL is no concern of it.
    assert environment_defaults({"cache_dir": None}, {"KILN_ENV_TTL": "a day"}) == {}


def test_the_api_leaves_kiln_env_dir_alone(tmp_path: Path) -> None:
    environ = {"KILN_ENV_DIR": str(tmp_path)}
    assert environment_defaults(UNSET, environ, read_env_dir=False) == {}


@pytest.mark.parametrize(
    "fields", [{"isolation": False}, {"fresh_env": True}, {"env_dir": Path("env")}]
)
def test_the_ttl_is_read_only_for_a_cached_environment(fields: dict[str, object]) -> None:
    assert environment_defaults({**UNSET, **fields}, {"KILN_ENV_TTL": "a day"}) == {}


def test_the_ttl_is_not_read_when_kiln_env_dir_names_the_environment() -> None:
    environ = {"KILN_ENV_DIR": "/env", "KILN_ENV_TTL": "a day"}
    assert environment_defaults(UNSET, environ) == {"env_dir": Path("/env")}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KILN_ENV_TTL", "a day", "KILN_ENV_TTL='a day' is not a number of seconds"),
        (
            "KILN_HOOK_RUNNER",
            "hot",
            "KILN_HOOK_RUNNER='hot' is not a hook runner; choose one of auto, warm, plain",
        ),
        (
            "KILN_COMPILER_CACHE",
            "distcc",
            "KILN_COMPILER_CACHE='distcc' is not a compiler cache; "
            "choose one of auto, ccache, sccache, none",
        ),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        environment_defaults(UNSET, {variable: value})
    assert str(caught.value) == message
    assert caught.value.exit_code == 2


def _looked_up(node: ast.AST) -> ast.AST | None:
    """What ``node`` looks up, if it is ``MAPPING.get(KEY...)`` or ``MAPPING[KEY]``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        return node.args[0] if node.func.attr in ("get", "pop", "setdefault") else None
    return node.slice if isinstance(node, ast.Subscript) else None


def test_nothing_else_reads_the_build_variables() -> None:
    """The KILN_* build variables are looked up in kiln.options alone: every other
    module reads the request."""
    names = {variable for variable, _, _ in VARIABLES}
    constants = {"CACHE_DIR_ENV", "ENV_DIR_ENV", "ENV_TTL_ENV", "HOOK_RUNNER_ENV"}
    constants |= {"COMPILER_CACHE_ENV", "COMPILER_CACHE_REMOTE_ENV"}
    readers = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key = _looked_up(node)
            if (isinstance(key, ast.Constant) and key.value in names) or (
                isinstance(key, ast.Name) and key.id in constants
            ):
                readers.append(f"{path.relative_to(SRC).as_posix()}:{getattr(node, 'lineno', 0)}")
    assert [r for r in readers if not r.startswith("options.py:")] == []
