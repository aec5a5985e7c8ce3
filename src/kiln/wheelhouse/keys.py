"""The wheel key: one hash over everything that decides what a build produces.

Two builds with the same key make the same wheel (up to timestamps), so the
wheel cache hands back the first one's wheel instead of building again. Every
input is listed in docs/wheelhouse.md ("Cache keys"); anything that changes the
wheel and is not an input here is a bug, and anything here that does not change
the wheel only costs a rebuild.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# Bumped when the key's inputs or their encoding change: every wheel is rebuilt once.
WHEEL_KEY_FORMAT = 1


def key_inputs(
    *,
    sdist_sha256: str,
    patches: Sequence[bytes],
    settings: Mapping[str, Any],
    build_env: Sequence[str],
    interpreter: str,
    platform: str,
    format_version: int = WHEEL_KEY_FORMAT,
) -> dict[str, Any]:
    """The key's inputs as plain data (what the report shows beside each key).

    ``patches``: each patch's content, in the order they are applied (order
    matters: the same patches in another order may not apply, or differently).
    ``settings``: the config settings and the environment variables that apply,
    as JSON-able data. ``build_env``: the build environment's exact
    ``name==version`` pins (or, for in-tree build dependencies, their wheel
    keys); their order does not matter, so they are sorted.
    """
    return {
        "format": format_version,
        "sdist_sha256": sdist_sha256.lower(),
        "patches": [hashlib.sha256(patch).hexdigest() for patch in patches],
        "settings": settings,
        "build_env": sorted(build_env),
        "interpreter": interpreter,
        "platform": platform,
    }


def wheel_key(
    *,
    sdist_sha256: str,
    patches: Sequence[bytes],
    settings: Mapping[str, Any],
    build_env: Sequence[str],
    interpreter: str,
    platform: str,
    format_version: int = WHEEL_KEY_FORMAT,
) -> str:
    """The wheel key (lower-case sha256 hex) over :func:`key_inputs`.

    Raises TypeError when ``settings`` holds something JSON cannot encode.
    """
    inputs = key_inputs(
        sdist_sha256=sdist_sha256,
        patches=patches,
        settings=settings,
        build_env=build_env,
        interpreter=interpreter,
        platform=platform,
        format_version=format_version,
    )
    return hash_inputs(inputs)


def hash_inputs(inputs: Mapping[str, Any]) -> str:
    """sha256 of ``inputs`` as canonical JSON (sorted keys, no spaces, ASCII only)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
