"""Choosing an installer, and the warning when uv would bypass pip's index settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import kiln.installers
from kiln.errors import EnvironmentSetupError, UsageError
from kiln.installers import PipInstaller, UvInstaller, select_installer


def test_auto_prefers_uv_when_installed() -> None:
    assert kiln.installers.find_uv() is not None, "the test environment installs uv"
    assert isinstance(select_installer("auto"), UvInstaller)


def test_auto_falls_back_to_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kiln.installers, "find_uv", lambda: None)
    assert isinstance(select_installer("auto"), PipInstaller)


def test_uv_requested_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kiln.installers, "find_uv", lambda: None)
    with pytest.raises(EnvironmentSetupError, match="uv is not installed") as caught:
        select_installer("uv")
    assert caught.value.exit_code == 3


def test_unknown_installer() -> None:
    with pytest.raises(UsageError, match="unknown installer 'poetry'"):
        select_installer("poetry")


def uv_warnings(caplog: pytest.LogCaptureFixture, choice: str) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kiln"):
        select_installer(choice)
    return [r.getMessage() for r in caplog.records if "does not read pip's" in r.getMessage()]


def test_auto_warns_when_uv_would_ignore_pip_index_settings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert uv_warnings(caplog, "auto") == []
    monkeypatch.setenv("PIP_INDEX_URL", "https://private.example/simple")
    [warning] = uv_warnings(caplog, "auto")
    assert "PIP_INDEX_URL" in warning and "--installer pip" in warning
    # Asking for uv by name, or configuring uv's own index, is a choice: no warning.
    assert uv_warnings(caplog, "uv") == []
    monkeypatch.setenv("UV_INDEX_URL", "https://private.example/simple")
    assert uv_warnings(caplog, "auto") == []


def test_pip_config_files_are_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nextra-index-url = https://private.example/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    assert f"extra-index-url in {config}" in kiln.installers.pip_index_settings()
