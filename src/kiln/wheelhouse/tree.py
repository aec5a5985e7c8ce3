"""Deciding what a wheelhouse run builds: inputs to pins, pins to a graph, nodes to keys.

Nothing here builds. :func:`plan_tree` resolves the input for each target
interpreter, adds the build requirements as nodes when they are built from
source, breaks build cycles with named seeds, and gives every node the key
of the wheel it would make; the run then asks the wheel cache, and schedules
only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import UsageError
from kiln.interpreters import Interpreter
from kiln.wheelhouse.graph import Graph
from kiln.wheelhouse.inputs import Inputs
from kiln.wheelhouse.model import FileRef, Node, NodeKind, Pin, Provenance
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.settings import PackageSettings, Settings

logger = logging.getLogger(__name__)


@dataclass
class PlannedNode:
    """A node and what its build needs, decided before anything is built."""

    node: Node
    interpreter: Interpreter
    settings: PackageSettings
    # The sdist archive on disk (hash-checked), for source nodes.
    sdist: Path | None = None
    sdist_sha256: str | None = None
    # Patch files that apply, in order.
    patches: tuple[Path, ...] = ()
    # Exact `name==version` pins of the build environment from the index (--build-deps index).
    build_pins: tuple[str, ...] = ()
    key: str | None = None
    # Its sdist holds compiled sources: a long build, started before the others.
    compiled: bool = False
    # For binary and seed nodes: the wheel taken from the index.
    wheel: FileRef | None = None
    # The --hash values given for the package: its sdist, or the wheel taken, must match.
    allowed: frozenset[str] = frozenset()


@dataclass
class TreePlan:
    """The whole run, decided."""

    graph: Graph
    planned: dict[str, PlannedNode]
    # (seed node id, the cycle it breaks) for the report.
    cycles: list[tuple[str, list[str]]] = field(default_factory=list)
    # The pins file written for each interpreter, so the run can be repeated exactly.
    pins_files: dict[str, Path] = field(default_factory=dict)


class TreePlanner:
    """Makes the :class:`TreePlan` of a request; holds what the steps share."""

    def __init__(
        self,
        request: WheelhouseRequest,
        *,
        cache_root: Path,
        scratch: Path,
        settings: Settings,
        environ: Mapping[str, str],
    ) -> None:
        self.request = request
        self.cache_root = cache_root
        self.scratch = scratch
        self.settings = settings
        self.environ = environ
        self.graph = Graph()
        self.planned: dict[str, PlannedNode] = {}
        # Build-requirement sets already resolved, per interpreter.
        self._build_sets: dict[tuple[str, tuple[str, ...]], list[Pin]] = {}

    def plan(self, interpreters: Sequence[Interpreter], pins_dir: Path) -> TreePlan:
        from kiln.wheelhouse.inputs import read_inputs
        from kiln.wheelhouse.publish import PINS_MARK, refuse_foreign
        from kiln.wheelhouse.resolution import write_pins

        request = self.request
        inputs = read_inputs(
            request.requirements, request.requirement_files, projects=request.projects
        )
        constraints = (*request.constraints, *inputs.constraints)
        pins_files: dict[str, Path] = {}
        for interpreter in interpreters:
            pins = self._runtime_pins(inputs, interpreter, constraints)
            path = pins_dir / f"pylock.{interpreter.tag}.toml"
            refuse_foreign(path, PINS_MARK)
            write_pins(pins, path)
            pins_files[interpreter.key] = path
            for pin in pins:
                self._add(pin, interpreter, NodeKind.RUNTIME, inputs.hashes)
        if request.build_deps == "source":
            self._expand_build_deps(constraints)
        cycles = self.graph.break_cycles()
        for seed, cycle in cycles:
            # The command line names every seed in its summary; the report has them.
            logger.debug(
                "build cycle %s: %s is taken as a wheel from the index (a seed)",
                " -> ".join(cycle),
                seed,
            )
        self._keys(constraints)
        return TreePlan(self.graph, self.planned, cycles, pins_files)

    # -- pins and nodes -------------------------------------------------------

    def _runtime_pins(
        self, inputs: Inputs, interpreter: Interpreter, constraints: Sequence[Path]
    ) -> list[Pin]:
        from kiln.wheelhouse.resolution import resolve

        pins = inputs.locked_for(interpreter.markers)
        if inputs.requirements:
            pins += resolve(
                inputs.requirements,
                interpreter,
                constraints=constraints,
                sdists=True,
                binary=self._binary_names(),
                environ=self.environ,
                scratch=self.scratch,
                cache_dir=self.cache_root,
                ttl=self._ttl,
            )
        seen: dict[str, Pin] = {}
        for pin in pins:
            other = seen.setdefault(pin.name, pin)
            if other.version != pin.version:
                raise UsageError(
                    f"{pin.name} is asked for at two versions, {other.version} and "
                    f"{pin.version}; one wheelhouse run builds one version per interpreter"
                )
        return list(seen.values())

    @property
    def _ttl(self) -> float:
        from kiln.wheelhouse.resolution import DEFAULT_TTL

        ttl = self.request.resolution_ttl
        return DEFAULT_TTL if ttl is None else ttl

    def _binary_names(self) -> frozenset[str]:
        return self.request.binary | self.settings.binary_names()

    def _add(
        self,
        pin: Pin,
        interpreter: Interpreter,
        kind: NodeKind,
        hashes: Mapping[str, set[str]] | None = None,
    ) -> PlannedNode:
        from kiln.wheelhouse.model import node_id

        existing = self.planned.get(node_id(pin.name, pin.version, interpreter.key))
        if existing is not None:
            return existing
        package = self.settings.settings_for(pin.name, pin.version)
        provenance = Provenance.SOURCE
        if package.skip:
            provenance = Provenance.SKIP
        elif self.request.takes_binary(pin.name) or package.binary:
            provenance = Provenance.BINARY
        node = Node(pin=pin, python=interpreter.key, kind=kind, provenance=provenance)
        planned = PlannedNode(node, interpreter, package, patches=tuple(package.patches))
        planned.allowed = frozenset((hashes or {}).get(pin.name, ()))
        if provenance is Provenance.SOURCE:
            self._fetch_source(planned)
        self.graph.add(node)
        self.planned[node.id] = planned
        return planned

    def _fetch_source(self, planned: PlannedNode) -> None:
        from kiln.wheelhouse.sources import build_facts, fetch, kept_sha256

        pin = planned.node.pin
        if pin.project_dir is not None:
            from kiln.project import read_build_system

            planned.node.build_requires = (
                *read_build_system(pin.project_dir).requires,
                *planned.settings.build_requires,
            )
            return
        if pin.sdist is None:
            raise UsageError(
                f"{pin.name} {pin.version} has no sdist to build from; "
                f"take its wheel with --binary {pin.name}"
            )
        _check_sdist_is_pin(pin, pin.sdist.filename)
        sdist = fetch(pin.sdist, self.cache_root, allowed=planned.allowed)
        planned.sdist = sdist
        planned.sdist_sha256 = kept_sha256(sdist)
        facts = build_facts(sdist)
        planned.compiled = facts.compiled
        planned.node.build_requires = (
            *facts.requires,
            # A self-hosting backend imports the project's own requirements: from
            # source, they must be built first (in index mode, the index has them).
            *(facts.self_requires if self.request.build_deps == "source" else ()),
            *planned.settings.build_requires,
        )

    def _expand_build_deps(self, constraints: Sequence[Path]) -> None:
        """Add each source node's build requirements as nodes, built before it."""
        pending = [p for p in self.planned.values() if p.node.provenance is Provenance.SOURCE]
        while pending:
            planned = pending.pop()
            node = planned.node
            if not node.build_requires:
                continue
            pins = self._resolve_build_set(
                node.build_requires, planned.interpreter, constraints, sdists=True
            )
            deps = []
            for pin in pins:
                before = len(self.planned)
                dep = self._add(pin, planned.interpreter, NodeKind.BUILD)
                deps.append(dep.node.id)
                if len(self.planned) > before and dep.node.provenance is Provenance.SOURCE:
                    pending.append(dep)
            node.build_deps = tuple(d for d in deps if d != node.id)

    def _resolve_build_set(
        self,
        requirements: Sequence[str],
        interpreter: Interpreter,
        constraints: Sequence[Path],
        *,
        sdists: bool,
    ) -> list[Pin]:
        from kiln.wheelhouse.resolution import resolve

        wanted = tuple(sorted(set(requirements)))
        memo = (interpreter.key, (str(sdists), *wanted))
        if memo not in self._build_sets:
            self._build_sets[memo] = resolve(
                list(wanted),
                interpreter,
                constraints=constraints,
                sdists=sdists,
                binary=self._binary_names(),
                environ=self.environ,
                scratch=self.scratch,
                cache_dir=self.cache_root,
                ttl=self._ttl,
            )
        return self._build_sets[memo]

    # -- keys -----------------------------------------------------------------

    def _keys(self, constraints: Sequence[Path]) -> None:
        """Every node's wheel key, dependencies first (a key covers its deps' keys)."""
        from kiln.wheelhouse.keys import wheel_key

        for node_id in self.graph.topological():
            planned = self.planned[node_id]
            node = planned.node
            if node.provenance in (Provenance.BINARY, Provenance.SEED):
                planned.wheel = self._binary_wheel(planned, constraints)
                continue
            if node.provenance is Provenance.SKIP:
                continue
            if self.request.build_deps == "source":
                build_env = [
                    f"{dep}:{self.planned[dep].key or self._wheel_sha(dep)}"
                    for dep in node.build_deps
                ]
            else:
                pins = self._resolve_build_set(
                    node.build_requires, planned.interpreter, constraints, sdists=False
                )
                planned.build_pins = tuple(f"{p.name}=={p.version}" for p in pins)
                build_env = list(planned.build_pins)
            patches = [p.read_bytes() for p in planned.patches]
            source_hash = planned.sdist_sha256 or _project_hash(
                node.pin, skipped=(self.request.outdir, self.cache_root)
            )
            planned.key = wheel_key(
                sdist_sha256=source_hash,
                patches=patches,
                settings=planned.settings.key_material(),
                build_env=build_env,
                interpreter=planned.interpreter.key,
                platform=planned.interpreter.platform,
            )

    def _wheel_sha(self, node_id: str) -> str:
        wheel = self.planned[node_id].wheel
        return (wheel.sha256 or wheel.url) if wheel is not None else "none"

    def _binary_wheel(self, planned: PlannedNode, constraints: Sequence[Path]) -> FileRef:
        """The index's wheel for a binary or seed node, for its interpreter."""
        pin = planned.node.pin
        wheels = _installable(pin.wheels, planned.interpreter)
        if not wheels:
            pins = self._resolve_build_set(
                [f"{pin.name}=={pin.version}"], planned.interpreter, constraints, sdists=False
            )
            wheels = [w for p in pins if p.name == pin.name for w in p.wheels]
        if not wheels:
            raise UsageError(
                f"{pin.name} {pin.version} has no wheel on the index for "
                f"{planned.interpreter.tag}, so it cannot be taken as a binary"
            )
        return wheels[0]


