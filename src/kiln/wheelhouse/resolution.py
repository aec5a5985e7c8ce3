"""Requirements to pins, for one interpreter, with uv's resolver.

:func:`resolve` runs ``uv pip compile --format pylock.toml -p <interpreter>`` and
reads the lock it writes. A wheelhouse is built from sdists, so with
``sdists=True`` every package (but those the user takes as wheels, ``binary``)
must resolve to a version that has one: uv is run again with ``--no-binary NAME``
for every name the last resolution held, until that set of names stops changing.
(``--no-binary :all:`` does not do: it also bans the wheels of the build
requirements uv installs to read an sdist's metadata.) A package with no sdist at
all is an error naming it and ``--binary NAME``.

A resolution is kept under the kiln cache (``resolutions-v1/``), keyed on
everything that decides it (the requirements, the constraints' content, the
interpreter, the index configuration in the environment), for a day by default,
so that a second run with nothing changed does not run uv at all. A local
project or archive a requirement names is keyed by its files' names, sizes and
times (kiln.constraints.local_input), as cached environments are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kiln.errors import EnvironmentSetupError, KilnError, UsageError
from kiln.layout import RESOLUTIONS
from kiln.wheelhouse.model import FileRef, Pin

logger = logging.getLogger(__name__)

# As long as kiln keeps an unpinned environment (KILN_ENV_TTL's default).
DEFAULT_TTL = 24 * 60 * 60
# Bump when what is keyed, or how a resolution is stored, changes.
_FORMAT = 1
# Index settings in the environment that change what uv finds (uv.toml is keyed too).
_IGNORED_UV_VARIABLES = frozenset(
    {"UV_CACHE_DIR", "UV_NO_PROGRESS", "UV_CONCURRENT_DOWNLOADS", "UV_CONCURRENT_BUILDS"}
)
# How uv names a package it cannot find an sdist for.
_NO_SDIST = (
    re.compile(r"A source distribution is required for `([^`]+)`"),
    re.compile(r"Because (?:only )?([A-Za-z0-9._-]+)(?:[<>=!~][^ ]*)? has no source distribution"),
)
# Safety net: each round adds names, so the set settles well before this.
_MAX_ROUNDS = 20


class Interpreter(Protocol):
    """What resolution needs of kiln.interpreters.Interpreter."""

    @property
    def path(self) -> Path: ...

    @property
    def key(self) -> str: ...

    @property
    def version(self) -> tuple[int, int, int]: ...


class ResolutionError(UsageError):
    """The requirements cannot be resolved (as the resolver explained)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class NoSdistError(ResolutionError):
    """A package the tree needs has no sdist that fits, and was not taken as a wheel."""

    def __init__(self, names: Sequence[str], output: str = "") -> None:
        self.names = list(names)
        listed = ", ".join(self.names)
        flags = " ".join(f"--binary {name}" for name in self.names)
        super().__init__(
            f"no version of {listed} that fits the requirements has an sdist to build "
            f"from; take its wheel from the index with {flags}",
            output,
        )


