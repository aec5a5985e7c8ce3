"""sccache's servers: a build's own, a server the user chose, and the user's own sccache.

sccache compiles in a server, which reads its settings when it starts and keeps
its counters per server (docs/how-it-works.md, "Statistics of one build" and
"Your own sccache").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kiln.compilers.cargo import RUSTC_WRAPPER_VARIABLES
from kiln.compilers.cmake import CMAKE_LAUNCHERS
from kiln.compilers.common import launcher_name
from kiln.errors import EnvironmentSetupError

logger = logging.getLogger(__name__)

# A bound for each sccache command that talks to a server.
SERVER_TIMEOUT = 60.0
# sccache's own default server port, when SCCACHE_SERVER_PORT does not say.
DEFAULT_PORT = 4226
# sun_path holds 108 bytes on Linux, 104 on macOS, the terminating NUL included.
_MAX_SOCKET_PATH = 100


class AddressInUseError(EnvironmentSetupError):
    """sccache's server could not bind its address: another server has it."""


def server_alive(environ: Mapping[str, str]) -> bool:
    """Whether an sccache server listens where ``environ`` points its client."""
    uds = environ.get("SCCACHE_SERVER_UDS")
    try:
        if uds:
            if os.name != "posix":
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(uds)
            return True
        port = int(environ.get("SCCACHE_SERVER_PORT") or DEFAULT_PORT)
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_private_server(
    executable: str, environ: dict[str, str], work_dir: Path, *, remote_backend: str | None
) -> None:
    """Start a build's own server on a fresh address, set into ``environ``: a socket
    in ``work_dir``, or a free loopback port where a socket cannot be had."""
    work_dir.mkdir(parents=True, exist_ok=True)
    socket_path = work_dir / "sccache.sock"
    if os.name == "posix" and len(os.fsencode(socket_path)) < _MAX_SOCKET_PATH:
        socket_path.unlink(missing_ok=True)
        environ["SCCACHE_SERVER_UDS"] = str(socket_path)
        start_server(executable, environ, remote_backend=remote_backend)
        return
    # A free loopback port can be taken before the server binds it: try again.
    for attempt in range(3):
        environ["SCCACHE_SERVER_PORT"] = str(_free_port())
        try:
            start_server(executable, environ, remote_backend=remote_backend)
            return
        except AddressInUseError:
            if attempt == 2:
                raise EnvironmentSetupError(
                    "could not start sccache's server: no free loopback port"
                ) from None


def start_server(
    executable: str, environ: Mapping[str, str], *, remote_backend: str | None = None
) -> None:
    """Start sccache's server with the settings in ``environ``.

    With kiln's own ``TMPDIR``, not the build's (the place's ``tmp``, emptied
    when the run ends, and maybe too long a path for the socket the starting
    client makes there), and in a session of its own, so that an interrupted
    kiln does not take it down before it is stopped.
    """
    server_environ = dict(environ)
    for name in ("TMPDIR", "TEMP", "TMP"):
        server_environ.pop(name, None)
        if name in os.environ:
            server_environ[name] = os.environ[name]
    try:
        result = subprocess.run(
            [executable, "--start-server"],
            env=server_environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SERVER_TIMEOUT,
            start_new_session=os.name == "posix",
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EnvironmentSetupError(f"could not start sccache's server: {error}") from error
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        logger.debug("started sccache's server: %s", output)
        return
    if "in use" in output.lower():  # "Server startup failed: Address in use"
        raise AddressInUseError(output)
    message = output.splitlines()[-1] if output else f"exit status {result.returncode}"
    if remote_backend is not None:
        # sccache 0.16 checks every storage level as its server starts, and times out.
        message += "; sccache does not start while its remote storage cannot be reached"
    raise EnvironmentSetupError(f"could not start sccache's server: {message}")


def read_stats(executable: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """``sccache --show-stats --stats-format json`` of the server ``environ`` points at."""
    try:
        result = subprocess.run(
            [executable, "--show-stats", "--stats-format", "json"],
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SERVER_TIMEOUT,
            check=False,
        )
        data = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:
        logger.debug("cannot read sccache's statistics: %s", error)
        return None
    return data if isinstance(data, dict) else None


def stop_server(executable: str, environ: Mapping[str, str]) -> None:
    """Stop the server ``environ`` points at, and remove its socket."""
    try:
        subprocess.run(
            [executable, "--stop-server"],
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SERVER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.debug("could not stop sccache's server: %s", error)
    if "SCCACHE_SERVER_UDS" in environ:
        with contextlib.suppress(OSError):
            Path(environ["SCCACHE_SERVER_UDS"]).unlink(missing_ok=True)


def users_sccache(environ: Mapping[str, str]) -> str | None:
    """The sccache that the user's own variables in ``environ`` run in front of a
    compiler, as an absolute path, or None.

    Looks at cargo's wrapper variables (``RUSTC_WRAPPER`` and the like), then the
    first word of ``CC``/``CXX`` and CMake's compiler launchers.
    """
    candidates = [v.strip() for name in RUSTC_WRAPPER_VARIABLES if (v := environ.get(name))]
    for compiler, cmake_launcher in CMAKE_LAUNCHERS.items():
        with contextlib.suppress(ValueError):
            candidates.extend(shlex.split(environ.get(compiler, ""))[:1])
        candidates.append(environ.get(cmake_launcher, "").split(";")[0].strip())
    for word in candidates:
        if word and launcher_name(word, environ) == "sccache":
            found = shutil.which(word, path=environ.get("PATH"))
            if found is not None:
                return os.path.abspath(found)  # noqa: PTH100
    return None


def start_users_sccache_server(environ: Mapping[str, str]) -> None:
    """Start the server of the user's own sccache for a build, unless it runs.

    ``environ`` is the build's environment. When its variables run sccache (see
    :func:`users_sccache`) and no server answers where they point the client,
    the first compile would start one with the build's ``TMPDIR``: too long a
    path for its socket (sccache issues #1309, #2541), and emptied after the run
    while the server lives on. So kiln starts it first, as your shell would, with
    the ``TMPDIR`` kiln itself was given. Failing to is not an error here: the
    build's compiles then try, and report what goes wrong.
    """
    executable = users_sccache(environ)
    if executable is None or server_alive(environ):
        return
    try:
        start_server(executable, environ)
    except EnvironmentSetupError as error:
        logger.info("%s (for the build's %s)", error, executable)
