"""Starting a warm hook worker before kiln has imported the rest of itself.

A warm worker (:mod:`kiln.hooks.warm`) takes a while to start: an interpreter,
the backend, the imports ahead. So does kiln. A run keeps, beside the project's
place, the plan of its first warm worker; the command line reads that plan and
starts the worker right after it has read its arguments, so that the two starts
overlap. Which hook may take that worker, and what becomes of one none may, is
the warm runners' business (:mod:`kiln.hooks.warm`). This module holds what a
worker is started with (:class:`WorkerPlan`), keeps plans and starts worker
processes, and imports nothing heavy for it: the command line imports it before
the rest of kiln, so it lives outside the ``kiln.hooks`` package, whose import
would cost what the head start saves.

The plans file beside a place holds a plan per source path: projects whose
directories share a name share a place (and take turns in it), but not a plan.

A plan is something kiln runs, so it is trusted only as far as the cache is
(:mod:`kiln.trust`): the plans file must be the user's and writable by no one
else, and the interpreter it names must be that of an environment kiln made in
the same cache. Nor does it keep the hooks' environment variables, which may
hold tokens and passwords: only those kiln set or changed (none that look like
a credential: a build that needs one gets no head start), the names of those it
removed, and a salted SHA-256 digest of the whole. The worker starts with the
environment rebuilt from the variables of the run at hand, and only if the
digest matches.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from kiln.layout import (
    ENVS,
    absolute_source,
    project_place,
    resolve_cache_dir,
    source_label,
    worker_plans,
)
from kiln.process_group import kill_process_group
from kiln.trust import entry_problem, interpreter_problem, root_problem

TYPE_CHECKING = False  # spares importing typing, as the command line imports this first
if TYPE_CHECKING:
    from typing import Any

    from kiln.hooks.warm.worker import Worker

WORKER_SCRIPT = Path(__file__).with_name("hooks") / "warm" / "_worker" / "kiln_worker.py"
# Plans kept per place, the most recently used ones.
KEPT_PLANS = 8


class WorkerPlan:
    """What a worker is started with; kept for the next run's head start.

    A plain class, not a dataclass: the command line reads a plan before it
    imports ``dataclasses`` or ``typing``. Its JSON form (:meth:`to_json`) is
    what :func:`keep_plan` stores and :func:`read_plan` returns; :meth:`from_json`
    reads one back, checking every field.
    """

    __slots__ = ("backend", "cwd", "environ", "generation", "python", "warm_imports")

    def __init__(
        self,
        python: str,
        backend: str,
        environ: dict[str, str],
        cwd: str,
        warm_imports: str | None,
        generation: str | None,
    ) -> None:
        self.python = python
        self.backend = backend
        self.environ = environ
        self.cwd = cwd
        # The environment's notes on what hooks import, for the worker to import ahead.
        self.warm_imports = warm_imports
        # The environment's generation (kiln.fingerprint): None where it does not
        # last, and then there is no head start.
        self.generation = generation

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "backend": self.backend,
            "environ": dict(self.environ),
            "cwd": self.cwd,
            "warm_imports": self.warm_imports,
            "generation": self.generation,
        }

    @classmethod
    def from_json(cls, fields: object) -> WorkerPlan | None:
        """The plan ``fields`` describe; None unless they are exactly a plan's
        fields, of the right types (another version's plan, or a damaged one)."""
        if not isinstance(fields, dict) or set(fields) != set(cls.__slots__):
            return None
        python, backend, cwd = fields["python"], fields["backend"], fields["cwd"]
        warm_imports, generation = fields["warm_imports"], fields["generation"]
        environ = fields["environ"]
        if not (isinstance(python, str) and isinstance(backend, str) and isinstance(cwd, str)):
            return None
        if not (warm_imports is None or isinstance(warm_imports, str)):
            return None
        if not (generation is None or isinstance(generation, str)):
            return None
        if not isinstance(environ, dict) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in environ.items()
        ):
            return None
        return cls(python, backend, dict(environ), cwd, warm_imports, generation)

    def but(self, *, warm_imports: str | None) -> WorkerPlan:
        """This plan with other notes on what to import ahead."""
        fields = self.to_json()
        fields["warm_imports"] = warm_imports
        plan = WorkerPlan.from_json(fields)
        assert plan is not None
        return plan

    def serves(self, wanted: WorkerPlan) -> bool:
        """Whether a worker started by this plan may serve ``wanted``: the same in
        every part but the directory (module-level code sees the first hook's,
        whichever that was), in an environment that lasts."""
        same = self.to_json() | {"cwd": None} == wanted.to_json() | {"cwd": None}
        return same and self.generation is not None

    def start(self) -> tuple[Worker | None, str]:
        """A ready worker, or None and why the hooks must run plain."""
        from kiln.hooks.warm.worker import start_worker

        return start_worker(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkerPlan) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]  # mutable fields: no hash

    def __repr__(self) -> str:
        return f"WorkerPlan({self.to_json()!r})"


