"""Starting a warm hook worker before kiln has imported the rest of itself.

A warm worker (:mod:`kiln.hooks.warm`) takes a while to start: an interpreter,
the backend, the imports ahead. So does kiln. A run keeps, beside the project's
place, the plan of its first warm worker; the command line reads that plan and
starts the worker right after it has read its arguments, so that the two starts
overlap. Which hook may take that worker, and what becomes of one none may, is
the warm runner's business. This module only keeps plans and starts worker
processes, and imports nothing heavy for it.

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

import contextlib
import json
import os
import signal
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
from kiln.trust import entry_problem, interpreter_problem, root_problem

TYPE_CHECKING = False  # spares importing typing, as the command line imports this first
if TYPE_CHECKING:
    from typing import Any

WORKER_SCRIPT = Path(__file__).with_name("hooks") / "_worker" / "kiln_worker.py"
# Plans kept per place, the most recently used ones.
KEPT_PLANS = 8


class Launched:
    """A worker process, and the token that marks its status lines."""

    def __init__(self, process: subprocess.Popen[bytes], token: str) -> None:
        self.process = process
        self.token = token


def launch(
    python: str, backend: str, environ: dict[str, str], cwd: str, warm_imports: str | None
) -> Launched | str:
    """Start a worker without waiting for it; or why it did not start. With
    ``warm_imports``, it imports that file's modules for the backend ahead of the hooks."""
    if not WORKER_SCRIPT.is_file():
        return f"no worker script at {WORKER_SCRIPT}"
    token = os.urandom(8).hex()
    extra = [warm_imports] if warm_imports else []
    try:
        process = subprocess.Popen(
            [python, str(WORKER_SCRIPT), token, str(os.getpid()), backend, *extra],
            cwd=cwd,
            env=environ,
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
    """A worker started from the plan kept in ``plans`` for ``source``; its fields as read."""

    def __init__(
        self, plans: Path, source: Path, fields: dict[str, Any], launched: Launched
    ) -> None:
        self.plans = plans
        self.source = source
        self.fields = fields
        self._launched: Launched | None = launched

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
        with contextlib.suppress(OSError):  # gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def read_plan(plans: Path, source: Path) -> dict[str, Any] | None:
    """The fields of the plan kept in ``plans`` (``CACHE/projects-v1/<label>.worker.json``)
    for builds of ``source``, with the hooks' environment rebuilt for this run;
    None if there is none, the cache is not to be trusted, or the environment
    differs from the one the plan was kept for."""
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
    return _rebuilt(stored) if isinstance(stored, dict) else None


def keep_plan(plans: Path, source: Path, fields: dict[str, Any]) -> None:
    """Keep ``fields`` in ``plans`` as the plan for builds of ``source``, without
    secrets (or drop the plan, if the variables kiln set hold one); the caller
    holds the place, so no other run writes the file meanwhile. Raises OSError."""
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
    fields = read_plan(plans, source)
    if fields is None or not fields.get("generation"):
        return None  # no plan, or one from an environment that does not last
    try:
        python, warm_imports = Path(fields["python"]), fields["warm_imports"]
        environments = plans.parent.parent / ENVS
        if entry_problem(environments, directory=True) or interpreter_problem(python, environments):
            return None
        if warm_imports is not None and Path(warm_imports).parent != python.parent.parent:
            return None  # the notes are the environment's own
        from kiln.fingerprint import unchanged

        # Code from the environment runs in the worker before kiln checks it: check first.
        if not unchanged(str(python.parent.parent), str(fields["generation"])):
            return None
        launched = launch(
            str(python), fields["backend"], fields["environ"], fields["cwd"], warm_imports
        )
    except (KeyError, TypeError):
        return None
    return HeadStart(plans, source, fields, launched) if isinstance(launched, Launched) else None


def start_for_build(source: Path, cache_dir: Path | None, hook_runner: str) -> HeadStart | None:
    """The head start for a build of ``source`` with a cached environment, given the
    --cache-dir and --hook-runner options (their KILN_* defaults filled in already);
    None where the hooks are to run plain."""
    if hook_runner == "plain":
        return None
    try:
        place = project_place(resolve_cache_dir(cache_dir), source_label(source))
    except (OSError, RuntimeError):  # no home directory, say: the build will say so
        return None
    return start(worker_plans(place), absolute_source(source))
