"""kiln: a build frontend for Python projects.

The public API::

    import kiln

    result = kiln.build("path/to/project", outdir="dist")   # sdist, then wheel from it
    result = kiln.build("proj", distributions=["wheel"], installer="uv")
    metadata = kiln.get_metadata("proj")                     # core metadata as a dict

Errors are :class:`kiln.errors.KilnError` subclasses with an ``exit_code``.
The lower-level parts (:mod:`kiln.project`, :mod:`kiln.environments`,
:mod:`kiln.installers`, :mod:`kiln.hooks`) can be used on their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__version__ = "0.1.0"

TYPE_CHECKING = False  # spares importing typing: the command line starts up faster
if TYPE_CHECKING:
    import sys
    from typing import Any

    from kiln.errors import KilnError
    from kiln.request import BuildOptions, BuildRequest, Distribution

    # typing.Unpack is 3.11+; typing_extensions is only read by the type checker here.
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack
    from kiln.result import Artifact, BuildResult

__all__ = [
    "Artifact",
    "BuildRequest",
    "BuildResult",
    "KilnError",
    "__version__",
    "build",
    "get_metadata",
]

PathLike = str | os.PathLike[str]


def build(
    source: PathLike = ".",
    outdir: PathLike | None = None,
    distributions: Distribution | Iterable[Distribution] = (),
    **options: Unpack[BuildOptions],
) -> BuildResult:
    """Build ``source`` (a project directory or an sdist) into ``outdir``.

    ``distributions`` is any of ``"sdist"``, ``"wheel"``, ``"editable"``; empty
    means an sdist and then a wheel built from that sdist (from an sdist
    archive: a wheel). The keyword ``options`` are the fields of
    :class:`kiln.BuildRequest` (see :class:`kiln.request.BuildOptions`), as the
    command line's options; the ``KILN_*`` variables fill the unset ones, except
    ``KILN_ENV_DIR``, which the API does not read. Raises
    :class:`kiln.errors.KilnError`.
    """
    from kiln.builder import build as run_build
    from kiln.request import request_from_options

    return run_build(request_from_options("build", source, outdir, distributions, options))


def get_metadata(source: PathLike = ".", **options: Unpack[BuildOptions]) -> dict[str, Any]:
    """The wheel's core metadata, as parsed by ``packaging.metadata.parse_email``.

    The options are :func:`build`'s; a backend without a metadata hook builds a
    wheel to answer, which may compile.
    """
    from kiln.builder import prepare_metadata
    from kiln.request import request_from_options

    request = request_from_options("get_metadata", source, None, (), options)
    metadata = prepare_metadata(request).metadata
    assert metadata is not None
    return metadata


def __getattr__(name: str) -> Any:
    # Lazy, so that `kiln --version` imports nothing but this module.
    if name == "BuildRequest":
        from kiln.request import BuildRequest

        return BuildRequest
    if name in ("BuildResult", "Artifact"):
        from kiln import result

        return getattr(result, name)
    if name == "KilnError":
        from kiln.errors import KilnError

        return KilnError
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
