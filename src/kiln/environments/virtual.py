"""Isolated build environments: virtual environments without pip in them."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import sysconfig
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.environments import BuildEnvironment
from kiln.errors import EnvironmentSetupError
from kiln.installers import Installer, installer_environ
from kiln.process import BuildLog
from kiln.requirements import unmet_requirements

if TYPE_CHECKING:
    from kiln.interpreters import Interpreter

logger = logging.getLogger(__name__)

# Variables that would let the outer world into an isolated environment.
_LEAKY_VARIABLES = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "__PYVENV_LAUNCHER__",
    "CONDA_PREFIX",
)


def create_virtualenv(path: Path, interpreter: Interpreter | None = None) -> Path:
    """Create a virtual environment at ``path`` and return its interpreter.

    The standard library's venv without pip: no ensurepip, a few milliseconds.
    Installers reach the environment from outside. From the running interpreter
    no subprocess; from another (``--python``), that interpreter's own venv.
    """
    if interpreter is not None:
        _create_with(interpreter, path)
    else:
        import venv

        try:
            venv.EnvBuilder(symlinks=os.name != "nt", with_pip=False).create(path)
        except (OSError, ValueError) as error:
            raise EnvironmentSetupError(
                f"cannot create a build environment at {path}: {error}"
            ) from error
    python = interpreter_path(path)
    if not python.exists():
        raise EnvironmentSetupError(f"the build environment at {path} has no {python.name}")
    return python


def _create_with(interpreter: Interpreter, path: Path) -> None:
    import subprocess

    links = "--copies" if os.name == "nt" else "--symlinks"
    command = [str(interpreter.path), "-I", "-m", "venv", "--without-pip", links, str(path)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise EnvironmentSetupError(
            f"cannot create a build environment at {path} with {interpreter.describe()}: {error}"
        ) from error
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentSetupError(
            f"cannot create a build environment at {path} with {interpreter.describe()}: {last}"
        )


def describe_python(interpreter: Interpreter | None) -> str:
    """The version environments are made with, for the log."""
    return interpreter.dotted_version if interpreter is not None else sys.version.split()[0]


def interpreter_path(env_dir: Path) -> Path:
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def site_packages(env_dir: Path, interpreter: Interpreter | None = None) -> list[str]:
    """The purelib and platlib directories of a virtual environment made by
    ``interpreter`` (default: this Python)."""
    if interpreter is not None:
        return interpreter.site_packages_in(env_dir)
    scheme = (
        "venv"
        if "venv" in sysconfig.get_scheme_names()
        else ("nt" if os.name == "nt" else "posix_prefix")
    )
    base = str(env_dir)
    paths = sysconfig.get_paths(
        scheme,
        vars={"base": base, "platbase": base, "installed_base": base, "installed_platbase": base},
    )
    return list(dict.fromkeys((paths["purelib"], paths["platlib"])))


class VirtualEnvironment:
    """A virtual environment that kiln installs build requirements into."""

    isolated = True
    # It does not last, or kiln keeps no notes in it.
    state_dir: Path | None = None

    def __init__(
        self,
        path: Path,
        *,
        installer: Installer,
        constraints: Sequence[Path],
        base_environ: Mapping[str, str],
        compile_bytecode: bool = False,
        interpreter: Interpreter | None = None,
    ) -> None:
        self.compile_bytecode = compile_bytecode
        # None: the running interpreter made it.
        self.interpreter = interpreter
        # Hooks run in the project directory: a relative path would point elsewhere.
        self.path = path.absolute()
        self.python = interpreter_path(self.path)
        self.installer = installer
        self.constraints = tuple(constraints)
        self._base_environ = dict(base_environ)
        # Requirements already handed to the installer in this environment.
        self.installed: list[str] = []

    def satisfy(self, requirements: Sequence[str], log: BuildLog) -> BuildEnvironment:
        if not requirements:
            return self
        # Scanning site-packages costs milliseconds; an installer run, a second.
        if not unmet_requirements(
            requirements, site_packages(self.path, self.interpreter), self.marker_environment
        ):
            logger.debug("already met: %s", ", ".join(requirements))
            return self
        self.installer.install(
            self.python,
            requirements,
            constraints=self.constraints,
            log=log,
            env=installer_environ(self._base_environ),
            compile_bytecode=self.compile_bytecode,
        )
        self.installed.extend(requirements)
        return self

    @property
    def marker_environment(self) -> Mapping[str, str] | None:
        """What requirement markers are evaluated against; None: the running Python's."""
        return self.interpreter.markers if self.interpreter is not None else None

    def hook_environ(self) -> dict[str, str]:
        environ = {k: v for k, v in self._base_environ.items() if k not in _LEAKY_VARIABLES}
        environ["VIRTUAL_ENV"] = str(self.path)
        environ["PATH"] = os.pathsep.join(
            [str(self.python.parent), *filter(None, [environ.get("PATH")])]
        )
        # A venv already hides user site-packages; this also covers odd site.py patches.
        environ["PYTHONNOUSERSITE"] = "1"
        return environ


class FreshVirtualEnvProvider:
    """A new virtual environment at ``path``, which must be absent or empty.

    What happens to it afterwards is its owner's business: a run directory
    removes it with itself, a user's --env-dir is emptied or kept.
    """

    def __init__(
        self,
        path: Path,
        *,
        installer: Installer,
        constraints: Sequence[Path],
        base_environ: Mapping[str, str],
        interpreter: Interpreter | None = None,
    ) -> None:
        self.location: Path | None = path
        self.interpreter = interpreter
        self.installer = installer
        self.constraints = constraints
        self.base_environ = base_environ

    @contextlib.contextmanager
    def open(self, log: BuildLog) -> Iterator[BuildEnvironment]:
        assert self.location is not None
        logger.info(
            "Creating build environment %s (%s, %s)",
            self.location,
            self.installer.name,
            describe_python(self.interpreter),
        )
        log.section(f"creating build environment at {self.location}")
        create_virtualenv(self.location, self.interpreter)
        yield VirtualEnvironment(
            self.location,
            installer=self.installer,
            constraints=self.constraints,
            base_environ=self.base_environ,
            interpreter=self.interpreter,
        )
