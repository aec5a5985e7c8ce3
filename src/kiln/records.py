"""The JSON records kiln keeps, one small typed class each.

Each record has a ``version``, a ``to_json()`` giving the object written, a
validating ``from_json()`` that returns None for anything not a record of its
shape, and ``read()`` (None for a missing, unreadable or damaged file: the caller
rebuilds, or names the file in a clear error). Every write goes through
:func:`kiln.jsonfiles.write_json`: atomic, and readable by the owner alone.

============================  ==========  ====================================
File                          Class       Where
============================  ==========  ====================================
``failed.json``               FailedRun   a failed run's directory
``hook.json``                 HookCall    a run's directory (the last hook called)
``kiln-env.json``             EnvRecord   a cached environment
``kiln-warm-imports.json``    WarmNotes   a lasting environment's state directory
============================  ==========  ====================================

The head-start plans are :class:`kiln.headstart.WorkerPlan`; the hooks' handoff
files are pyproject-hooks' format; the ``--report`` file is output, not a record.

Read on the head start's path (kiln-env.json, through :mod:`kiln.fingerprint`)
before the rest of kiln is imported: so this module imports ``json``, ``os`` and
``stat`` only (no dataclasses, typing or logging), and the writer lazily.
"""

from __future__ import annotations

import json
import os
import stat


def read_object(path: str | os.PathLike[str]) -> dict[str, object] | None:
    """The JSON object in ``path``; None when it is missing, unreadable, not a
    regular file, not JSON, or not an object."""
    try:
        # Non-blocking: a FIFO in a file's place would hang the read (and the build).
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        with os.fdopen(descriptor, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return None
            data = json.loads(stream.read())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep
        return None
    return data if isinstance(data, dict) else None


def _write(path: str | os.PathLike[str], data: object) -> None:
    from pathlib import Path

    from kiln.jsonfiles import write_json

    write_json(Path(path), data, indent=2, private=True)


def _version(data: dict[str, object], current: int, *, required: bool = False) -> bool:
    """Whether ``data`` is a record of version ``current``: a record written before
    records had versions counts as version 1, unless ``required``."""
    version = data.get("version", None if required else 1)
    return type(version) is int and version == current


def _str(value: object) -> bool:
    return isinstance(value, str)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _str_dict(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _moved(path: str, old: str, new: str) -> str:
    """``path`` under ``old`` (or ``old`` itself) moved to ``new``; else unchanged."""
    if path == old:
        return new
    if path.startswith(old.rstrip(os.sep) + os.sep):
        return new.rstrip(os.sep) + os.sep + path[len(old.rstrip(os.sep)) + 1 :]
    return path


def _moved_paths(value: str, old: str, new: str) -> str:
    """``value`` as a path, or a list of paths (PATH, PYTHONPATH), each moved."""
    return os.pathsep.join(_moved(part, old, new) for part in value.split(os.pathsep))


def _moved_value(value: object, old: str, new: str) -> object:
    if isinstance(value, str):
        return _moved_paths(value, old, new)
    if isinstance(value, list):
        return [_moved_value(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: _moved_value(item, old, new) for key, item in value.items()}
    return value


class FailedRun:
    """``failed.json``: why a kept run failed, and where its parts are.

    ``{"version": 1, "reason": str, "time": float, "source": str,
    "environment": str | null, "log": str}``.
    """

    __slots__ = ("environment", "log", "reason", "source", "time")
    VERSION = 1

    def __init__(
        self, reason: str, time: float, source: str, environment: str | None, log: str
    ) -> None:
        self.reason = reason
        self.time = time
        self.source = source
        self.environment = environment
        self.log = log

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FailedRun) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.VERSION,
            "reason": self.reason,
            "time": self.time,
            "source": self.source,
            "environment": self.environment,
            "log": self.log,
        }

    @classmethod
    def from_json(cls, data: object) -> FailedRun | None:
        if not isinstance(data, dict) or not _version(data, cls.VERSION):
            return None
        # A field left out reads as nothing known (as `kiln debug` always took it);
        # one of the wrong type, as damage.
        reason, when = data.get("reason", "unknown"), data.get("time", 0.0)
        source, environment = data.get("source", ""), data.get("environment")
        log = data.get("log", "")
        if not (_str(reason) and _number(when) and _str(source) and _str(log)):
            return None
        if environment is not None and not _str(environment):
            return None
        return cls(str(reason), float(when), str(source), environment, str(log))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> FailedRun | None:
        return cls.from_json(read_object(path))

    def write(self, path: str | os.PathLike[str]) -> None:
        _write(path, self.to_json())


class HookCall:
    """``hook.json``: the last hook a run called, enough to call it again.

    ``{"version": 1, "hook": str, "kwargs": {str: any}, "backend": str,
    "backend_path": [str], "cwd": str, "python": str, "environ": {str: str},
    "time": float}``. Holds the hook's environment variables, which may hold
    credentials: readable by the owner alone, like every record.
    """

    __slots__ = ("backend", "backend_path", "cwd", "environ", "hook", "kwargs", "python", "time")
    VERSION = 1

    def __init__(
        self,
        hook: str,
        kwargs: dict[str, object],
        backend: str,
        backend_path: list[str],
        cwd: str,
        python: str,
        environ: dict[str, str],
        time: float,
    ) -> None:
        self.hook = hook
        self.kwargs = kwargs
        self.backend = backend
        self.backend_path = backend_path
        self.cwd = cwd
        self.python = python
        self.environ = environ
        self.time = time

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HookCall) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.VERSION,
            "hook": self.hook,
            "kwargs": self.kwargs,
            "backend": self.backend,
            "backend_path": self.backend_path,
            "cwd": self.cwd,
            "python": self.python,
            "environ": self.environ,
            "time": self.time,
        }

    @classmethod
    def from_json(cls, data: object) -> HookCall | None:
        if not isinstance(data, dict) or not _version(data, cls.VERSION):
            return None
        hook, kwargs, backend = data.get("hook"), data.get("kwargs"), data.get("backend")
        backend_path, cwd, python = data.get("backend_path"), data.get("cwd"), data.get("python")
        # The time is for people reading the file; kiln does without it.
        environ, when = data.get("environ"), data.get("time", 0.0)
        if not (
            _str(hook)
            and isinstance(kwargs, dict)
            and all(isinstance(key, str) for key in kwargs)
            and _str(backend)
            and _str_list(backend_path)
            and _str(cwd)
            and _str(python)
            and _str_dict(environ)
            and _number(when)
        ):
            return None
        return cls(
            str(hook),
            dict(kwargs),
            str(backend),
            list(backend_path),  # type: ignore[arg-type]
            str(cwd),
            str(python),
            dict(environ),  # type: ignore[arg-type]
            float(when),
        )

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> HookCall | None:
        return cls.from_json(read_object(path))

    def write(self, path: str | os.PathLike[str]) -> None:
        _write(path, self.to_json())

    def moved(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> HookCall:
        """This call with every path under ``old`` moved to ``new``: the working
        directory, the interpreter, the hook's arguments (in lists and mappings
        too) and its environment variables (each entry of a PATH-like list)."""
        source, target = os.fspath(old), os.fspath(new)
        return HookCall(
            self.hook,
            {key: _moved_value(value, source, target) for key, value in self.kwargs.items()},
            self.backend,
            list(self.backend_path),  # relative to cwd
            _moved(self.cwd, source, target),
            _moved(self.python, source, target),
            {key: _moved_paths(value, source, target) for key, value in self.environ.items()},
            self.time,
        )


class EnvRecord:
    """``kiln-env.json``: what a cached environment was made for, and its files.

    ``{"version": 2, "key": {...}, "created": float, "fingerprint": str,
    "unfit": str (absent while it is fit)}``. Written last, when the environment
    is complete. A record of another version (or none) means: rebuild.
    """

    __slots__ = ("created", "fingerprint", "key", "unfit")
    # 2: the fingerprint covers bytecode, the key included files and local inputs.
    VERSION = 2

    def __init__(
        self,
        key: dict[str, object],
        created: float,
        fingerprint: str,
        unfit: str | None = None,
    ) -> None:
        self.key = key
        self.created = created
        self.fingerprint = fingerprint
        self.unfit = unfit

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnvRecord) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    @property
    def generation(self) -> str:
        """The time that names this making of the environment, as text."""
        return str(self.created)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "version": self.VERSION,
            "key": self.key,
            "created": self.created,
            "fingerprint": self.fingerprint,
        }
        if self.unfit is not None:
            data["unfit"] = self.unfit
        return data

    @classmethod
    def from_json(cls, data: object) -> EnvRecord | None:
        # Required: a record without a version is from before version 2's key.
        if not isinstance(data, dict) or not _version(data, cls.VERSION, required=True):
            return None
        key, created = data.get("key"), data.get("created")
        fingerprint, unfit = data.get("fingerprint"), data.get("unfit")
        if not (isinstance(key, dict) and _number(created) and _str(fingerprint)):
            return None
        if unfit is not None and not _str(unfit):
            return None
        # created is kept as written: the generation of a plan is its text.
        return cls(key, created, str(fingerprint), unfit)  # type: ignore[arg-type]

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> EnvRecord | None:
        return cls.from_json(read_object(path))

    def write(self, path: str | os.PathLike[str]) -> None:
        _write(path, self.to_json())


