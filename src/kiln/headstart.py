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
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

from kiln.layout import (
    HOOK_RUNNER_ENV,
    absolute_source,
    project_place,
    resolve_cache_dir,
    source_label,
    worker_plans,
)

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
    """The fields of the plan kept in ``plans`` for builds of ``source``, if any."""
    try:
        kept = json.loads(plans.read_bytes())
    except (OSError, ValueError):
        return None
    fields = kept.get(str(source)) if isinstance(kept, dict) else None
    return fields if isinstance(fields, dict) else None


def keep_plan(plans: Path, source: Path, fields: dict[str, Any]) -> None:
    """Keep ``fields`` in ``plans`` as the plan for builds of ``source``; the caller
    holds the place, so no other run writes the file meanwhile. Raises OSError."""
    from kiln.jsonfiles import read_json_object, write_json

    # Entries not keyed by a source path come from another version of kiln.
    kept = {key: plan for key, plan in read_json_object(plans).items() if Path(key).is_absolute()}
    key = str(source)
    if list(kept)[-1:] == [key] and kept[key] == fields:
        return  # kept already, and the most recent
    kept.pop(key, None)
    kept[key] = fields
    # Readable by the user alone: a plan holds the hooks' environment variables.
    write_json(plans, dict(list(kept.items())[-KEPT_PLANS:]), private=True)


def start(plans: Path, source: Path) -> HeadStart | None:
    """Start the worker the plan kept for ``source`` describes, if it is usable."""
    fields = read_plan(plans, source)
    if fields is None or not fields.get("generation"):
        return None  # no plan, or one from an environment that does not last
    from kiln.fingerprint import unchanged

    # Code from the environment runs in the worker before kiln checks it: check first.
    environment = str(Path(str(fields.get("python"))).parent.parent)
    if not unchanged(environment, str(fields["generation"])):
        return None
    try:
        launched = launch(
            fields["python"],
            fields["backend"],
            fields["environ"],
            fields["cwd"],
            fields["warm_imports"],
        )
    except KeyError:
        return None
    return HeadStart(plans, source, fields, launched) if isinstance(launched, Launched) else None


def start_for_build(source: Path, cache_dir: Path | None, hook_runner: str) -> HeadStart | None:
    """The head start for a build of ``source`` with a cached environment, given the
    --cache-dir and --hook-runner options; None where the hooks are to run plain."""
    if hook_runner == "auto":
        hook_runner = os.environ.get(HOOK_RUNNER_ENV) or "auto"
    if hook_runner == "plain":
        return None
    try:
        place = project_place(resolve_cache_dir(cache_dir), source_label(source))
    except (OSError, RuntimeError):  # no home directory, say: the build will say so
        return None
    return start(worker_plans(place), absolute_source(source))
