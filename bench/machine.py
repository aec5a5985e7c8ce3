"""Facts about the machine and the tools' versions, printed with the results."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from cells import REPO_DIR, log


def capture(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The first line of a command's output, or "?" when it fails."""
    try:
        result = subprocess.run(
            list(cmd),
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else "?"


def machine_info() -> dict[str, str]:
    info = {
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": platform.processor() or "?",
        "memory": "?",
        "load": "?",
    }
    try:
        info["nproc"] = str(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        info["nproc"] = str(os.cpu_count() or "?")
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        if model := re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE):
            info["cpu"] = model.group(1).strip()
    with contextlib.suppress(OSError):
        meminfo = Path("/proc/meminfo").read_text(encoding="utf-8", errors="replace")
        if total := re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE):
            info["memory"] = f"{int(total.group(1)) / 1024 / 1024:.1f} GiB"
    with contextlib.suppress(OSError):
        info["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


PYTHON_VERSION_CODE = "import platform as p; print(p.python_implementation(), p.python_version())"


def warn_if_busy(machine: Mapping[str, str]) -> None:
    with contextlib.suppress(ValueError, IndexError):
        load, cpus = float(machine["load"].split()[0]), int(machine["nproc"])
        if load > cpus / 4:
            log(
                f"bench: warning: load average {load:.2f} on {cpus} CPUs: something else is "
                "running, and the numbers will be noisy"
            )


def versions(python: str, kiln: Sequence[str], uv: str | None) -> dict[str, str]:
    """The version of every tool (first line of its ``--version``) and kiln's git commit."""

    def second_word(line: str) -> str:
        words = line.split()
        return words[1] if len(words) > 1 else line

    found = {
        "python": capture([python, "-c", PYTHON_VERSION_CODE]),
        "kiln": second_word(capture([*kiln, "--version"])),
        "uv": second_word(capture([uv, "--version"])) if uv else "not found",
        "build": second_word(capture([python, "-m", "build", "--version"])),
        "pip": second_word(capture([python, "-m", "pip", "--version"])),
    }
    git = ["git", "-C", str(REPO_DIR)]
    commit = capture([*git, "rev-parse", "--short", "HEAD"])
    if commit != "?":
        # capture() gives "?" for no output: a clean tree.
        dirty = capture([*git, "status", "--porcelain", "--untracked-files=all", "src"]) != "?"
        found["kiln"] += f" (git {commit}{' + uncommitted changes in src/' if dirty else ''})"
    return found


KILN_LOCATION_CODE = "import os, kiln; print(os.path.dirname(kiln.__file__))"


def kiln_fingerprint(python: str) -> str:
    """A hash of the installed kiln's Python files, to notice kiln changing mid-run (an
    editable install follows the working tree)."""
    where = capture([python, "-c", KILN_LOCATION_CODE])
    if where == "?" or not Path(where).is_dir():
        return "?"
    digest = hashlib.sha256()
    for path in sorted(Path(where).rglob("*.py")):
        digest.update(path.relative_to(where).as_posix().encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
