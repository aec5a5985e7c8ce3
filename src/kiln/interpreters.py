"""The interpreter a build targets, when it is not the one running kiln.

``find_interpreter(spec, environ)`` turns what the user wrote after ``--python``
(``3.12``, ``3.12.1``, ``cp312``, a path, or a name on ``PATH`` such as
``python3.12`` or ``pypy3``, else a pyenv version) into an :class:`Interpreter`:
the facts about it that build environments need, asked of the interpreter itself
once per process (one small subprocess) and kept in memory.

Nothing here is imported unless ``--python`` is given: a build for the running
interpreter asks no subprocess anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import UsageError

# Run by the candidate interpreter: stdlib only, and valid Python from 3.6 on, so
# that an old interpreter gets a clear "too old" rather than a SyntaxError.
_QUERY = r"""
import json, os, platform, sys, sysconfig
base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
if sys.prefix != sys.base_prefix and base.startswith(os.path.realpath(sys.prefix) + os.sep):
    # A venv's python before 3.11 may name itself as its base: find the real one.
    for name in ("python%d.%d" % sys.version_info[:2], "python3", "python"):
        candidate = os.path.join(sys.base_prefix, "bin", name)
        if os.path.exists(candidate):
            base = os.path.realpath(candidate)
            break
scheme = "venv" if "venv" in sysconfig.get_scheme_names() else (
    "nt" if os.name == "nt" else "posix_prefix")
root = os.path.join(os.sep, "kiln-venv-root")
keys = ("base", "platbase", "installed_base", "installed_platbase")
paths = sysconfig.get_paths(scheme, vars=dict.fromkeys(keys, root))
impl = sys.implementation
iver = "%d.%d.%d" % impl.version[:3]
if impl.version.releaselevel != "final":
    iver += impl.version.releaselevel[0] + str(impl.version.serial)
