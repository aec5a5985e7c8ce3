"""Which requirements an environment does not yet satisfy.

Used twice: to check the current interpreter with ``--no-isolation``, and to
skip an installer run when a backend's dynamic requirements are already met in
a build environment. Markers, extras and transitive requirements all count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import importlib.metadata

    from packaging.utils import NormalizedName


@dataclass(frozen=True)
class UnmetRequirement:
    """One requirement that is missing or installed at a version that does not fit."""

    requirement: str
    installed_version: str | None = None
    # The chain of requirements that led here, outermost first; empty for a direct one.
    required_by: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        text = self.requirement
        text += (
            " (not installed)"
            if self.installed_version is None
            else f" (installed: {self.installed_version})"
        )
        if self.required_by:
            text += f", required by {' -> '.join(self.required_by)}"
        return text


def unmet_requirements(
    requirements: Iterable[str],
    path: Sequence[str] | None = None,
    marker_environment: Mapping[str, str] | None = None,
) -> list[UnmetRequirement]:
    """Return each requirement, direct or transitive, not met on ``path``.

    ``path`` is a list of site directories (default: ``sys.path``).
    ``marker_environment`` defaults to the running interpreter's, which is also
    right for the virtual environments kiln creates from it.
    """
    # Imported here: a build whose environment is already known to fit never gets this far.
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    installed = _index_distributions(path)
    environment = (
        dict(marker_environment)
        if marker_environment is not None
        else cast("dict[str, str]", default_environment())
    )
    unmet: list[UnmetRequirement] = []
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()

    def visit(requirement: Requirement, extras: Iterable[str], chain: tuple[str, ...]) -> None:
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({**environment, "extra": extra}) for extra in (*extras, "")
        ):
            return
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            return
        seen.add(key)
        distribution = installed.get(name)
        if distribution is None:
            unmet.append(UnmetRequirement(str(requirement), None, chain))
            return
        version = distribution.version
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            unmet.append(UnmetRequirement(str(requirement), version, chain))
            return
        for dependency in distribution.requires or ():
            visit(Requirement(dependency), requirement.extras, (*chain, str(requirement)))

    for text in requirements:
        visit(Requirement(text), (), ())
    return unmet


def _index_distributions(
    path: Sequence[str] | None,
) -> dict[NormalizedName, importlib.metadata.Distribution]:
    import importlib.metadata

    from packaging.utils import canonicalize_name

    index: dict[NormalizedName, importlib.metadata.Distribution] = {}
    found = (
        importlib.metadata.distributions()
        if path is None
        else importlib.metadata.distributions(path=list(path))
    )
    for distribution in found:
        name = distribution.metadata["Name"]
        if name:
            # The first one found wins, as it does for imports.
            index.setdefault(canonicalize_name(name), distribution)
    return index
