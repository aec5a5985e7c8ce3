"""kiln's exceptions: one small hierarchy, each class carrying its exit code.

Every error kiln raises on purpose is a :class:`KilnError`. Its ``str()`` is a
message meant for a person (the CLI prints it after ``kiln: error:``), and its
``exit_code`` is the documented process exit code for that kind of failure.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_BACKEND = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143 and SIGHUP 129 (see Terminated)


class KeptBuild:
    """Where a failed build was kept for `kiln debug`: its run directory,
    environment and log.

    A plain class, not a dataclass: the command line imports this module before
    it starts a warm worker ahead, and ``dataclasses`` would delay that.
    """

    __slots__ = ("environment", "log", "run_dir")

    def __init__(self, run_dir: Path, environment: Path | None, log: Path) -> None:
        self.run_dir = run_dir
        self.environment = environment
        self.log = log

    def __repr__(self) -> str:
        return f"KeptBuild({self.run_dir!r}, {self.environment!r}, {self.log!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeptBuild):
            return NotImplemented
        return (self.run_dir, self.environment, self.log) == (
            other.run_dir,
            other.environment,
            other.log,
        )

    def __hash__(self) -> int:
        return hash((self.run_dir, self.environment, self.log))


class KilnError(Exception):
    """Base class for every error kiln reports to its user.

    ``log_path`` is the run's full log, when the error happened after it was opened;
    ``kept_build`` where the failed build was kept, when it was; ``timings`` the
    seconds the failed build had spent so far (``BuildResult.timings``), when known.
    """

    exit_code: int = EXIT_BACKEND
    log_path: Path | None = None
    kept_build: KeptBuild | None = None
    timings: dict[str, float] | None = None


# --- exit code 2: the request or the project is wrong -----------------------


class UsageError(KilnError):
    """The request itself is wrong: a bad option, a missing or odd source path."""

    exit_code = EXIT_USAGE


class ConfigError(KilnError):
    """The project's build configuration is wrong (pyproject.toml and friends)."""

    exit_code = EXIT_USAGE


class SdistError(ConfigError):
    """An sdist archive is unsafe or malformed; nothing was extracted."""


class BackendUnavailableError(ConfigError):
    """The build backend named by the project could not be imported."""


class HookUnsupportedError(ConfigError):
    """The backend does not provide a hook the request needs (e.g. build_editable)."""


# --- exit code 3: the build environment could not be set up -----------------


class EnvironmentSetupError(KilnError):
    """The build environment could not be created or provisioned."""

    exit_code = EXIT_ENVIRONMENT


class InstallerError(EnvironmentSetupError):
    """The installer (pip or uv) failed; ``output`` holds what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class MissingRequirementsError(EnvironmentSetupError):
    """Requirements are not met in an environment kiln may not install into."""

    def __init__(self, message: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = list(missing)


class DiskFullError(EnvironmentSetupError):
    """No space left (ENOSPC), or the quota is used up (EDQUOT), on the file system
    holding ``directory``. ``hook`` and ``output_tail``: the hook that ran out of
    space, and its last lines, when it was one."""

    def __init__(
        self,
        message: str,
        *,
        directory: Path,
        hook: str | None = None,
        output_tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.directory = directory
        self.hook = hook
        self.output_tail = list(output_tail)


# The errno values that mean "this file system has no room for you".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
# How a Python traceback or a tool says it, for a child process's output.
DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "[Errno 28]", "[Errno 122]")


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def disk_full_error(
    error: OSError | None,
    candidates: Sequence[Path] = (),
    *,
    hook: str | None = None,
    output_tail: Sequence[str] = (),
    doing: str | None = None,
) -> DiskFullError:
    """A :class:`DiskFullError` naming the directory that is full: the one ``error``
    names, else the fullest of ``candidates`` (the places kiln or a hook writes to).
    ``hook`` or ``doing`` ("the installer"): who ran out of space, when not kiln."""
    written = Path(os.fsdecode(error.filename)) if error and error.filename else None
    directory = _existing_directory(written) if written else _fullest(candidates)
    quota = error is not None and error.errno != errno.ENOSPC
    what = "the disk quota is used up" if quota else "no space is left"
    place = f"on the file system holding {directory}" if directory else "on a file system"
    free = _free_bytes(directory) if directory else None
    detail = [f"{_size(free)} free there"] if free is not None else []
    if written is not None and written != directory:
        detail.insert(0, f"writing {written.name}")
    doing = f"the build backend's {hook} hook" if hook else doing
    prefix = f"{doing} ran out of disk space: " if doing else ""
    return DiskFullError(
        f"{prefix}{what} {place}"
        + (f" ({', '.join(detail)})" if detail else "")
        + "; free space there (`kiln cache prune` removes what earlier kiln runs left) "
        "or choose another directory (--cache-dir, -o/--outdir)",
        directory=directory or Path.cwd(),
        hook=hook,
        output_tail=output_tail,
    )


def _existing_directory(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return path.parent


def _free_bytes(directory: Path) -> int | None:
    try:
        stat = os.statvfs(directory)
    except (OSError, AttributeError):  # AttributeError: Windows has no statvfs
        return None
    return stat.f_bavail * stat.f_frsize


def _fullest(candidates: Sequence[Path]) -> Path | None:
    free = [(f, d) for d in candidates if (f := _free_bytes(d)) is not None]
    return min(free, key=lambda pair: pair[0])[1] if free else None


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


# --- exit code 1: the backend failed ----------------------------------------


class BackendError(KilnError):
    """A backend hook failed, or returned something kiln cannot accept.

    ``hook`` names the hook, ``log_path`` is the full log of the build (when one
    is kept) and ``output_tail`` holds the last lines the hook printed.
    """

    exit_code = EXIT_BACKEND

    def __init__(
        self,
        message: str,
        *,
        hook: str,
        log_path: Path | None = None,
        output_tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.hook = hook
        self.log_path = log_path
        self.output_tail = list(output_tail)


class HookFailedError(BackendError):
    """A hook raised an exception or its process exited with an error."""


class BadArtifactError(BackendError):
    """A hook named an artifact that is missing or has the wrong kind of name."""


# --- interrupted: 128 + the signal ------------------------------------------


class Interrupted(KeyboardInterrupt):
    """kiln was interrupted (Ctrl-C) while building; ``kept_build``: where the
    interrupted build was kept, when it was.

    A KeyboardInterrupt still, for every caller that handles Ctrl-C; the builder
    raises it in place of a plain KeyboardInterrupt once it kept something.
    """

    kept_build: KeptBuild | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED


class Terminated(Interrupted):
    """kiln was told to stop by a signal other than Ctrl-C's (SIGTERM, SIGHUP).

    A KeyboardInterrupt, so that every path that cleans up after Ctrl-C (stopping
    child processes, keeping the failed build) runs for it too. The command line
    raises it from its signal handler and exits with ``exit_code``, 128 + the signal.
    """

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