print(json.dumps({
    "executable": os.path.realpath(sys.executable),
    "base_executable": base,
    "version": list(sys.version_info[:3]),
    "sys_version": sys.version,
    "implementation": impl.name,
    "platform": sysconfig.get_platform(),
    "compilers": {v: sysconfig.get_config_var(v) or "" for v in ("CC", "CXX")},
    "site_packages": sorted({os.path.relpath(paths[k], root) for k in ("purelib", "platlib")}),
    "markers": {
        "implementation_name": impl.name,
        "implementation_version": iver,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
}))
"""

# The oldest Python kiln builds for (its own floor: the warm worker runs there too).
MINIMUM_VERSION = (3, 10)
# Seconds an interpreter has to answer the query.
QUERY_TIMEOUT = 30
_IMPLEMENTATION_TAGS = {"cpython": "cp", "pypy": "pp"}
_VERSION_SPEC = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_TAG_SPEC = re.compile(r"(cp|pp)(\d)(\d+)")
_PYENV_PYPY = re.compile(r"pypy(\d+)\.(\d+)(?:-|$)")


@dataclass(frozen=True)
class Interpreter:
    """A Python installation builds can target, as it describes itself."""

    # The interpreter's executable, links resolved: venvs are made from it.
    path: Path
    version: tuple[int, int, int]
    # sys.implementation.name: "cpython", "pypy".
    implementation: str
    # sysconfig.get_platform(), e.g. "linux-x86_64".
    platform: str
    # The interpreter part of a wheel tag: "cp312", "pp310".
    tag: str
    # sys.version in full: build and compiler included.
    sys_version: str = ""
    # A venv's purelib and platlib directories, relative to the venv.
    site_packages: tuple[str, ...] = ()
    # The PEP 508 marker environment (packaging.markers.default_environment()).
    markers: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    # Its sysconfig CC and CXX (with flags), which setuptools compiles with there.
    compilers: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """A stable identity: the tag, the platform and a short hash of the path and
        the full sys.version, so a rebuilt interpreter at the same path is another."""
        digest = hashlib.sha256(f"{self.path}\0{self.sys_version}".encode()).hexdigest()[:12]
        platform = re.sub(r"[^A-Za-z0-9]", "_", self.platform)
        return f"{self.tag}-{platform}-{digest}"

    @property
    def dotted_version(self) -> str:
        return ".".join(map(str, self.version))

    def describe(self) -> str:
        """``CPython 3.12.1 (/path/python3.12)``: for logs and errors."""
        name = {"cpython": "CPython", "pypy": "PyPy"}.get(self.implementation, self.implementation)
        return f"{name} {self.dotted_version} ({self.path})"

    def site_packages_in(self, env_dir: Path) -> list[str]:
        """The purelib and platlib directories of a venv at ``env_dir`` made from this."""
        return [str(env_dir / relative) for relative in self.site_packages]


# Answers by executable path, so that each interpreter is asked once per process.
_queried: dict[str, Interpreter] = {}


def to_json(interpreter: Interpreter) -> dict[str, Any]:
    """``interpreter`` as plain JSON data, for a process that builds for it (a
    wheelhouse job): :func:`remember` there spares it the query."""
    return {
        # The query's own names, which remember() reads back.
        "base_executable": str(interpreter.path),
        "version": list(interpreter.version),
        "implementation": interpreter.implementation,
        "platform": interpreter.platform,
        "sys_version": interpreter.sys_version,
        "site_packages": list(interpreter.site_packages),
        "markers": dict(interpreter.markers),
        "compilers": dict(interpreter.compilers),
    }


def remember(answer: Mapping[str, Any]) -> Interpreter | None:
    """Take :func:`to_json`'s data as the answer its interpreter would give, so that
    :func:`find_interpreter` with its path asks no process; None if it is not that
    data or names no file."""
    interpreter = _from_answer(dict(answer))
    if interpreter is None or not interpreter.path.is_file():
        return None
    _queried[os.path.realpath(interpreter.path)] = interpreter
    return interpreter


def find_interpreter(spec: str, environ: Mapping[str, str]) -> Interpreter:
    """The interpreter ``spec`` names; a UsageError naming ``spec`` when there is none.

    ``spec``: ``3.12`` or ``3.12.1`` (a version), ``cp312`` or ``pp310`` (a tag),
    a path (anything with a separator, or an existing file), or a command name
    looked up on ``environ``'s ``PATH``. Versions and tags are looked for on
    ``PATH`` (``python3.12``, ``pypy3.10``), then under pyenv
    (``$PYENV_ROOT``, else ``~/.pyenv``, ``versions/*``).
    """
    text = spec.strip()
    if not text:
        raise UsageError("--python needs a version, a path or a command name; it was empty")
    for candidate in _candidates(text, environ):
        interpreter = query(candidate)
        if interpreter is not None and _matches(interpreter, text):
            _check_supported(interpreter, text)
            return interpreter
    raise UsageError(f"--python {spec}: {_not_found(text)}")


def query(executable: Path) -> Interpreter | None:
    """What ``executable`` says of itself; None if it is not a Python that answers."""
    resolved = os.path.realpath(executable)
    if resolved in _queried:
        return _queried[resolved]
    try:
        completed = subprocess.run(
            [str(executable), "-I", "-S", "-c", _QUERY],
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT,
            check=False,
        )
        answer = json.loads(completed.stdout) if completed.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        answer = None
    interpreter = _from_answer(answer) if isinstance(answer, dict) else None
    if interpreter is not None:
        _queried[resolved] = interpreter
    return interpreter


def _from_answer(answer: dict[str, Any]) -> Interpreter | None:
    try:
        version = tuple(int(part) for part in answer["version"])
        implementation = str(answer["implementation"])
        prefix = _IMPLEMENTATION_TAGS.get(implementation, implementation[:2])
        return Interpreter(
            path=Path(str(answer["base_executable"])),
            version=(version[0], version[1], version[2]),
            implementation=implementation,
            platform=str(answer["platform"]),
            tag=f"{prefix}{version[0]}{version[1]}",
            sys_version=str(answer["sys_version"]),
            site_packages=tuple(str(p) for p in answer["site_packages"]),
            markers={str(k): str(v) for k, v in answer["markers"].items()},
            compilers={str(k): str(v) for k, v in answer["compilers"].items()},
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _candidates(spec: str, environ: Mapping[str, str]) -> Iterator[Path]:
    """Executables ``spec`` may name, best first."""
    wanted = _wanted_version(spec)
    if wanted is None:
        if os.sep in spec or (os.altsep and os.altsep in spec) or spec.startswith("~"):
            yield Path(spec).expanduser()
            return
        found = shutil.which(spec, path=environ.get("PATH", os.defpath))
        if found is not None:
            yield Path(found)
        elif Path(spec).is_file():
            yield Path(spec)
        return
    implementation, numbers = wanted
    major_minor = ".".join(numbers[:2])
    names = (
        [f"pypy{major_minor}", f"pypy{numbers[0]}"]
        if implementation == "pypy"
        else [f"python{major_minor}", f"python{numbers[0]}", "python"]
    )
    shims = _pyenv_root(environ) / "shims"
    for name in names:
        found = shutil.which(name, path=environ.get("PATH", os.defpath))
        # pyenv's shims are scripts that start pyenv (a tenth of a second each) to
        # run one of the versions below, which are looked at directly instead.
        if found is not None and Path(found).parent != shims:
            yield Path(found)
    yield from _pyenv_candidates(environ, implementation, numbers)


def _pyenv_root(environ: Mapping[str, str]) -> Path:
    """``$PYENV_ROOT``, else ``~/.pyenv``."""
    if environ.get("PYENV_ROOT"):
        return Path(environ["PYENV_ROOT"])
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".pyenv"


def _pyenv_candidates(
    environ: Mapping[str, str], implementation: str, numbers: tuple[str, ...]
) -> Iterator[Path]:
    """pyenv's installed versions that may match, newest first."""
    try:
        entries = list((_pyenv_root(environ) / "versions").iterdir())
    except OSError:
        return
    found = []
    for entry in entries:
        # CPython: "3.12.1"; PyPy: "pypy3.10-7.3.12" (the Python version first).
        match = (
            _PYENV_PYPY.match(entry.name)
            if implementation == "pypy"
            else _VERSION_SPEC.fullmatch(entry.name)
        )
        if match is None:
            continue
        have = tuple(g for g in match.groups() if g is not None)
        executable = entry / "bin" / ("pypy3" if implementation == "pypy" else "python3")
        if have[: len(numbers)] == numbers and executable.exists():
            found.append((tuple(int(n) for n in have), executable))
    for _, executable in sorted(found, reverse=True):
        yield executable


def _wanted_version(spec: str) -> tuple[str, tuple[str, ...]] | None:
    """(implementation, version numbers) for a version or tag spec; None otherwise."""
    match = _VERSION_SPEC.fullmatch(spec)
    if match is not None:
        return "cpython", tuple(g for g in match.groups() if g is not None)
    match = _TAG_SPEC.fullmatch(spec)
    if match is not None:
        implementation = "pypy" if match.group(1) == "pp" else "cpython"
        return implementation, (match.group(2), match.group(3))
    match = re.fullmatch(r"pypy(\d)\.(\d+)", spec)
    if match is not None:
        return "pypy", (match.group(1), match.group(2))
    return None


def _matches(interpreter: Interpreter, spec: str) -> bool:
    """Whether ``interpreter`` is what a version or tag ``spec`` asks for (paths and
    names match whatever they name)."""
    wanted = _wanted_version(spec)
    if wanted is None:
        return True
    implementation, numbers = wanted
    have = tuple(str(n) for n in interpreter.version)
    return interpreter.implementation == implementation and have[: len(numbers)] == numbers


def _check_supported(interpreter: Interpreter, spec: str) -> None:
    if interpreter.version[:2] < MINIMUM_VERSION:
        floor = ".".join(map(str, MINIMUM_VERSION))
        raise UsageError(
            f"--python {spec}: {interpreter.describe()} is older than Python {floor}, "
            "the oldest kiln builds for"
        )


def _not_found(spec: str) -> str:
    if _wanted_version(spec) is not None:
        return "no such interpreter on PATH or under pyenv"
    path = Path(spec).expanduser()
    if os.sep in spec or path.exists():
        if not path.exists():
            return f"{spec} does not exist"
        return f"{spec} is not a Python interpreter that kiln can run"
    return "no such command on PATH, and not a version like 3.12"
