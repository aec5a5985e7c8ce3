"""A read-only world: run a command where every file system is read-only but one directory.

The command runs in a private mount namespace (``unshare --mount``, util-linux),
so nothing here touches the machine's own mounts. Inside it, ``writable`` is
bind-mounted onto itself, then every other writable mount (``/``, ``/tmp``,
``/dev/shm``, ``/run``, the home directory's, ...) is remounted read-only; only
the kernel's own pseudo file systems under ``/proc`` and ``/sys`` are left as
they are. A bind remount changes one mount's flag, not the file system's, so
``writable``'s own mount stays writable even when it sits under ``/tmp``.

Needs Linux, root (or CAP_SYS_ADMIN), ``unshare`` and ``mount``;
:func:`readonly_world_available` says why not otherwise.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# Exit status of the setup script when the world could not be made.
SETUP_FAILED = 125

# Run inside the new mount namespace by a fresh interpreter:
#   python -I -c _SETUP WRITABLE CWD COMMAND...
_SETUP = r"""
import os, re, subprocess, sys

writable, cwd, command = sys.argv[1], sys.argv[2], sys.argv[3:]
# Kernel pseudo file systems hold no files: they are left alone.
PSEUDO = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs",
          "securityfs", "pstore", "bpf", "fusectl", "configfs", "binfmt_misc", "hugetlbfs",
          "autofs", "efivarfs", "selinuxfs", "nsfs", "rpc_pipefs"}

def fail(message):
    sys.stderr.write(f"readonly world: {message}\n")
    sys.exit(125)

def mount(*args):
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    return done.returncode == 0, (done.stderr or done.stdout).strip()

def unescape(field):  # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)

def inside(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")

ok, why = mount("--bind", writable, writable)
if not ok:
    fail(f"cannot bind-mount {writable}: {why}")
with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
    mounts = []
    for line in mountinfo:
        fields = line.split()
        separator = fields.index("-")
        mounts.append((unescape(fields[4]), fields[5].split(","), fields[separator + 1]))
for target, options, fstype in mounts:
    if "rw" not in options or inside(target, writable):
        continue
    if fstype in PSEUDO or inside(target, "/proc") or inside(target, "/sys"):
        continue
    ok, why = mount("-o", "remount,bind,ro", target)
    if not ok:
        fail(f"cannot make {target} ({fstype}) read-only: {why}")
# A working directory entered before the bind mount would still be on the read-only mount.
os.chdir(cwd)
try:
    os.execvp(command[0], command)
except OSError as error:
    fail(f"cannot run {command[0]}: {error}")
"""

# Checks, from inside, that the world is what it claims to be; prints what is wrong.
_PROBE = r"""
import errno, os, sys, tempfile
from pathlib import Path

writable = Path(sys.argv[1])
must_fail = [Path(p) for p in sys.argv[2:]]
shared = ("/tmp", "/var/tmp", "/usr/tmp", "/dev/shm", "/run")
must_fail += [Path(p) for p in shared if Path(p).is_dir()]
must_fail += [Path.home(), Path.cwd()]
problems = []
for directory in must_fail:
    probe = directory / f".readonly-probe-{os.getpid()}"
    try:
        probe.touch()
    except OSError as error:
        if error.errno != errno.EROFS:
            problems.append(f"{directory}: {error}")
    else:
        probe.unlink()
        problems.append(f"{directory} is writable")
    if os.access(directory, os.W_OK):
        problems.append(f"os.access says {directory} is writable")
try:
    tempfile.mkdtemp()
except OSError:
    pass
else:
    problems.append("tempfile found a writable temporary directory")
try:
    (writable / "probe").write_text("ok")
    (writable / "sub").mkdir()
    (writable / "probe").unlink()
    (writable / "sub").rmdir()
except OSError as error:
    problems.append(f"{writable} is not writable: {error}")
if not os.access(writable, os.W_OK | os.X_OK):
    problems.append(f"os.access says {writable} is not writable")
print("\n".join(problems) or "ok")
"""


def run_in_readonly_world(
    command: Sequence[str],
    writable: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` where nothing but ``writable`` (an existing directory) can be written.

    ``cwd`` defaults to ``writable``. Output is captured as text. Exit status
    :data:`SETUP_FAILED` with a ``readonly world:`` message on stderr means the
    world could not be set up.
    """
    writable = Path(writable).resolve(strict=True)
    workdir = Path(cwd).resolve() if cwd is not None else writable
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-I",
            "-c",
            _SETUP,
            str(writable),
            str(workdir),
            *command,
        ],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@functools.cache
def readonly_world_available() -> str | None:
    """None when :func:`run_in_readonly_world` works here, else why it does not."""
    if not sys.platform.startswith("linux"):
        return "a read-only world needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "a read-only world needs root (to unshare the mount namespace and mount)"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"a read-only world needs {tool} (util-linux), which is not on PATH"
    tests = Path(__file__).parent
    with tempfile.TemporaryDirectory(prefix="kiln-readonly-probe-") as scratch:
        writable = Path(scratch) / "writable"
        writable.mkdir()
        try:
            probe = run_in_readonly_world(
                [sys.executable, "-I", "-c", _PROBE, str(writable), str(tests), scratch],
                writable,
                env=os.environ,
                cwd=tests,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as error:
            return f"cannot make a read-only world: {error}"
        if probe.returncode != 0 or probe.stdout.strip() != "ok":
            details = (probe.stdout + probe.stderr).strip().replace("\n", "; ")
            return f"cannot make a read-only world (exit {probe.returncode}): {details}"
        leftovers = [p.name for p in writable.iterdir()]
        if leftovers:
            return f"the read-only world's probe left {leftovers} behind"
    return None
