"""installer_cache_environ: pip's and uv's caches moved into kiln's space when unwritable.

Tests run as root in CI containers, and root ignores permission bits, so an
unwritable cache is made here as a path below a regular file, which can never
be created. The real read-only mount is in test_readonly.py.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from kiln.installers import installer_cache_environ

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="checks the Linux default cache locations"
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path that can never be a directory: its parent is a file."""
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    return afile / "x"


@pytest.fixture
def fallback(tmp_path: Path) -> Path:
    return tmp_path / "kiln-space"


def base_environ(home: Path) -> dict[str, str]:
    """No configuration files, a home of our own, nothing else."""
    return {"HOME": str(home), "PIP_CONFIG_FILE": os.devnull, "PATH": "/usr/bin"}


def redirect_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "kiln.installers" and "not writable" in r.getMessage()
    ]


def test_unwritable_pip_cache_dir_is_moved(
    home: Path, blocked: Path, fallback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {**base_environ(home), "PIP_CACHE_DIR": str(blocked)}
    given = dict(environ)
    with caplog.at_level(logging.INFO, logger="kiln.installers"):
        result = installer_cache_environ(environ, fallback)
    assert result == {**given, "PIP_CACHE_DIR": str(fallback / "pip")}
    assert environ == given, "the argument is not modified"
    [message] = redirect_messages(caplog)
    assert f"pip cache {blocked} is not writable (from PIP_CACHE_DIR)" in message
    assert str(fallback / "pip") in message
    assert not fallback.exists(), "nothing is created"


def test_unwritable_uv_cache_dir_is_moved(
    home: Path, blocked: Path, fallback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {**base_environ(home), "UV_CACHE_DIR": str(blocked / "deeper")}
    with caplog.at_level(logging.INFO, logger="kiln.installers"):
        result = installer_cache_environ(environ, fallback)
    assert result == {**environ, "UV_CACHE_DIR": str(fallback / "uv")}
    [message] = redirect_messages(caplog)
    assert f"uv cache {blocked / 'deeper'} is not writable (from UV_CACHE_DIR)" in message


@linux_only
def test_unwritable_default_caches_are_moved(
    home: Path, blocked: Path, fallback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {**base_environ(home), "XDG_CACHE_HOME": str(blocked)}
    with caplog.at_level(logging.INFO, logger="kiln.installers"):
        result = installer_cache_environ(environ, fallback)
    assert result == {
        **environ,
        "PIP_CACHE_DIR": str(fallback / "pip"),
        "UV_CACHE_DIR": str(fallback / "uv"),
    }
    assert sorted(redirect_messages(caplog)) == [
        f"pip cache {blocked / 'pip'} is not writable (the default location); "
        f"using {fallback / 'pip'} instead",
        f"uv cache {blocked / 'uv'} is not writable (the default location); "
        f"using {fallback / 'uv'} instead",
    ]


@linux_only
def test_default_caches_under_home(home: Path, fallback: Path) -> None:
    (home / ".cache").write_text("a file where ~/.cache should be")
    result = installer_cache_environ(base_environ(home), fallback)
    assert result["PIP_CACHE_DIR"] == str(fallback / "pip")
    assert result["UV_CACHE_DIR"] == str(fallback / "uv")


def test_only_the_named_installers(
    home: Path, blocked: Path, fallback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {**base_environ(home), "PIP_CACHE_DIR": str(blocked), "UV_CACHE_DIR": str(blocked)}
    with caplog.at_level(logging.INFO, logger="kiln.installers"):
        result = installer_cache_environ(environ, fallback, installers=["uv"])
    assert result == {**environ, "UV_CACHE_DIR": str(fallback / "uv")}
    [message] = redirect_messages(caplog)
    assert message.startswith("uv cache")


@pytest.mark.parametrize(
    "cache",
    [
        pytest.param("existing", id="existing directory"),
        pytest.param("missing/deeper", id="creatable"),
    ],
)
def test_writable_caches_are_left_alone(
    home: Path, tmp_path: Path, fallback: Path, cache: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "existing").mkdir()
    environ = {
        **base_environ(home),
        "PIP_CACHE_DIR": str(tmp_path / cache),
        "UV_CACHE_DIR": str(tmp_path / cache),
    }
    with caplog.at_level(logging.INFO, logger="kiln.installers"):
        assert installer_cache_environ(environ, fallback) == environ
    assert redirect_messages(caplog) == []
    assert not (tmp_path / "missing").exists()


@linux_only
def test_writable_default_caches_are_left_alone(home: Path, fallback: Path) -> None:
    environ = base_environ(home)
    assert installer_cache_environ(environ, fallback) == environ
    environ["XDG_CACHE_HOME"] = str(home / "xdg")
    assert installer_cache_environ(environ, fallback) == environ


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores permission bits")
def test_directory_without_write_permission(home: Path, tmp_path: Path, fallback: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        environ = {**base_environ(home), "PIP_CACHE_DIR": str(locked / "pip")}
        result = installer_cache_environ(environ, fallback)
        assert result["PIP_CACHE_DIR"] == str(fallback / "pip")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("value", ["1", "true", "false", "0"])
def test_pip_no_cache_dir_leaves_pip_alone(
    home: Path, blocked: Path, fallback: Path, value: str
) -> None:
    # pip turns its cache off for any value of PIP_NO_CACHE_DIR, even "false".
    environ = {**base_environ(home), "PIP_CACHE_DIR": str(blocked), "PIP_NO_CACHE_DIR": value}
    assert installer_cache_environ(environ, fallback) == environ


@pytest.mark.parametrize(("value", "moved"), [("1", False), ("true", False), ("0", True)])
def test_uv_no_cache_leaves_uv_alone(
    home: Path, blocked: Path, fallback: Path, value: str, moved: bool
) -> None:
    environ = {**base_environ(home), "UV_CACHE_DIR": str(blocked), "UV_NO_CACHE": value}
    result = installer_cache_environ(environ, fallback)
    assert result["UV_CACHE_DIR"] == (str(fallback / "uv") if moved else str(blocked))


def test_pip_cache_dir_from_a_config_file(
    home: Path, tmp_path: Path, blocked: Path, fallback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "pip.conf"
    environ = {**base_environ(home), "PIP_CONFIG_FILE": str(config)}

    config.write_text(f"[global]\ncache-dir = {blocked}\n")
    with caplog.at_level(logging.INFO, logger="kiln.installers"):
        assert installer_cache_environ(environ, fallback)["PIP_CACHE_DIR"] == str(fallback / "pip")
    [message] = redirect_messages(caplog)
    assert f"(from cache-dir in {config})" in message

    # [install] wins over [global] for pip install; so does PIP_CACHE_DIR over both.
    config.write_text(f"[global]\ncache-dir = {blocked}\n[install]\ncache_dir = {tmp_path}\n")
    assert installer_cache_environ(environ, fallback) == environ
    config.write_text(f"[global]\ncache-dir = {tmp_path}\n")
    assert installer_cache_environ({**environ, "PIP_CACHE_DIR": str(blocked)}, fallback)[
        "PIP_CACHE_DIR"
    ] == str(fallback / "pip")

    # no-cache-dir in a file turns the cache off, like the variable.
    config.write_text(f"[global]\ncache-dir = {blocked}\nno-cache-dir = false\n")
    assert installer_cache_environ(environ, fallback) == environ


def test_pip_config_in_home_is_read(home: Path, blocked: Path, fallback: Path) -> None:
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(f"[global]\ncache-dir = {blocked}\n")
    environ = {k: v for k, v in base_environ(home).items() if k != "PIP_CONFIG_FILE"}
    environ["XDG_CONFIG_HOME"] = str(home / ".config")
    result = installer_cache_environ(environ, fallback)
    assert result["PIP_CACHE_DIR"] == str(fallback / "pip")
    # With PIP_CONFIG_FILE=/dev/null pip reads no file at all.
    environ["PIP_CONFIG_FILE"] = os.devnull
    assert "PIP_CACHE_DIR" not in installer_cache_environ(environ, fallback)


def test_tilde_is_the_given_home(home: Path, fallback: Path) -> None:
    (home / "afile").write_text("")
    environ = {**base_environ(home), "PIP_CACHE_DIR": "~/afile/pip", "UV_CACHE_DIR": "~/uv"}
    result = installer_cache_environ(environ, fallback)
    assert result["PIP_CACHE_DIR"] == str(fallback / "pip")
    assert result["UV_CACHE_DIR"] == "~/uv"
