"""What a wheelhouse run is asked to build: requirements, lock files and projects.

:func:`read_inputs` turns the command line's positionals and ``-r`` files into
:class:`Inputs`: requirement strings for the resolver, constraints files (handed
to the resolver as they are), the ``--hash`` values the sdists must match, pins
read from PEP 751 lock files (``pylock.toml``: nothing left to resolve) and
project directories (each a requirement on its directory, ``name @ file:///dir``:
the resolver reads its dependencies, and pins it with its directory, from which
the run builds it).

Requirement files are read the way pip reads them, for the features people use:
comments, line continuations, markers, ``-r``/``-c`` (relative to the including
file), ``--hash``. Anything else (``-e``, index options) is refused naming the
file and line: the index comes from the environment (``UV_*``, ``PIP_*``), as for
every kiln build.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from kiln.errors import ConfigError, UsageError
from kiln.wheelhouse.model import FileRef, Pin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# pip's comment rule: "#" at the start of a line or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")
# PEP 751: pylock.toml or pylock.<name>.toml.
_LOCK_NAME = re.compile(r"^pylock\.([^.]+\.)?toml$")
_HASH = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
_INCLUDES = {"-r": "-r", "--requirement": "-r", "-c": "-c", "--constraint": "-c"}


@dataclass
class Inputs:
    """Everything the command line asked for, read and checked."""

    # Requirement strings for the resolver (markers kept: the resolver evaluates them).
    requirements: list[str] = field(default_factory=list)
    # Constraints files, absolute; the resolver reads them (and what they include).
    constraints: list[Path] = field(default_factory=list)
    # Canonical name -> the sha256 values (lower-case hex) its sdist may have.
    hashes: dict[str, set[str]] = field(default_factory=dict)
    # Pins read from lock files, for every interpreter: see locked_for().
    locked: list[Pin] = field(default_factory=list)
    # Project directories to build (each is in requirements too, as a direct reference).
    projects: list[Path] = field(default_factory=list)
    # Pin id -> the PEP 508 marker a lock file gave the package.
    locked_markers: dict[str, str] = field(default_factory=dict)

    def locked_for(self, markers: Mapping[str, str]) -> list[Pin]:
        """The locked pins whose marker holds in ``markers`` (an interpreter's
        PEP 508 environment; empty: every pin)."""
        from packaging.markers import Marker

        if not markers:
            return list(self.locked)
        return [
            pin
            for pin in self.locked
            if pin.id not in self.locked_markers
            or Marker(self.locked_markers[pin.id]).evaluate(dict(markers))
        ]


def read_inputs(
    requirements: Sequence[str] = (),
    requirement_files: Sequence[Path] = (),
    *,
    projects: Sequence[Path] = (),
) -> Inputs:
    """Read the positionals (requirement strings, lock files, project directories),
    the ``-r`` files and the project directories named apart; UsageError or
    ConfigError naming the file (and line) at fault."""
    inputs = Inputs()
    for text in requirements:
        path = Path(text).expanduser()
        if path.is_dir() and (
            _looks_like_path(text) or any((path / name).is_file() for name in _PROJECT_FILES)
        ):
            _add_project(inputs, path)
        elif _LOCK_NAME.match(path.name) and path.is_file():
            _read_lock(inputs, path)
        else:
            inputs.requirements.append(_checked_requirement(text, f"requirement {text!r}"))
    for file in requirement_files:
        if _LOCK_NAME.match(file.name):
            _read_lock(inputs, file)
        else:
            _read_requirement_file(inputs, file, included_by=None, seen=set())
    for project in projects:
        _add_project(inputs, project)
    return inputs


# --- requirement files ----------------------------------------------------------------


def _read_requirement_file(
    inputs: Inputs, path: Path, *, included_by: str | None, seen: set[Path]
) -> None:
    key = path.resolve()
    if key in seen:
        return  # pip reads an included file once; a loop is not an error
    seen.add(key)
    where = f"requirements file {path}" + (f" (included by {included_by})" if included_by else "")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{where} cannot be read: {error}") from error
    for number, line in _logical_lines(text):
        at = f"{path}:{number}"
        words = line.split()
        option, target = _include(words)
        if option is not None:
            if target is None:
                raise UsageError(f"{at}: {words[0]} needs a file name")
            included = _included_path(path, target)
            if option == "-r":
                _read_requirement_file(inputs, included, included_by=at, seen=seen)
            else:
                inputs.constraints.append(included)
            continue
        if words[0].startswith("-"):
            raise UsageError(f"{at}: {_refusal(words[0])}")
        requirement, hashes = _split_hashes(line, at)
        requirement = _checked_requirement(requirement, at)
        inputs.requirements.append(requirement)
        if hashes:
            from packaging.requirements import Requirement
            from packaging.utils import canonicalize_name

            name = canonicalize_name(Requirement(requirement).name)
            inputs.hashes.setdefault(name, set()).update(hashes)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) with comments dropped and continuations joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        line = _COMMENT.sub("", raw)
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            yield start, joined
    joined = " ".join(part.strip() for part in pending).strip()
    if joined:
        yield start, joined


def _include(words: list[str]) -> tuple[str | None, str | None]:
    first = words[0]
    if first in _INCLUDES:
        return _INCLUDES[first], (words[1] if len(words) > 1 else None)
    for option in ("--requirement", "--constraint"):
        if first.startswith(option + "="):
            return _INCLUDES[option], first[len(option) + 1 :] or None
    if first[:2] in ("-r", "-c") and len(first) > 2 and not first.startswith("--"):
        return first[:2], first[2:].removeprefix("=")
    return None, None


def _included_path(including: Path, target: str) -> Path:
    parts = urlsplit(target)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if len(parts.scheme) > 1:
        raise UsageError(f"{including}: cannot include {target}: only local files are read")
    return (including.parent / Path(target).expanduser()).absolute()


def _split_hashes(line: str, at: str) -> tuple[str, list[str]]:
    """The requirement and its ``--hash=sha256:...`` values; other options refused."""
    requirement, _, options = line.partition(" --")
    words = ("--" + options).split() if options else []
    hashes: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--hash" and index + 1 < len(words):
            value, index = words[index + 1], index + 2
        elif word.startswith("--hash="):
            value, index = word[len("--hash=") :], index + 1
        else:
            raise UsageError(f"{at}: {_refusal(word)}")
        found = _HASH.match(value)
        if found is None:
            raise UsageError(
                f"{at}: --hash {value!r} is not sha256:<64 hex digits> "
                "(kiln checks sha256 hashes only)"
            )
        hashes.append(found.group(1).lower())
    return requirement.strip(), hashes


def _refusal(option: str) -> str:
    name = option.split("=", 1)[0]
    if name in ("-e", "--editable"):
        return f"{name}: editable requirements cannot go in a wheelhouse; name the directory"
    if name in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-index"):
        return (
            f"{name} is not read from requirement files; configure the index in the "
            "environment (UV_INDEX_URL, UV_FIND_LINKS, PIP_INDEX_URL, ...), which every "
            "build reads too"
        )
    return f"option {name} is not supported in a requirement file for kiln wheelhouse"


def _checked_requirement(text: str, where: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as error:
        # Its first line: packaging adds the text again with a caret under the fault.
        reason = str(error).splitlines()[0] if str(error) else "?"
        raise UsageError(f"{where}: not a valid requirement: {reason}") from error
    return text


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or "/" in text or text.endswith(".toml")


# --- projects ---------------------------------------------------------------------------


def _add_project(inputs: Inputs, path: Path) -> None:
    """The project becomes a requirement on its directory: the resolver reads its
    dependencies (asking the backend when they are dynamic) and pins it with
    ``directory``, which tells the run to build it from there."""
    from kiln.project import load_pyproject

    directory = path.resolve()
    if not directory.is_dir():
        raise UsageError(f"project directory {path} does not exist")
    if not any((directory / name).is_file() for name in _PROJECT_FILES):
        raise UsageError(f"{path} has no pyproject.toml, setup.py or setup.cfg: not a project")
    project = load_pyproject(directory).get("project")
    name = project.get("name") if isinstance(project, dict) else None
    # A name lets the requirement be PEP 508; without one uv takes the bare path.
    requirement = f"{name} @ {directory.as_uri()}" if isinstance(name, str) else str(directory)
    inputs.requirements.append(requirement)
    inputs.projects.append(directory)


def project_version(directory: Path) -> str:
    """A project's static ``[project].version``, else "0" (known once it is built)."""
    from kiln.project import load_pyproject

    try:
        project = load_pyproject(directory).get("project")
    except ConfigError:
        return "0"
    version = project.get("version") if isinstance(project, dict) else None
    return version if isinstance(version, str) else "0"


