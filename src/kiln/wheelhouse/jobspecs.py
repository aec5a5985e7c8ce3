"""A planned node turned into the plain-data :class:`JobSpec` an executor runs.

The build environment is pinned by a constraints file of the job's own: the
exact versions the wheel's key was computed from (from the index), or, with
``--build-deps source``, the tree's own wheels and nothing else. The file's
content is part of kiln's environment key, so an environment made from the
index is never reused for a build that must use the tree's wheels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln.digests import file_sha256
from kiln.layout import WHEELHOUSE_RUNS, lock_beside
from kiln.locks import FileLock
from kiln.wheelhouse.indexes import only_find_links
from kiln.wheelhouse.model import JobSpec
from kiln.wheelhouse.request import WheelhouseRequest
from kiln.wheelhouse.tree import PlannedNode

SOURCES = "sources"


def job_spec(
    planned: PlannedNode,
    *,
    request: WheelhouseRequest,
    place: Path,
    cache_root: Path,
    environ: Mapping[str, str],
    dep_wheels: Sequence[Path],
    empty_index: Path,
    held: list[FileLock],
) -> JobSpec:
    """The job that builds ``planned``'s wheel; its files go under ``place``.
    ``held``: the locks this run keeps until it ends (its patched sources')."""
    node = planned.node
    place.mkdir(parents=True, exist_ok=True)
    outdir = place / "out"
    outdir.mkdir(exist_ok=True)
    job_environ = dict(environ)
    job_environ.update(planned.settings.env)
    constraints = [*request.constraints]
    pins_file = place / "build-env.txt"
    # Only what decides the environment's content: packages with the same build
    # requirements share one environment (and its warm workers).
    lines = ["# kiln wheelhouse: the build environment's exact content"]
    if request.build_deps == "source":
        links = place / "wheels"
        links.mkdir(exist_ok=True)
        for wheel in dep_wheels:
            _link(wheel, links / wheel.name)
            # The wheel's content, so a rebuilt dependency is a new environment.
            lines.append(f"# {wheel.name} sha256={file_sha256(wheel)}")
        job_environ = only_find_links(job_environ, empty_index, [links])
        lines += [_pin_of(wheel) for wheel in dep_wheels]
    else:
        lines += list(planned.build_pins)
    pins_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    constraints.append(pins_file)
    source = _source(planned, cache_root, place, held)
    from kiln.interpreters import to_json

    jobs = request.job_count
    return JobSpec(
        node=node.id,
        name=node.pin.name,
        version=node.pin.version,
        source=str(source),
        outdir=str(outdir),
        cache_dir=str(cache_root),
        # Always named: kiln's own interpreter named gives the same environment.
        python=str(planned.interpreter.path),
        interpreter=to_json(planned.interpreter),
        constraints=tuple(str(c) for c in constraints),
        config_settings=dict(planned.settings.config_settings),
        environ=job_environ,
        installer=request.installer,
        hook_runner=request.hook_runner,
        compiler_cache=request.compiler_cache,
        compiler_cache_remote=request.compiler_cache_remote,
        cpu_share=max(1, (os.cpu_count() or 1) // jobs),
    )


def _source(planned: PlannedNode, cache_root: Path, place: Path, held: list[FileLock]) -> Path:
    """The sdist, the project directory, or the sdist unpacked and patched at a
    stable path (so compiler caches hit from one run to the next), held by this
    run; while another run holds it (building it now), in the job's ``place``."""
    pin = planned.node.pin
    if pin.project_dir is not None:
        return pin.project_dir
    assert planned.sdist is not None
    if not planned.patches:
        return planned.sdist
    from kiln.wheelhouse.patches import patched_source

    # Beside the runs, under a label of its own (kiln.layout's convention: the
    # run holds sources.lock shared while it builds, so kiln cache clean spares it).
    stable = cache_root / WHEELHOUSE_RUNS / SOURCES / f"{pin.name}-{pin.version}-{planned.key}"
    stable.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(lock_beside(stable))
    if lock.acquire_exclusive(blocking=False):
        held.append(lock)
    else:
        # Unpacking over it would pull the tree from under the other run's build.
        stable = place / "source"
    return patched_source(planned.sdist, planned.patches, stable)


def _pin_of(wheel: Path) -> str:
    from packaging.utils import parse_wheel_filename

    name, version, _, _ = parse_wheel_filename(wheel.name)
    return f"{name}=={version}"


def _link(source: Path, target: Path) -> None:
    import shutil

    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
