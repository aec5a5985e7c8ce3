"""A cached environment's fingerprint and record, cheap to import.

The head start (:mod:`kiln.headstart`) checks an environment with these before
it starts a worker there, before the rest of kiln is imported; so this module
uses the standard library's cheapest parts only.
"""

from __future__ import annotations

import os
import zlib

from kiln.records import EnvRecord

RECORD_NAME = "kiln-env.json"
LAST_USED_NAME = ".last-used"


def checksum(data: bytes) -> str:
    """64 bits of checksum, enough to tell accidental change or a different key apart.

    zlib's checksums, not hashlib's: loading OpenSSL would cost more than the rest
    of a warm build's bookkeeping, and nothing here defends against an attacker.
    """
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def fingerprint(env_dir: str | os.PathLike[str]) -> str:
    """A cheap digest of every file in the environment: names, sizes and mtimes.

    Bytecode (``__pycache__``) counts like any file: made once, when the environment
    is, and loaded by every later build. Bookkeeping at the top is left out: kiln's
    (``kiln-*``, ``.last-used``) and uv's ``.lock``. Taken on every reuse, so kept
    to a ``stat`` per file and plain strings.
    """
    root = os.fspath(env_dir)
    cut = len(root) + 1
    lines: list[str] = []
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as found:
                entries = sorted(found, key=_name)
        except OSError:
            lines.append(f"{directory[cut:]}\0unreadable\n")  # not silently left out
            continue
        top = directory == root
        for entry in entries:
            if top and _is_bookkeeping(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            lines.append(f"{entry.path[cut:]}\0{info.st_size}\0{info.st_mtime_ns}\n")
    return checksum("".join(lines).encode("utf-8", "surrogateescape"))


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _is_bookkeeping(name: str) -> bool:
    return name.startswith("kiln-") or name in (LAST_USED_NAME, ".lock")


def generation(env_dir: str) -> str | None:
    """Names the contents of the environment at ``env_dir`` as made, from its record:
    ``<path>@<created>`` (making or replacing it writes a new record with a new
    time); None without a record, where it does not last."""
    record = _record(env_dir)
    return None if record is None else f"{env_dir}@{record.generation}"


def unchanged(env_dir: str, generation: str) -> bool:
    """Whether the environment at ``env_dir`` is complete, fit, the ``generation``
    a plan was made in, and its files the ones its record fingerprinted: only then
    may code from it run ahead of kiln's own checks."""
    record = _record(env_dir)
    # A generation is "<path>@<created>"; the path is the one the plan names already.
    return (
        record is not None
        and not record.unfit
        and generation.rpartition("@")[2] == record.generation
        and fingerprint(env_dir) == record.fingerprint
    )


def _record(env_dir: str) -> EnvRecord | None:
    return EnvRecord.read(os.path.join(env_dir, RECORD_NAME))  # noqa: PTH118