def resolve(
    requirements: Sequence[str],
    interpreter: Interpreter,
    *,
    constraints: Sequence[Path] = (),
    sdists: bool,
    binary: frozenset[str] = frozenset(),
    environ: Mapping[str, str],
    scratch: Path,
    cache_dir: Path | None = None,
    ttl: float = DEFAULT_TTL,
    refresh: bool = False,
    uv: str | None = None,
) -> list[Pin]:
    """Pins for ``requirements`` on ``interpreter``, by name.

    ``scratch``: a directory of the run's own (uv's input and output files go
    there). ``cache_dir``: the kiln cache, where resolutions are kept for ``ttl``
    seconds (None: not kept); ``refresh`` resolves again anyway. ``binary``:
    canonical names that may resolve to a wheel-only version.
    """
    from packaging.utils import canonicalize_name

    binary = frozenset(canonicalize_name(name) for name in binary)
    if not requirements:
        return []
    if ":all:" in binary:
        sdists = False  # every package's wheel is taken: none needs an sdist
    stored = None
    if cache_dir is not None:
        key = resolution_key(requirements, interpreter, constraints, sdists, binary, environ)
        stored = cache_dir / RESOLUTIONS / f"{key}.toml"
        if not refresh and _fresh(stored, ttl):
            logger.debug("resolution for %s reused from %s", interpreter.path, stored)
            return read_lock_pins(stored)
    uv = uv or _find_uv()
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / "requirements.in"
    source.write_text("".join(f"{line}\n" for line in requirements), encoding="utf-8")
    output = scratch / "pylock.toml"
    compile_ = _Compiler(uv, interpreter, source, output, constraints, environ, scratch)
    # Wheels first: their metadata is read, never built, so this round is fast. A
    # package whose chosen version has no sdist is then resolved again with
    # --no-binary for it alone (uv then builds only its metadata, from sdists),
    # until every package built from source has one.
    no_binary: set[str] = set()
    pins = compile_(no_binary)
    for _ in range(_MAX_ROUNDS):
        if not sdists:
            break
        names = {p.name for p in pins if p.sdist is None and p.project_dir is None} - binary
        if not names:
            break
        if names <= no_binary:
            raise NoSdistError(sorted(names))
        no_binary |= names
        pins = compile_(no_binary)
    else:
        raise ResolutionError(
            f"resolving for {interpreter.path} did not settle after {_MAX_ROUNDS} rounds"
        )
    if stored is not None:
        # Written anew, not copied: uv's paths are relative to where it wrote its lock.
        _store(pins, stored)
    return pins


