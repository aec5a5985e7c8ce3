"""The warm worker's imports ahead of hooks: the backend, what earlier hooks
imported, and the report of what each hook imports, for the next worker.

Loaded by ``kiln_worker.py`` from its own directory (not through ``sys.path``,
which the worker cleans), so standard library only, like the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

# Annotations only, as in the worker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .kiln_worker import Status


def import_backend(backend: str) -> str | None:
    """Import the backend's module as pyproject-hooks would; why not to fork, if any.

    A child forked after the import must be indistinguishable from a fresh
    interpreter that imported the backend itself. That fails when the import
    fails (every hook would repeat the failure), warns (pyproject-hooks records
    warnings raised during a hook, import included, and kiln shows them), or
    leaves threads behind (fork copies only the calling thread). Output is
    checked by kiln: nothing may come before the ready line.
    """
    import importlib
    import warnings

    module = backend.partition(":")[0]
    try:
        with warnings.catch_warnings(record=True) as caught:
            importlib.import_module(module)
    except (Exception, SystemExit) as error:
        return f"importing {module} failed ({type(error).__name__})"
    if any(issubclass(warning.category, UserWarning) for warning in caught):
        return f"importing {module} warns"
    if thread_count() > 1:
        return f"importing {module} starts threads"
    return None


def warm_imports(path: str, backend: str) -> list[str]:
    """The modules listed for ``backend`` in kiln's file at ``path`` (none if unreadable)."""
    try:
        with open(path, encoding="utf-8") as stream:  # noqa: PTH123
            modules = json.load(stream).get(backend)
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(modules, list):
        return []
    return [name for name in modules if isinstance(name, str)]


def warm_up(modules: list[str]) -> str | None:
    """Import ``modules`` as earlier hooks did; why not to fork after it, if anything.

    A hook that imports one of them in a fresh interpreter changes its own process
    only; imported here, a module reaches every hook. So the import must leave the
    process as it found it: no warnings, no threads, and the same working directory,
    variables, import machinery, warning filters, signal handlers and standard
    streams. Output is checked by kiln, as for the backend. A module that fails to
    import is left for the hook to import (or not) itself.
    """
    import importlib
    import warnings

    if not modules:
        return None
    before = _process_state()
    with warnings.catch_warnings(record=True) as caught:
        for name in modules:
            try:
                importlib.import_module(name)
            except (Exception, SystemExit):
                continue
        # Inside the block: leaving it restores the filters it saved.
        changed = [what for what, value in _process_state().items() if before[what] != value]
    if changed:
        return f"importing what earlier hooks imported changes {', '.join(changed)}"
    if caught:
        return "importing what earlier hooks imported warns"
    if thread_count() > 1:
        return "importing what earlier hooks imported starts threads"
    return None


def _process_state() -> dict[str, object]:
    """What a module's import could change that every forked hook would inherit."""
    import warnings

    handlers = {}
    for name in ("SIGINT", "SIGTERM", "SIGCHLD", "SIGPIPE", "SIGHUP", "SIGUSR1", "SIGUSR2"):
        number = getattr(signal, name, None)
        if number is not None:
            handlers[name] = signal.getsignal(number)
    return {
        "the working directory": os.getcwd(),  # noqa: PTH109 (pathlib costs an import)
        "the environment variables": dict(os.environ),
        "sys.path": list(sys.path),
        "sys.meta_path": list(sys.meta_path),
        "sys.path_hooks": list(sys.path_hooks),
        "sys.argv": list(sys.argv),
        "the warning filters": list(warnings.filters),
        "the signal handlers": handlers,
        "the standard streams": (sys.stdin, sys.stdout, sys.stderr),
        "the exception hooks": (sys.excepthook, sys.unraisablehook),
        "the trace or profile function": (sys.gettrace(), sys.getprofile()),
        "the recursion limit": sys.getrecursionlimit(),
    }


class ImportOrigins:
    """Where a module must come from for a later worker to import it ahead of a hook.

    From the ``sys.path`` entries under the environment's or the interpreter's
    prefix: the environment's site-packages and the standard library. What lies
    there changes only with the environment (whose key and checksum kiln checks)
    or the interpreter. A module from the project, a ``PYTHONPATH`` entry or the
    hook's own directory is never imported ahead.
    """

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = roots

    @classmethod
    def of_this_interpreter(cls) -> ImportOrigins:
        prefixes = {
            os.path.join(os.path.normpath(prefix), "")  # noqa: PTH118
            for prefix in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix)
        }
        roots = []
        for entry in sys.path:
            if not entry or not os.path.isabs(entry):  # noqa: PTH117
                continue
            root = os.path.join(os.path.normpath(entry), "")  # noqa: PTH118
            if any(root.startswith(prefix) for prefix in prefixes):
                roots.append(root)
        return cls(tuple(roots))

    def new_modules(self, before: frozenset[str], cwd: str) -> list[str]:
        """Modules imported since ``before`` that a later worker may import ahead."""
        cwd = os.path.join(os.path.normpath(cwd), "")  # noqa: PTH118
        names = []
        for name, module in list(sys.modules.items()):
            if name in before or name == "__main__":
                continue
            origin = getattr(module, "__file__", None)
            if not isinstance(origin, str):
                continue  # built in, or a namespace package: nothing to gain
            if origin.startswith(self.roots) and not origin.startswith(cwd):
                names.append(name)
        return names


def thread_count() -> int:
    try:
        with os.scandir("/proc/self/task") as tasks:
            return sum(1 for _ in tasks)
    except OSError:
        threading = sys.modules.get("threading")
        return int(threading.active_count()) if threading is not None else 1


class ImportReport:
    """In a hook's child: tells kiln what the hook imported, once it succeeded."""

    def __init__(self, status: Status, origins: ImportOrigins, cwd: str) -> None:
        self.status = status
        self.origins = origins
        self.cwd = cwd
        self.before = frozenset(sys.modules)

    def send(self) -> None:
        with contextlib.suppress(BaseException):
            names = self.origins.new_modules(self.before, self.cwd)
            if names:
                self.status.write(b"imported " + json.dumps(names).encode())
