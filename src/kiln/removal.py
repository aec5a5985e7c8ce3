"""Removing what kiln made: a tree, or a directory's contents, never through a link.

Builds leave odd things behind: read-only directories (a backend's build tree),
a symlink where a directory was. kiln removes the link itself, never what it
names, and gives its user back the right to remove what is theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path


def remove_tree(path: Path) -> OSError | None:
    """Remove ``path`` and everything in it without following a symlink, also
    where a backend left read-only directories; the error if something stays.
    A symlink or a file at ``path`` is removed itself. kiln's one way to remove
    what builds wrote (staging, the stable place, the cache's buckets)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            path.unlink()  # a link or a file in its place: remove that, not what a link names
            return None
    except FileNotFoundError:
        return None
    except OSError as error:
        return error
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return None
    _allow_owner_everywhere(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return error
    return None


def _allow_owner_everywhere(top: Path) -> None:
    """Give the owner read, write and search on every directory under ``top``
    (what a backend made read-only), without following symlinks."""
    pending = [str(top)]
    while pending:
        directory = pending.pop()
        if not allow_owner(Path(directory)):
            continue
        try:
            with os.scandir(directory) as scan:
                pending.extend(e.path for e in scan if e.is_dir(follow_symlinks=False))
        except OSError:
            continue


def user_id() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def allow_owner(path: Path) -> bool:
    """Add u+rwx to ``path`` if it is a real directory this user owns; whether it is one."""
    try:
        status = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != user_id():
        return False
    if status.st_mode & stat.S_IRWXU != stat.S_IRWXU:
        # lstat said a directory; chmod would follow a link only if one replaced it
        # since, in a tree only this user can write into.
        with contextlib.suppress(OSError):
            path.chmod(stat.S_IMODE(status.st_mode) | stat.S_IRWXU)
    return True


def empty_directory(directory: Path) -> None:
    """Remove everything in ``directory`` (as :func:`remove_tree` does), keeping it."""
    for entry in list(directory.iterdir()):
        remove_tree(entry)
