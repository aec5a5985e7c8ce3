"""Request-level parsing: config settings, the request's own checks, the API's options."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import get_type_hints

import pytest

import kiln
from kiln.errors import UsageError
from kiln.request import (
    POSITIONAL,
    BuildOptions,
    BuildRequest,
    parse_config_settings,
    request_from_options,
)


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


# --- The API's options are the request's fields --------------------------------


def test_the_api_options_are_the_request_fields_after_the_positional_ones() -> None:
    fields = [f.name for f in dataclasses.fields(BuildRequest)]
    assert fields[: len(POSITIONAL)] == list(POSITIONAL)
    assert list(BuildOptions.__annotations__) == fields[len(POSITIONAL) :]
    assert BuildOptions.__required_keys__ == frozenset()
    # The choices are the same Literal types.
    hints, options = get_type_hints(BuildRequest), get_type_hints(BuildOptions)
    for name in ("installer", "hook_runner", "compiler_cache"):
        assert options[name] == hints[name], name


def test_build_and_get_metadata_take_the_options_once() -> None:
    for function in (kiln.build, kiln.get_metadata):
        parameters = inspect.signature(function).parameters
        assert [p.kind for p in parameters.values()][-1] is inspect.Parameter.VAR_KEYWORD
        assert not [p for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def test_an_unknown_api_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="build\\(\\) got an unexpected keyword argument 'isolate'"):
        request_from_options("build", ".", None, (), {"isolate": False})


def test_api_options_become_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("KILN_CACHE_DIR", "KILN_ENV_TTL", "KILN_COMPILER_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("KILN_ENV_DIR", str(tmp_path / "not-read"))
    monkeypatch.setenv("KILN_HOOK_RUNNER", "plain")
    monkeypatch.chdir(tmp_path)
    request = request_from_options(
        "build", "proj", "out", "wheel", {"constraints": ["c.txt"], "cache_dir": "cache"}
    )
    assert request == BuildRequest(
        source=Path("proj"),
        outdir=Path("out"),
        distributions=("wheel",),
        constraints=(tmp_path / "c.txt",),
        cache_dir=Path("cache"),
        hook_runner="plain",
    ), "a bare distribution name is one distribution; KILN_ENV_DIR is not the API's"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("installer", "conda", "unknown installer 'conda'; choose one of auto, pip, uv"),
        ("hook_runner", "hot", "unknown hook runner 'hot'; choose one of auto, warm, plain"),
        ("compiler_cache", "distcc", "unknown compiler cache 'distcc'; choose one of auto,"),
    ],
)
def test_a_value_outside_the_choices_is_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        BuildRequest(**{field: value})  # type: ignore[arg-type]


def test_with_environment_defaults_fills_unset_fields_only(tmp_path: Path) -> None:
    environ = {
        "KILN_CACHE_DIR": str(tmp_path / "cache"),
        "KILN_ENV_TTL": "60",
        "KILN_COMPILER_CACHE": "ccache",
        "KILN_COMPILER_CACHE_REMOTE": "redis://host",
    }
    request = BuildRequest(compiler_cache="none").with_environment_defaults(environ)
    assert request == BuildRequest(
        cache_dir=tmp_path / "cache",
        env_ttl=60.0,
        compiler_cache="none",
        compiler_cache_remote="redis://host",
    )
    unchanged = BuildRequest(hook_runner="warm")
    assert unchanged.with_environment_defaults({"KILN_HOOK_RUNNER": "plain"}) is unchanged
