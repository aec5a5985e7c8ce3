"""Ending a child's process group: the one place kiln signals a group.

kiln starts every child (installers, hooks, warm workers) in a session of its
own, so the child's pid names its process group, and signalling the group
reaches whatever the child started. Cheap to import on purpose: the head start
(:mod:`kiln.headstart`) uses it before the command line imports the rest of kiln.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

# How long an interrupted child may take to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE_SECONDS = 5.0


def signal_group(pgid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to process group ``pgid``; nothing if it is gone (or not ours)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def end_process_group(pgid: int) -> None:
    """End whatever is left in the process group of a child that has exited.

    The group's number stays taken while any member is alive, so this reaches
    only that group (where there is no such group, nothing).
    """
    if os.name == "posix":
        signal_group(pgid, signal.SIGKILL)


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """Kill a child and its process group at once, with no grace period (it has
    done no work worth one: a worker started ahead that no hook took), and reap it."""
    if os.name == "posix":
        signal_group(process.pid, signal.SIGKILL)
    elif process.poll() is None:
        process.kill()
    process.wait()


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started in a session of its own, and everything in its process
    group: SIGTERM, a grace period, then SIGKILL. Whatever interrupts the wait
    (a second Ctrl-C) only makes it SIGKILL sooner."""
    if os.name != "posix":
        if process.poll() is None:
            process.kill()
            process.wait()
        return
    try:
        if process.poll() is None:
            signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(TERMINATE_GRACE_SECONDS)
    finally:
        # The leader is gone (or had its time); stragglers in its group get no second chance.
        signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(TERMINATE_GRACE_SECONDS)