def _check_sdist_is_pin(pin: Pin, filename: str) -> None:
    """UsageError when the sdist's file name says another project or version (a
    lock file that says one thing and points at another): its wheel would not be
    the pin the report, the pins file and the key name. Legacy names unparsed."""
    from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
    from packaging.version import Version

    try:
        name, version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return
    if canonicalize_name(name) != pin.name or version != Version(pin.version):
        raise UsageError(
            f"{pin.name} {pin.version}: its sdist {filename} is {version} of {name}, "
            "not this pin; fix the lock file or the index"
        )


def _installable(wheels: Sequence[FileRef], interpreter: Interpreter) -> list[FileRef]:
    """The wheels ``interpreter`` can install, best first: a lock file made for
    several interpreters lists them all. The target runs on this machine, so its
    platforms are this machine's."""
    from packaging import tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    version = interpreter.version[:2]
    platforms = list(tags.platform_tags())
    supported: list[tags.Tag] = []
    if interpreter.implementation == "cpython":
        supported += tags.cpython_tags(version, platforms=platforms)
    supported += tags.compatible_tags(version, interpreter.tag, platforms)
    rank = {tag: index for index, tag in enumerate(supported)}
    ranked = []
    for order, ref in enumerate(wheels):
        try:
            wheel_tags = parse_wheel_filename(ref.filename)[3]
        except InvalidWheelFilename:
            continue
        # Another implementation's ABI kiln cannot list (pypy's): its own tag will do.
        scores = [
            rank.get(tag, len(rank))
            for tag in wheel_tags
            if tag in rank or (tag.interpreter == interpreter.tag and tag.platform in platforms)
        ]
        if scores:
            ranked.append((min(scores), order, ref))
    return [ref for _, _, ref in sorted(ranked, key=lambda item: item[:2])]


# Not a project's sources: version control, bytecode, and what a build writes there.
_NOT_SOURCES = frozenset({".git", ".hg", ".svn", "__pycache__"})
_BUILD_OUTPUT = frozenset({"build", "dist"})


def _project_hash(pin: Pin, *, skipped: Sequence[Path] = ()) -> str:
    """A project directory's key material: its files' names, sizes and times, less
    what a build leaves there (top-level build/ and dist/, *.egg-info) and the
    ``skipped`` directories (the wheelhouse and the cache, when inside it): a
    second run with nothing changed must find the same key."""
    import os

    from kiln.fingerprint import checksum

    assert pin.project_dir is not None
    root = pin.project_dir
    outside = {path.resolve() for path in skipped}
    parts = [b"dir\0"]
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        dirnames[:] = sorted(
            name
            for name in dirnames
            if not (
                name in _NOT_SOURCES
                or name.endswith(".egg-info")
                or (here == root and name in _BUILD_OUTPUT)
                or (here / name).resolve() in outside
            )
        )
        for name in sorted(filenames):
            try:
                info = (here / name).stat(follow_symlinks=False)
            except OSError:
                continue
            relative = os.path.relpath(here / name, root)
            parts.append(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return checksum(b"".join(parts))
