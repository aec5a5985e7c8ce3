"""Helpers for the tests: paths, and running the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kiln.interpreters import Interpreter


def error_line(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if line.startswith("kiln: error:")]
    return line


# Not a limit on how fast kiln is: a guard so that a kiln that hangs fails the test
# instead of holding the suite (the processes these tests start sleep 300 s).
HANG_GUARD_SECONDS = 240


def wait_for_file(path: Path, process: subprocess.Popen[str]) -> str:
    """The content of ``path`` once written (atomically), while ``process`` runs."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.05)
    return path.read_text()


TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
WHEELHOUSE = Path(os.environ.get("KILN_TEST_WHEELHOUSE", TESTS / "wheelhouse")).absolute()
SRC = TESTS.parent / "src"
INSTALLERS = ("pip", "uv")
# Seconds one kiln run may take in a test before it counts as hung.
RUN_TIMEOUT = 600.0


def run_kiln(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    timeout: float = RUN_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (``python -m kiln``) and capture what it prints; a run that
    takes over ``timeout`` seconds is a hang, and fails the test."""
    environ = dict(os.environ if env is None else env)
    return subprocess.run(
        [python, "-m", "kiln", *map(str, args)],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return sorted(archive.namelist())


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every path below ``directory`` with its content, to prove nothing changed."""
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(directory.rglob("*"))
    }


def pid_alive(pid: int, seconds: float = 5.0) -> bool:
    """Whether process ``pid`` still runs after up to ``seconds``.

    A killed child of a dead parent may linger as a zombie until reaped; that counts as gone.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        if _is_zombie(pid):
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def target_interpreter() -> Interpreter:
    """A CPython 3.12 as kiln describes one, never run: for unit tests that plan."""
    from kiln.interpreters import Interpreter

    return Interpreter(
        path=Path("/usr/bin/python3.12"),
        version=(3, 12, 4),
        implementation="cpython",
        platform="linux-x86_64",
        tag="cp312",
    )
