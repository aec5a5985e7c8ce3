"""SHA-256 of files, for what crosses a trust boundary: sdists, wheels, patches."""

from __future__ import annotations

from pathlib import Path


def file_sha256(path: Path) -> str:
    """The lower-case hex SHA-256 of ``path``'s content, read in blocks."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
