"""Request-level parsing: config settings and the request's own checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import UsageError
from kiln.request import BuildRequest, parse_config_settings


def test_pairs_and_bare_keys() -> None:
    assert parse_config_settings(["a=1", "flag", "b=x=y"]) == {"a": "1", "flag": "", "b": "x=y"}


def test_repeated_keys_become_a_list() -> None:
    assert parse_config_settings(["k=1", "k=2", "k=3"]) == {"k": ["1", "2", "3"]}


def test_json_is_the_base_and_pairs_add_to_it() -> None:
    settings = parse_config_settings(["k=2", "new=v"], '{"k": "1", "nested": {"a": [1, 2]}}')
    assert settings == {"k": ["1", "2"], "nested": {"a": [1, 2]}, "new": "v"}


def test_json_list_values_are_extended() -> None:
    assert parse_config_settings(["k=c"], '{"k": ["a", "b"]}') == {"k": ["a", "b", "c"]}


@pytest.mark.parametrize(
    ("config_json", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), ('"s"', "JSON object")],
)
def test_bad_json(config_json: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_config_settings([], config_json)


def test_empty_key_is_refused() -> None:
    with pytest.raises(UsageError, match="has no key"):
        parse_config_settings(["=value"])


def test_unknown_distribution_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown distribution 'egg'"):
        BuildRequest(Path(), distributions=("wheel", "egg"))  # type: ignore[arg-type]


def test_installer_with_no_isolation_is_refused() -> None:
    with pytest.raises(UsageError, match="--installer has no effect"):
        BuildRequest(Path(), isolation=False, installer="uv")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"isolation": False, "env_dir": Path("e")}, "--env-dir names an isolated environment"),
        ({"isolation": False, "fresh_env": True}, "about isolated environments"),
        ({"isolation": False, "constraints": (Path("c.txt"),)}, "-c/--constraint applies"),
        ({"env_dir": Path("e"), "fresh_env": True}, "pick one"),
        ({"refresh": True, "fresh_env": True}, "--refresh re-resolves"),
    ],
)
def test_environment_options_that_contradict_each_other(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        BuildRequest(Path(), **options)  # type: ignore[arg-type]
