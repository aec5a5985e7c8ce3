"""The one writer of kiln's JSON files and the timings page: each replaced whole, atomically.

Their shapes are in :mod:`kiln.records`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when it is missing, unreadable, not a regular
    file or not an object."""
    from kiln.records import read_object

    return read_object(path) or {}


def write_json(
    path: Path, data: object, *, indent: int | None = None, private: bool = False
) -> None:
    """Replace ``path`` with ``data`` in one rename, so that a reader sees the old
    content or the new, never half of it. ``private``: readable by the owner alone.

    Raises OSError naming ``path`` (ENOSPC on a full disk), after removing the
    partial file.
    """
    text = json.dumps(data, indent=indent) + ("\n" if indent is not None else "")
    write_text(path, text, private=private)


def write_text(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename, as :func:`write_json` does."""
    # Named after the file and this process: concurrent writers never share one.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        descriptor = os.open(
            partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666
        )
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        partial.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        if error.filename is None:  # a write or a flush: say which file
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