def resolution_key(
    requirements: Sequence[str],
    interpreter: Interpreter,
    constraints: Sequence[Path],
    sdists: bool,
    binary: frozenset[str],
    environ: Mapping[str, str],
) -> str:
    """A digest of everything that decides a resolution."""
    from kiln.constraints import constraint_inputs, local_input, local_target

    contents, local = constraint_inputs(constraints)
    # Project directories and local archives: a changed one resolves again.
    local += [target for line in requirements if (target := local_target(line)) is not None]
    data = {
        "format": _FORMAT,
        "requirements": list(requirements),
        "constraints": [hashlib.sha256(content).hexdigest() for content in contents],
        "local": [hashlib.sha256(local_input(target)).hexdigest() for target in local],
        "interpreter": interpreter.key,
        "sdists": sdists,
        "binary": sorted(binary),
        "index": _index_config(environ),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def _index_config(environ: Mapping[str, str]) -> dict[str, str]:
    config = {
        name: value
        for name, value in environ.items()
        if name.startswith("UV_") and name not in _IGNORED_UV_VARIABLES
    }
    if "UV_NO_CONFIG" not in environ:
        for path in _uv_config_files(environ):
            try:
                config[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue
    return config


def _uv_config_files(environ: Mapping[str, str]) -> list[Path]:
    home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    named = [Path(environ["UV_CONFIG_FILE"])] if "UV_CONFIG_FILE" in environ else []
    return [*named, Path(home) / "uv" / "uv.toml", Path("/etc/uv/uv.toml")]


def _fresh(path: Path, ttl: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < ttl
    except OSError:
        return False


def _store(pins: Sequence[Pin], stored: Path) -> None:
    """Keep ``pins`` at ``stored``, whole or not at all."""
    try:
        stored.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_pins(pins, stored, private=True)
    except OSError as error:
        logger.warning("could not keep the resolution in %s: %s", stored, error)


class _Compiler:
    """One ``uv pip compile`` call per set of --no-binary names."""

    def __init__(
        self,
        uv: str,
        interpreter: Interpreter,
        source: Path,
        output: Path,
        constraints: Sequence[Path],
        environ: Mapping[str, str],
        scratch: Path,
    ) -> None:
        from kiln.installers import installer_cache_environ

        self.interpreter = interpreter
        self.output = output
        self.command = [uv, "pip", "compile", "--format", "pylock.toml", "--no-header"]
        self.command += ["--quiet", "-p", str(interpreter.path), "-o", str(output)]
        for path in constraints:
            self.command += ["-c", str(path)]
        self.source = source
        tmp = scratch / "tmp"
        tmp.mkdir(exist_ok=True)
        self.environ = installer_cache_environ(environ, scratch / "uv-cache", installers=("uv",))
        self.environ.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp))

    def __call__(self, no_binary: set[str]) -> list[Pin]:
        command = list(self.command)
        for name in sorted(no_binary):
            command += ["--no-binary", name]
        command.append(str(self.source))
        logger.debug("resolving: %s", " ".join(command))
        self.output.unlink(missing_ok=True)
        try:
            completed = subprocess.run(
                command, env=self.environ, capture_output=True, text=True, check=False
            )
        except OSError as error:
            raise EnvironmentSetupError(f"cannot run uv ({command[0]}): {error}") from error
        if completed.returncode != 0:
            raise _failure(completed.stderr, self.interpreter)
        return read_lock_pins(self.output)


def _failure(output: str, interpreter: Interpreter) -> KilnError:
    names: list[str] = []
    for pattern in _NO_SDIST:
        for found in pattern.findall(output):
            if found not in names:
                names.append(found)
        if names:
            return NoSdistError(names, output)
    # uv explains over several lines ("error: ...", "cause: ...", "hint: ..."): one line here.
    reason = " ".join(output.split()).removeprefix("error: ") or "uv failed without a word"
    return ResolutionError(
        f"the requirements cannot be resolved for {interpreter.path}: {reason}", output
    )


def _find_uv() -> str:
    from kiln.installers import find_uv

    found = find_uv()
    if found is None:
        raise EnvironmentSetupError(
            "kiln wheelhouse resolves requirements with uv, which is not installed "
            "(pip install 'kiln-build[uv]', or put uv on PATH)"
        )
    return found


def read_lock_pins(path: Path) -> list[Pin]:
    """The pins of a pylock.toml (ours or uv's): a lock's markers are not evaluated."""
    from kiln.wheelhouse.inputs import read_lock

    return read_lock(path)


def write_pins(
    pins: Sequence[Pin], path: Path, *, requires_python: str | None = None, private: bool = False
) -> Path:
    """Write ``pins`` as a PEP 751 lock (name it ``pylock.toml`` or
    ``pylock.<name>.toml``), so that ``kiln wheelhouse -r PATH`` repeats the run.

    Replaced whole in one rename; ``private``: readable by the owner alone (in the
    cache). Returns ``path``.
    """
    lines = ['lock-version = "1.0"', 'created-by = "kiln"']
    if requires_python:
        lines.append(f"requires-python = {_string(requires_python)}")
    for pin in sorted(pins, key=lambda p: (p.name, p.version)):
        lines += ["", "[[packages]]", f"name = {_string(pin.name)}"]
        if pin.project_dir is None or pin.version != "0":  # "0": not known statically
            lines.append(f"version = {_string(pin.version)}")
        if pin.project_dir is not None:
            lines.append(f"directory = {{ path = {_string(str(pin.project_dir))} }}")
        if pin.sdist is not None:
            lines.append(f"sdist = {_file_table(pin.sdist)}")
        if pin.wheels:
            wheels = ", ".join(_file_table(wheel) for wheel in pin.wheels)
            lines.append(f"wheels = [{wheels}]")
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    mode = 0o600 if private else 0o666  # 0o666: the umask decides, as for any new file
    try:
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as out:
            out.write("\n".join(lines) + "\n")
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return path


def _file_table(ref: FileRef) -> str:
    fields = [f"name = {_string(ref.filename)}", f"url = {_string(ref.url)}"]
    if ref.sha256:
        fields.append(f"hashes = {{ sha256 = {_string(ref.sha256)} }}")
    return "{ " + ", ".join(fields) + " }"


def _string(text: str) -> str:
    # A JSON string is a TOML basic string (the escapes JSON writes are TOML's too).
    return json.dumps(text, ensure_ascii=False)
