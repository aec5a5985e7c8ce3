"""Where packages come from: the index options as the variables pip and uv read.

Every subprocess of a run (the resolver, each build's installer) reads the same
variables, so the options are set there once. uv has no variable for
``--no-index``: an empty local index as its default index does the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# A directory with no packages in it, under the wheelhouse bucket (kiln.layout's
# convention: a run holds empty-index.lock shared while it uses it).
EMPTY_INDEX = "empty-index"
# The variables that name an index, for pip and for uv.
INDEX_VARIABLES = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
)


def with_index_options(
    environ: Mapping[str, str],
    *,
    index_url: str | None,
    extra_index_urls: Sequence[str],
    find_links: Sequence[str],
    no_index: bool,
    empty_index: Path,
) -> dict[str, str]:
    """``environ`` with the command line's index options set for pip and uv."""
    result = dict(environ)
    if index_url:
        result["PIP_INDEX_URL"] = result["UV_DEFAULT_INDEX"] = index_url
        result.pop("UV_INDEX_URL", None)  # uv prefers it to UV_DEFAULT_INDEX
    if extra_index_urls:
        result["PIP_EXTRA_INDEX_URL"] = " ".join(extra_index_urls)
        result["UV_INDEX"] = " ".join(extra_index_urls)
    if find_links:
        # After the ones the environment names already: pip splits on spaces, uv on commas.
        pip_links = [*result.get("PIP_FIND_LINKS", "").split(), *find_links]
        uv_links = [*filter(None, result.get("UV_FIND_LINKS", "").split(",")), *find_links]
        result["PIP_FIND_LINKS"] = " ".join(pip_links)
        result["UV_FIND_LINKS"] = ",".join(uv_links)
    if no_index:
        result = only_find_links(result, empty_index)
    return result


def only_find_links(
    environ: Mapping[str, str], empty_index: Path, find_links: Sequence[Path] | None = None
) -> dict[str, str]:
    """``environ`` with every index taken away: only find-links (``find_links``,
    when given, instead of the environment's) are left."""
    result = {k: v for k, v in environ.items() if k not in INDEX_VARIABLES}
    empty_index.mkdir(parents=True, exist_ok=True)
    result["PIP_NO_INDEX"] = "1"
    result["UV_DEFAULT_INDEX"] = empty_index.as_uri()
    if find_links is not None:
        result["PIP_FIND_LINKS"] = " ".join(str(p) for p in find_links)
        result["UV_FIND_LINKS"] = ",".join(str(p) for p in find_links)
    return result
