"""The warm hook runners: each hook in a fresh child forked from a worker that has
the backend imported already.

PEP 517 asks for a fresh process per hook, so that what a backend does to its
process never reaches the next hook. A fresh process need not start cold: one
worker per build environment and backend (``_worker/kiln_worker.py``, run by
the environment's interpreter, the standard library only) imports the backend
once and forks a child per hook call. The child runs pyproject-hooks' in-process
script exactly as the plain runner's ``python SCRIPT HOOK DIR`` would; its
output, the log, the exit status and the errors kiln reports are the plain
runner's.

The warm path is only taken where a forked child is indistinguishable from a
fresh interpreter; otherwise the hook runs the plain way:

- an in-tree backend (``backend-path``): it must be imported from the tree being
  built, and kiln builds the wheel from an unpacked sdist, another tree;
- a relative ``PYTHONPATH`` entry: it means something else in another directory;
- a backend whose import fails, prints, warns or starts threads (the worker
  reports it "cold" and exits).

A worker is restarted when what it was started with has changed: the hook
environment's variables, or the contents of a directory on its ``sys.path``
(requirements installed after the import).

Hooks import most of what they use inside the hook, and a fresh process pays
for it every time. For environments that last (cached ones: they have a
``BuildEnvironment.state_dir``), kiln keeps notes there on which modules, per
backend, the hooks imported from the environment and the standard library; the next
worker imports them once, up front. Should that import change anything a forked
hook would inherit, the worker reports it cold; kiln then starts one without
those imports and stops taking them ahead for that environment and backend.

A worker takes a while to start (an interpreter, the backend, the imports
ahead), and so does kiln itself before the first hook. So that the two
overlap, kiln keeps, beside the project's place, the plan of the first worker
the last build of the source started: its interpreter, backend, variables and
environment generation. The next run starts that worker early (the command
line before it imports the rest of kiln, see :mod:`kiln.headstart`, which
holds the plan's type; the library once it holds the place), and a hook takes
it only if its own plan is the same in every part and the environment was not
replaced since; otherwise it is killed unused.

Workers never outlive kiln: they exit at the end of their input, which comes
when kiln closes it or dies, and on Linux also when kiln's thread is gone.

The modules: :mod:`.pool` hands out the runners and owns the workers (the
``RunnerPool`` seam of :mod:`kiln.hooks.runners`); :mod:`.worker` is kiln's
side of the worker protocol (documented at the top of the worker script);
:mod:`.notes` keeps what hooks import; :mod:`.ahead` takes (or stops) the worker
the head start began, and keeps this run's plan for the next. Everything here
logs to the ``kiln.hooks.warm`` logger.
"""

from __future__ import annotations

from kiln.headstart import WorkerPlan
from kiln.hooks.warm.notes import WarmImports
from kiln.hooks.warm.pool import WarmHookRunner, WarmRunnerPool
from kiln.hooks.warm.worker import Worker

# WarmHookRunners: the name docs/api.md documents.
WarmHookRunners = WarmRunnerPool

__all__ = [
    "WarmHookRunner",
    "WarmHookRunners",
    "WarmImports",
    "WarmRunnerPool",
    "Worker",
    "WorkerPlan",
]
