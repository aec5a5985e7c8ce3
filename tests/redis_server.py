"""A throwaway Redis server on loopback, for the compiler cache's remote storage tests.

``redis_server(tmp_path)`` starts ``redis-server`` on a free 127.0.0.1 port with
persistence off and its working directory under ``tmp_path``, yields its
``redis://`` URL once it answers PING, and stops it afterwards (SIGTERM, then
SIGKILL after a bounded wait). The test is skipped when redis-server is not
installed. :func:`redis_command` speaks just enough of the protocol to ask the
server simple questions (DBSIZE, PING) without a client library.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_SECONDS = 10.0
STOP_SECONDS = 5.0
# A free port can be taken between choosing it and the server binding it.
START_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_command(url_or_port: str | int, *words: str, timeout: float = 2.0) -> bytes:
    """Send one command to the server (RESP array of bulk strings); return its raw reply line."""
    port = url_or_port if isinstance(url_or_port, int) else int(url_or_port.rsplit(":", 1)[1])
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(word.encode())}\r\n{word}\r\n".encode() for word in words
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.rstrip(b"\r\n")


def dbsize(url: str) -> int:
    """How many keys the server holds."""
    reply = redis_command(url, "DBSIZE")
    assert reply.startswith(b":"), reply
    return int(reply[1:])


@contextlib.contextmanager
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A running Redis server on 127.0.0.1; yields ``redis://127.0.0.1:<port>``."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("needs redis-server (apt-get install redis-server)")  # see needs() in conftest
    directory = tmp_path / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    for _ in range(START_ATTEMPTS):
        port = free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    executable,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(directory),
                    "--daemonize",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if _wait_until_ready(process, port):
                yield f"redis://127.0.0.1:{port}"
                return
        finally:
            _stop(process)
    log_text = log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"redis-server did not start on loopback; its log ends:\n{log_text}")


def _wait_until_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether the server answers PING within STARTUP_SECONDS (False if it exited)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # e.g. the port was taken in the meantime
        with contextlib.suppress(OSError):
            if redis_command(port, "PING", timeout=0.5) == b"+PONG":
                return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_SECONDS)
