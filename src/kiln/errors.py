"""kiln's exceptions: one small hierarchy, each class carrying its exit code.

Every error kiln raises on purpose is a :class:`KilnError`. Its ``str()`` is a
message meant for a person (the CLI prints it after ``kiln: error:``), and its
``exit_code`` is the documented process exit code for that kind of failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_BACKEND = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143 and SIGHUP 129 (see Terminated)


class KilnError(Exception):
    """Base class for every error kiln reports to its user.

    ``log_path`` is the run's full log, when the error happened after it was opened.
    """

    exit_code: int = EXIT_BACKEND
    log_path: Path | None = None


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


class Terminated(KeyboardInterrupt):
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