# --- PEP 751 lock files -----------------------------------------------------------------


def read_lock(path: Path) -> list[Pin]:
    """The pins of one PEP 751 lock file, whatever its name; markers not evaluated."""
    inputs = Inputs()
    _read_lock(inputs, path)
    return inputs.locked


def _read_lock(inputs: Inputs, path: Path) -> None:
    from packaging.utils import canonicalize_name

    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise UsageError(f"lock file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: invalid TOML: {error}") from error
    except OSError as error:
        raise UsageError(f"lock file {path} cannot be read: {error}") from error
    lock_version = str(data.get("lock-version", ""))
    if not lock_version.startswith("1."):
        raise UsageError(f"{path}: lock-version {lock_version!r} is not 1.x (PEP 751)")
    packages = data.get("packages", [])
    if not isinstance(packages, list):
        raise UsageError(f"{path}: 'packages' must be an array of tables")
    base = path.parent.absolute()
    for index, package in enumerate(packages):
        where = f"{path}: packages[{index}]"
        if not isinstance(package, dict) or not isinstance(package.get("name"), str):
            raise UsageError(f"{where} has no name")
        name = canonicalize_name(package["name"])
        where = f"{path}: package {name}"
        version = package.get("version")
        directory = package.get("directory")
        project_dir = None
        if isinstance(directory, dict) and isinstance(directory.get("path"), str):
            project_dir = (base / directory["path"]).resolve()
        if not isinstance(version, str):
            if project_dir is None:
                raise UsageError(f"{where} has no version")
            version = project_version(project_dir)
        _check_version(version, where)
        if "vcs" in package:
            raise UsageError(f"{where} comes from version control, which kiln cannot build yet")
        sdist = package.get("sdist")
        wheels = list(package.get("wheels", []))
        archive = package.get("archive")
        if archive is not None:
            # A direct reference to an archive: an sdist or a wheel, by its name.
            ref = _file_ref(archive, base, where + " archive")
            if ref.filename.endswith(".whl"):
                wheels.append(archive)
            elif sdist is None:
                sdist = archive
        pin = Pin(
            name=name,
            version=version,
            sdist=_file_ref(sdist, base, where + " sdist") if sdist is not None else None,
            wheels=tuple(_file_ref(wheel, base, where + " wheel") for wheel in wheels),
            project_dir=project_dir,
        )
        if pin.sdist is None and not pin.wheels and pin.project_dir is None:
            raise UsageError(f"{where} has no sdist, wheel or directory kiln can use")
        inputs.locked.append(pin)
        if isinstance(package.get("marker"), str):
            inputs.locked_markers[pin.id] = package["marker"]


def _check_version(version: str, where: str) -> None:
    """A locked version names the node, its files and its paths: PEP 440 only."""
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
    except InvalidVersion:
        raise UsageError(f"{where}: version {version!r} is not a version (PEP 440)") from None


def _file_ref(entry: Any, base: Path, where: str) -> FileRef:
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be a table")
    if isinstance(entry.get("url"), str):
        url = entry["url"]
    elif isinstance(entry.get("path"), str):
        url = (base / entry["path"]).resolve().as_uri()
    else:
        raise UsageError(f"{where} has neither url nor path")
    filename = entry.get("name")
    if not isinstance(filename, str):
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    hashes = entry.get("hashes", {})
    sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
    if sha256 is not None and not (isinstance(sha256, str) and _HASH.match(f"sha256:{sha256}")):
        raise UsageError(f"{where}: hashes.sha256 {sha256!r} is not 64 hex digits")
    return FileRef(url=url, filename=filename, sha256=sha256.lower() if sha256 else None)