class Launched:
    """A worker process, and the token that marks its status lines."""

    def __init__(self, process: subprocess.Popen[bytes], token: str) -> None:
        self.process = process
        self.token = token


def launch(plan: WorkerPlan) -> Launched | str:
    """Start a worker by ``plan`` without waiting for it; or why it did not start. With
    ``plan.warm_imports``, it imports that file's modules for the backend ahead of the hooks."""
    if not WORKER_SCRIPT.is_file():
        return f"no worker script at {WORKER_SCRIPT}"
    token = os.urandom(8).hex()
    extra = [plan.warm_imports] if plan.warm_imports else []
    try:
        process = subprocess.Popen(
            [plan.python, str(WORKER_SCRIPT), token, str(os.getpid()), plan.backend, *extra],
            cwd=plan.cwd,
            env=plan.environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            bufsize=0,
        )
    except (OSError, ValueError, TypeError) as error:
        return f"the worker did not start: {error}"
    return Launched(process, token)


class HeadStart:
    """A worker started from the plan kept in ``plans`` for ``source``."""

    def __init__(self, plans: Path, source: Path, plan: WorkerPlan, launched: Launched) -> None:
        self.plans = plans
        self.source = source
        self.plan = plan
        self._launched: Launched | None = launched

    @property
    def fields(self) -> dict[str, Any]:
        """The plan's fields, as :func:`read_plan` returns them."""
        return self.plan.to_json()

    def take(self) -> Launched | None:
        """The worker, now the caller's to stop; None once taken or discarded."""
        launched, self._launched = self._launched, None
        return launched

    def discard(self) -> None:
        """Kill the worker at once unless it was taken: it has run no hook, so no grace."""
        launched = self.take()
        if launched is None:
            return
        process = launched.process
        kill_process_group(process)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def read_plan(plans: Path, source: Path) -> dict[str, Any] | None:
    """The fields of the plan kept in ``plans`` for builds of ``source`` (its JSON
    form, checked: see :func:`load_plan`)."""
    plan = load_plan(plans, source)
    return None if plan is None else plan.to_json()


def load_plan(plans: Path, source: Path) -> WorkerPlan | None:
    """The plan kept in ``plans`` (``CACHE/projects-v1/<label>.worker.json``) for
    builds of ``source``, with the hooks' environment rebuilt for this run; None
    if there is none, the cache is not to be trusted, the plan is not one, or
    the environment differs from the one the plan was kept for."""
    cache = plans.parent.parent
    if (
        root_problem(cache)
        or entry_problem(plans.parent, directory=True)
        or entry_problem(plans, directory=False)
    ):
        return None
    try:
        kept = json.loads(plans.read_bytes())
    except (OSError, ValueError):
        return None
    stored = kept.get(str(source)) if isinstance(kept, dict) else None
    fields = _rebuilt(stored) if isinstance(stored, dict) else None
    return WorkerPlan.from_json(fields)


def keep_plan(plans: Path, source: Path, fields: dict[str, Any]) -> None:
    """Keep the plan whose JSON form is ``fields`` (:meth:`WorkerPlan.to_json`) in
    ``plans`` as the plan for builds of ``source``, without secrets (or drop the
    plan, if the variables kiln set hold one); the caller holds the place, so no
    other run writes the file meanwhile. Raises OSError, and ValueError if
    ``fields`` are not a plan's."""
    if WorkerPlan.from_json(fields) is None:
        raise ValueError(f"not a worker plan: {fields!r}")
    from kiln.jsonfiles import read_json_object, write_json

    # Entries not keyed by a source path, or holding the hooks' whole environment,
    # come from another version of kiln.
    kept = {
        key: plan
        for key, plan in read_json_object(plans).items()
        if Path(key).is_absolute() and isinstance(plan, dict) and "environ" not in plan
    }
    key = str(source)
    if list(kept)[-1:] == [key] and _rebuilt(kept[key]) == fields:
        return  # kept already, and the most recent
    kept.pop(key, None)
    stored = _storable(fields)
    if stored is not None:
        kept[key] = stored
    # Readable by the user alone, in case a variable holds what no rule here spotted.
    write_json(plans, dict(list(kept.items())[-KEPT_PLANS:]), private=True)


