"""Wheel keys: they change when, and only when, one of their inputs changes."""

from __future__ import annotations

from typing import Any

import pytest

from kiln.wheelhouse.keys import WHEEL_KEY_FORMAT, key_inputs, wheel_key

BASE: dict[str, Any] = {
    "sdist_sha256": "a" * 64,
    "patches": [b"--- a/x\n+++ b/x\n", b"second"],
    "settings": {"config_settings": {"setup-args": ["-Dx=1"]}, "env": {"CFLAGS": "-O2"}},
    "build_env": ["setuptools==80.0", "cython==3.1.0"],
    "interpreter": "cp312-linux_x86_64-abc123",
    "platform": "linux_x86_64",
}


def key(**changes: Any) -> str:
    return wheel_key(**{**BASE, **changes})


def test_same_inputs_same_key() -> None:
    assert key() == key()
    assert len(key()) == 64 and int(key(), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"sdist_sha256": "b" * 64},
        {"patches": [b"--- a/x\n+++ b/x\n", b"second!"]},
        {"patches": [b"second", b"--- a/x\n+++ b/x\n"]},  # the same patches, another order
        {"patches": [b"--- a/x\n+++ b/x\n"]},
        {"settings": {"config_settings": {"setup-args": ["-Dx=2"]}, "env": {"CFLAGS": "-O2"}}},
        {"settings": {"config_settings": {"setup-args": ["-Dx=1"]}, "env": {"CFLAGS": "-O3"}}},
        {"build_env": ["setuptools==80.1", "cython==3.1.0"]},
        {"build_env": ["setuptools==80.0"]},
        {"interpreter": "cp313-linux_x86_64-abc123"},
        {"platform": "linux_aarch64"},
        {"format_version": WHEEL_KEY_FORMAT + 1},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_input_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_what_does_not_matter_does_not_change_the_key() -> None:
    # The build environment is a set; settings are a mapping; hex case is not content.
    assert key(build_env=["cython==3.1.0", "setuptools==80.0"]) == key()
    reordered = {"env": {"CFLAGS": "-O2"}, "config_settings": {"setup-args": ["-Dx=1"]}}
    assert key(settings=reordered) == key()
    assert key(sdist_sha256="A" * 64) == key()


def test_inputs_are_plain_data_for_the_report() -> None:
    inputs = key_inputs(**BASE)
    assert inputs["build_env"] == ["cython==3.1.0", "setuptools==80.0"]
    assert len(inputs["patches"]) == 2 and all(len(p) == 64 for p in inputs["patches"])
    assert inputs["format"] == WHEEL_KEY_FORMAT


def test_settings_json_cannot_encode_is_refused() -> None:
    with pytest.raises(TypeError):
        key(settings={"x": object()})