class WarmNotes:
    """``kiln-warm-imports.json``: per backend, the modules its hooks imported,
    or False once importing them ahead proved unsafe.

    ``{"version": 1, backend: [module, ...] | false, ...}``: flat, because the
    worker script (``kiln_worker.py``, standard library only) reads
    ``data[backend]`` itself and skips what is not a list.
    """

    __slots__ = ("backends",)
    VERSION = 1

    def __init__(self, backends: dict[str, list[str] | bool] | None = None) -> None:
        self.backends: dict[str, list[str] | bool] = dict(backends or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WarmNotes) and self.backends == other.backends

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> dict[str, object]:
        return {"version": self.VERSION, **self.backends}

    @classmethod
    def from_json(cls, data: object) -> WarmNotes | None:
        if not isinstance(data, dict) or not _version(data, cls.VERSION):
            return None
        backends: dict[str, list[str] | bool] = {}
        for backend, modules in data.items():
            if backend == "version":
                continue
            if modules is False or _str_list(modules):
                backends[backend] = modules
            else:
                return None
        return cls(backends)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> WarmNotes | None:
        return cls.from_json(read_object(path))

    def write(self, path: str | os.PathLike[str]) -> None:
        from pathlib import Path

        from kiln.jsonfiles import write_json

        # Compact: the worker reads it on every start.
        write_json(Path(path), self.to_json(), private=True)
