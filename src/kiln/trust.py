"""Whether a path in kiln's cache may be trusted: made by this user, and
changeable by no one else.

kiln runs what its cache holds (environments, the head start's plan) and
empties directories there, so a cache another local user can write is a way to
run code as its owner, or to have kiln delete the owner's files. The rules are
those of ssh and git's ``safe.directory``: the cache directory, and every entry
kiln is about to trust, run or empty, must be owned by the current user and
not writable by group or others, every directory above the cache must be safe
from other users too, and no symbolic link kiln did not make is followed.
Each check returns what is wrong, as one line with the fix, or None.

Standard library only and cheap (a few ``lstat`` calls): the command line runs
these checks before it imports the rest of kiln. On Windows, where ``st_uid``
and the mode bits say nothing about other users, nothing is checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kiln.fingerprint import RECORD_NAME

_CHOOSE_ANOTHER = "choose another cache directory with --cache-dir or KILN_CACHE_DIR"
# Group or others may write (or, for a directory, add and remove entries).
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
# Group or others may enter the directory, so what it holds is within their reach.
_ENTERABLE_BY_OTHERS = stat.S_IXGRP | stat.S_IXOTH


def _user() -> int | None:
    """The effective user id, or None where ownership is not checked."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def root_problem(root: Path) -> str | None:
    """What makes the existing cache directory ``root`` untrustworthy, if anything.

    ``root`` may itself be a symbolic link (a cache on another disk), but only
    one the user or the system made: a link another user planted could be
    pointed anywhere later.
    """
    user = _user()
    if user is None:
        return None
    try:
        link = root.lstat()
        if stat.S_ISLNK(link.st_mode) and link.st_uid not in (user, 0):
            return (
                f"cache directory {root} is a symbolic link owned by another user "
                f"(uid {link.st_uid}), who could point it anywhere; {_CHOOSE_ANOTHER}"
            )
        status = root.stat()
    except OSError as error:
        return f"cannot use cache directory {root}: {error.strerror or error}"
    if not stat.S_ISDIR(status.st_mode):
        return f"cache directory {root} is not a directory; {_CHOOSE_ANOTHER}"
    if status.st_uid != user:
        return (
            f"cache directory {root} is owned by another user (uid {status.st_uid}); "
            f"kiln only uses a cache directory you own: {_CHOOSE_ANOTHER}"
        )
    if status.st_mode & _WRITABLE_BY_OTHERS:
        return (
            f"cache directory {root} is writable by group or others "
            f"(mode {stat.S_IMODE(status.st_mode):04o}), so another user could change "
            f"what kiln runs: make it yours alone with chmod 700 {root}, or {_CHOOSE_ANOTHER}"
        )
    return _ancestors_problem(root, user)


def _ancestors_problem(root: Path, user: int) -> str | None:
    """What lets another user swap ``root`` for a directory of theirs, if anything.

    Whoever may rename entries in a directory above the cache can exchange the
    cache for a directory they made, between kiln's checks and its use of what
    they checked (``renameat2(RENAME_EXCHANGE)`` does it atomically, millions of
    times a second). So, as ssh's StrictModes asks of the path to a key, every
    directory above the cache, as named and as resolved, must be the user's or
    root's, and writable by no one else unless sticky (``/tmp``: there, only an
    entry's owner may rename it).
    """
    seen: set[Path] = set()
    for path in (root.absolute(), Path(os.path.realpath(root))):
        for ancestor in path.parents:
            if ancestor in seen:
                continue
            seen.add(ancestor)
            try:
                status = ancestor.stat()
            except OSError:
                continue  # the cache directory's own checks say what is wrong
            mode = status.st_mode
            if status.st_uid not in (user, 0):
                why = f"is owned by another user (uid {status.st_uid})"
            elif mode & _WRITABLE_BY_OTHERS and not mode & stat.S_ISVTX:
                why = f"is writable by group or others (mode {stat.S_IMODE(mode):04o})"
            else:
                continue
            return (
                f"cache directory {root} is inside {ancestor}, which {why}, so another "
                f"user could swap the cache for a directory of theirs: {_CHOOSE_ANOTHER}"
            )
    return None


def entry_problem(
    path: Path,
    *,
    directory: bool | None,
    exposed: bool = True,
    where: str = "kiln's cache",
    otherwise: str | None = None,
) -> str | None:
    """What makes ``path``, an entry kiln made in its cache (a directory, a file, or
    None: either), untrustworthy, if anything; None also when it does not exist.

    ``exposed``: other users can reach it (some directory above it lets them
    in); where they cannot, a mode that would let them write does no harm.
    ``where`` and ``otherwise`` name the place for the message (an --env-dir) and
    the way out besides fixing the entry (by default: another cache directory).
    """
    otherwise = otherwise or _CHOOSE_ANOTHER
    user = _user()
    if user is None:
        return None
    try:
        status = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot check {path} in {where}: {error.strerror or error}"
    if stat.S_ISLNK(status.st_mode):
        return (
            f"{path} in {where} is a symbolic link, which kiln never makes there; "
            f"remove it (rm {path}) or {otherwise}"
        )
    if directory is not None:
        is_kind = stat.S_ISDIR(status.st_mode) if directory else stat.S_ISREG(status.st_mode)
        if not is_kind:
            kind = "directory" if directory else "file"
            return f"{path} in {where} is not a {kind}; remove it or {otherwise}"
    if status.st_uid != user:
        return (
            f"{path} in {where} is owned by another user (uid {status.st_uid}); "
            f"remove it (rm -r {path}) or {otherwise}"
        )
    if exposed and status.st_mode & _WRITABLE_BY_OTHERS:
        return (
            f"{path} in {where} is writable by group or others "
            f"(mode {stat.S_IMODE(status.st_mode):04o}): chmod go-w {path}, "
            f"or {otherwise}"
        )
    return None


def enterable_by_others(path: Path) -> bool:
    """Whether users other than the owner may enter directory ``path`` (True when unknown)."""
    try:
        return bool(path.stat().st_mode & _ENTERABLE_BY_OTHERS)
    except OSError:
        return True


def interpreter_problem(python: Path, environments: Path) -> str | None:
    """What makes ``python`` other than the interpreter of a kiln-made environment
    in the bucket ``environments`` (itself checked by the caller), if anything.

    The environment's directories and its interpreter must be the user's; the
    interpreter is a link venv made (to the Python it was made from), followed.
    """
    env = python.parent.parent
    if env.parent != environments or python.name not in ("python", "python.exe"):
        return f"{python} is not the interpreter of an environment in {environments}"
    exposed = enterable_by_others(environments)
    for path, directory in ((env, True), (python.parent, True), (env / RECORD_NAME, False)):
        problem = entry_problem(path, directory=directory, exposed=exposed)
        if problem is not None:
            return problem
        if not path.exists():
            return f"{path} is missing: {env} is not an environment kiln made"
    user = _user()
    if user is None:
        return None
    try:
        status = python.lstat()
    except OSError as error:
        return f"cannot check {python}: {error.strerror or error}"
    # A link's own mode means nothing; a copied interpreter's does.
    writable = not stat.S_ISLNK(status.st_mode) and status.st_mode & _WRITABLE_BY_OTHERS
    if status.st_uid != user or (exposed and writable):
        return f"{python} is not the user's own: {env} is not an environment kiln made"
    return None
