"""pyproject-hooks' hook caller, with the handoff files where kiln wants them.

pyproject-hooks passes a hook's arguments and result through JSON files in a
directory it makes with ``tempfile``, in the global temp dir. kiln keeps every
file it writes in its own space, so this caller makes that directory inside the
run directory instead, and, for ``kiln debug``, records what each hook call
was while it runs. The protocol with the in-process script is unchanged.

That protocol is private to pyproject-hooks, and no public way places the
handoff directory, so :meth:`KilnHookCaller._call_hook` speaks it for every
version ``pyproject-hooks>=1.1`` allows: the backend path goes in both the
variable the 1.1 and 1.2 scripts read (``os.pathsep``-joined) and the one 1.3
reads (JSON). The lowest-versions pass of ``.ci/run`` builds with 1.1.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyproject_hooks import (
    BackendUnavailable,
    BuildBackendHookCaller,
    HookMissing,
    UnsupportedOperation,
)
from pyproject_hooks._in_process import _in_proc_script_path

from kiln.hooks.plain import SubprocessRunner
from kiln.records import HookCall


class KilnHookCaller(BuildBackendHookCaller):
    """A hook caller whose handoff directories live under ``handoff_root``."""

    def __init__(
        self,
        source_dir: str,
        build_backend: str,
        backend_path: Sequence[str] | None,
        *,
        runner: SubprocessRunner,
        python_executable: str,
        handoff_root: Path,
        environ: Mapping[str, str],
        record_path: Path | None = None,
    ) -> None:
        super().__init__(
            source_dir,
            build_backend,
            backend_path=list(backend_path) if backend_path else None,
            runner=runner,
            python_executable=python_executable,
        )
        self.handoff_root = handoff_root
        self.environ = dict(environ)
        self.record_path = record_path

    def _call_hook(self, hook_name: str, kwargs: Mapping[str, Any]) -> Any:
        extra_environ = {"_PYPROJECT_HOOKS_BUILD_BACKEND": self.build_backend}
        if self.backend_path:
            # 1.1 and 1.2 read the first, 1.3 the second; each ignores the other.
            extra_environ["_PYPROJECT_HOOKS_BACKEND_PATH"] = os.pathsep.join(self.backend_path)
            extra_environ["_PYPROJECT_HOOKS_BACKEND_PATH_JSON"] = json.dumps(self.backend_path)
        handoff = Path(tempfile.mkdtemp(prefix=f"{hook_name}-", dir=self.handoff_root))
        (handoff / "input.json").write_text(json.dumps({"kwargs": kwargs}), encoding="utf-8")
        self._record(hook_name, kwargs, extra_environ)
        with _in_proc_script_path() as script:  # type: ignore[no-untyped-call]
            self._subprocess_runner(
                [self.python_executable, str(Path(script).resolve()), hook_name, str(handoff)],
                cwd=self.source_dir,
                extra_environ=extra_environ,
            )
        output = _read_output(handoff / "output.json", hook_name)
        if output.get("unsupported"):
            raise UnsupportedOperation(output.get("traceback", ""))
        if output.get("no_backend"):
            raise BackendUnavailable(
                output.get("traceback", ""),
                message=output.get("backend_error", ""),
                backend_name=self.build_backend,
                backend_path=self.backend_path,
            )
        if output.get("hook_missing"):
            raise HookMissing(output.get("missing_hook_name") or hook_name)
        for warning in output.get("warnings", []):
            warnings.warn_explicit(
                warning["message"], UserWarning, warning["filename"], warning["lineno"]
            )
        # The call went through: nothing to debug.
        if self.record_path is not None:
            self.record_path.unlink(missing_ok=True)
        return output["return_val"]

    def _record(self, hook_name: str, kwargs: Mapping[str, Any], extra: Mapping[str, str]) -> None:
        if self.record_path is None:
            return
        call = HookCall(
            hook=hook_name,
            kwargs=dict(kwargs),
            backend=self.build_backend,
            backend_path=list(self.backend_path or []),
            cwd=str(self.source_dir),
            python=str(self.python_executable),
            environ={**self.environ, **extra},
            time=time.time(),
        )
        # Environment variables can hold credentials: readable by the user only
        # (as every record is).
        call.write(self.record_path)


class HookResultMissingError(Exception):
    """A hook process exited with status 0 without writing its result."""

    def __init__(self, hook_name: str, detail: str) -> None:
        super().__init__(f"{hook_name}: {detail}")
        self.hook_name = hook_name
        self.detail = detail


def _read_output(path: Path, hook_name: str) -> dict[str, Any]:
    """The in-process script's result; a backend that ends the process early
    (``os._exit(0)`` in a hook) leaves none, or half of one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HookResultMissingError(hook_name, "it wrote no result") from None
    try:
        output = json.loads(text)
    except ValueError:
        raise HookResultMissingError(hook_name, "its result is not valid JSON") from None
    if not isinstance(output, dict) or "return_val" not in output:
        raise HookResultMissingError(hook_name, "its result has no return value") from None
    return output