def _storable(fields: dict[str, Any]) -> dict[str, Any] | None:
    """``fields`` as kept: the variables kiln set or changed, the names of those it
    removed, and a digest of all; None when what it set looks like a credential."""
    import re

    environ: dict[str, str] = fields["environ"]
    changed = {name: value for name, value in environ.items() if os.environ.get(name) != value}
    looks_secret = re.compile(
        r"TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|API_?KEY|ACCESS_?KEY|PRIVATE", re.IGNORECASE
    )
    url_with_user = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]*@")
    for name, value in changed.items():
        if looks_secret.search(name) or url_with_user.search(value):
            return None
    salt = os.urandom(16).hex()
    stored = {name: value for name, value in fields.items() if name != "environ"}
    stored["environ_set"] = changed
    stored["environ_unset"] = sorted(name for name in os.environ if name not in environ)
    stored["environ_salt"] = salt
    stored["environ_sha256"] = _digest(salt, environ)
    return stored


def _rebuilt(stored: dict[str, Any]) -> dict[str, Any] | None:
    """The plan's fields with the environment rebuilt from this process's, or None
    when it does not match the digest kept (or the plan is malformed)."""
    changed, unset = stored.get("environ_set"), stored.get("environ_unset")
    salt, digest = stored.get("environ_salt"), stored.get("environ_sha256")
    if not (isinstance(changed, dict) and isinstance(unset, list) and isinstance(salt, str)):
        return None
    removed = set(unset)
    environ = {name: value for name, value in os.environ.items() if name not in removed}
    environ.update(changed)
    try:
        if _digest(salt, environ) != digest:
            return None
    except (TypeError, ValueError):  # not strings
        return None
    fields = {name: value for name, value in stored.items() if not name.startswith("environ_")}
    fields["environ"] = environ
    return fields


def _digest(salt: str, environ: dict[str, str]) -> str:
    import hashlib

    text = json.dumps([salt, sorted(environ.items())])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def start(plans: Path, source: Path) -> HeadStart | None:
    """Start the worker the plan kept for ``source`` describes, if it is usable: an
    interpreter of an environment kiln made in the same cache, lasting."""
    plan = load_plan(plans, source)
    if plan is None or not plan.generation:
        return None  # no plan, or one from an environment that does not last
    python = Path(plan.python)
    environments = plans.parent.parent / ENVS
    if entry_problem(environments, directory=True) or interpreter_problem(python, environments):
        return None
    if plan.warm_imports is not None and Path(plan.warm_imports).parent != python.parent.parent:
        return None  # the notes are the environment's own
    from kiln.fingerprint import unchanged

    # Code from the environment runs in the worker before kiln checks it: check first.
    if not unchanged(str(python.parent.parent), plan.generation):
        return None
    launched = launch(plan)
    return HeadStart(plans, source, plan, launched) if isinstance(launched, Launched) else None


def plans_key(source: Path, python: str | None) -> Path:
    """What a build's plan is kept under: its source, or for a ``--python`` build
    the source and the spec, so that builds of one project for several
    interpreters each start their own worker ahead. A key, never opened."""
    return source if python is None else Path(f"{source}#python={python}")


def start_for_build(
    source: Path, cache_dir: Path | None, hook_runner: str, python: str | None = None
) -> HeadStart | None:
    """The head start for a build of ``source`` with a cached environment, given the
    --cache-dir, --hook-runner and --python options (their KILN_* defaults filled in
    already); None where the hooks are to run plain."""
    if hook_runner == "plain":
        return None
    try:
        place = project_place(resolve_cache_dir(cache_dir), source_label(source))
    except (OSError, RuntimeError):  # no home directory, say: the build will say so
        return None
    return start(worker_plans(place), plans_key(absolute_source(source), python))
