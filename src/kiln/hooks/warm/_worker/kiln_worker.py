"""kiln's warm hook worker: import a build backend once, fork a fresh child per hook.

kiln (``kiln.hooks.warm``) starts it with the build environment's interpreter,
in the hook environment and working directory of the first hook call::

    python kiln_worker.py TOKEN KILN_PID BACKEND [WARM_IMPORTS]

The build environment has no kiln in it, so this script uses the standard
library only.

Hooks import most of what they use lazily, inside the hook: hatchling's builders,
setuptools' commands, tarfile, zipfile, email. A fresh interpreter pays for that
in every hook. WARM_IMPORTS names a JSON file (kiln keeps one beside each cached
environment) mapping backends to the modules earlier hooks imported from the
environment or the standard library; the worker imports those too, once, before
it says it is ready. Each child tells kiln what its hook imported on top, for
the next worker. Each hook runs in a child forked from the worker, which runs
pyproject-hooks' in-process script as ``python SCRIPT HOOK DIR`` would, and
exits the way a fresh interpreter exits (atexit handlers, threads joined,
output flushed). Nothing a hook does to its process reaches the next hook.

The protocol. stdin: one JSON request per line, ``{"id": N, "argv": [SCRIPT,
HOOK, DIR], "cwd": DIR}``, one at a time. stdout, with stderr merged into it by
kiln: whatever the hooks print, and status lines ``NUL TOKEN WORD ...``::

    ready SYS_PATH_JSON   the backend is imported, silently: send requests
    cold REASON           a forked child would not match a fresh interpreter; exiting
    imported NAMES_JSON   (from a hook's child, as it exits after a successful hook)
                          modules the hook imported from the environment or the
                          standard library
    done ID STATUS        the hook's child exited (STATUS: subprocess returncode)

A child has flushed its output and exited before its ``done`` line is written
to the same pipe, so kiln reads a hook's whole output before the line.

The worker exits at the end of its input: when kiln is done with it, and when
kiln dies. If a hook is running then, it is stopped (SIGTERM, then SIGKILL) with
everything it started. SIGTERM while kiln lives (kiln stopping the process
group on Ctrl-C) makes the worker wait for the hook, which got the signal too,
and exit: as a hook started directly by kiln would be given time to.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time

# Annotations only: typing costs an import the worker and its children need not pay.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType, ModuleType
    from typing import Any, NoReturn

    from . import _kiln_worker_imports as ahead


def _load_sibling(name: str) -> ModuleType:
    """Import ``name``.py from this script's directory, by path, whatever ``sys.path`` is.

    Not through ``sys.path``: with safe_path (``-P``, ``PYTHONSAFEPATH``) this
    directory is not on it, and otherwise the worker takes it off before backends
    import anything. Registered under a private name no backend imports.
    """
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.realpath(__file__)), name + ".py")  # noqa: PTH118, PTH120
    private = "_kiln_worker." + name
    spec = importlib.util.spec_from_file_location(private, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[private] = module
    spec.loader.exec_module(module)
    return module


if not TYPE_CHECKING:
    ahead = _load_sibling("_kiln_worker_imports")

# How long a hook may take to stop once kiln is gone, before SIGKILL.
ORPHAN_GRACE_SECONDS = 2.0
# prctl(2) option: the signal this process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


class Fork(BaseException):
    """Raised in a new child to leave the worker's loop; carries the hook to run."""

    def __init__(
        self, request: dict[str, Any], code: CodeType | None, imports: ahead.ImportReport
    ) -> None:
        super().__init__()
        self.request = request
        self.code = code
        self.imports = imports


# Set in a hook's child: reports what the hook imported when it exits successfully.
_import_report: ahead.ImportReport | None = None


def main(argv: list[str]) -> None:
    token, kiln_pid, backend = argv[1].encode(), int(argv[2]), argv[3]
    _drop_own_directory()
    status = Status(token)
    reason = ahead.import_backend(backend)
    if reason is None and len(argv) > 4:
        reason = ahead.warm_up(ahead.warm_imports(argv[4], backend))
    # Anything printed while importing would go missing from every hook's output.
    sys.stdout.flush()
    sys.stderr.flush()
    if reason is not None:
        status.write(b"cold " + reason.encode())
        return
    parent_death = _parent_death_signal()
    if parent_death is not None:
        parent_death(signal.SIGTERM)
        if os.getppid() != kiln_pid:
            return  # kiln died before the signal was armed
    worker = Worker(status, kiln_pid, parent_death, ahead.ImportOrigins.of_this_interpreter())
    status.write(b"ready " + json.dumps(sys.path).encode())
    worker.serve()


def _drop_own_directory() -> None:
    """Take this script's directory off ``sys.path``, where running it put it."""
    if getattr(sys.flags, "safe_path", False) or not sys.path:
        return
    here = os.path.dirname(os.path.realpath(__file__))  # noqa: PTH120
    if os.path.realpath(sys.path[0] or os.curdir) == here:
        del sys.path[0]


def _parent_death_signal() -> Callable[[int], None] | None:
    """prctl(PR_SET_PDEATHSIG, signum) as a callable, on Linux; else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, ImportError):
        return None

    def arm(signum: int) -> None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)

    return arm


class Status:
    """Status lines on stdout, unbuffered, marked so that no hook output can pass for one."""

    def __init__(self, token: bytes) -> None:
        self.prefix = b"\0" + token + b" "

    def write(self, words: bytes) -> None:
        data = memoryview(self.prefix + words + b"\n")
        while data:
            data = data[os.write(1, data) :]


class Requests:
    """Lines from stdin, read with os.read: no buffer for a forked child to inherit."""

    def __init__(self) -> None:
        self.buffer = b""
        self.closed = False

    def pop(self) -> bytes | None:
        end = self.buffer.find(b"\n")
        if end < 0:
            return None
        line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
        return line

    def fill(self) -> bool:
        """Read what is there; False at end of input (kiln closed it, or died)."""
        data = os.read(0, 65536)
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True


class Worker:
    def __init__(
        self,
        status: Status,
        kiln_pid: int,
        parent_death: Callable[[int], None] | None,
        origins: ahead.ImportOrigins,
    ) -> None:
        self.status = status
        self.origins = origins
        self.pid = os.getpid()
        self.kiln_pid = kiln_pid
        self.parent_death = parent_death
        self.requests = Requests()
        self.scripts: dict[str, CodeType | None] = {}
        self.terminating = False
        # SIGTERM wakes select() through this pipe; the handler only takes note.
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.use_pidfd = hasattr(os, "pidfd_open")

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.terminating = True

    def serve(self) -> None:
        while not self.terminating:
            line = self._next_request()
            if line is None:
                return
            request = json.loads(line)
            code = self._compiled(request["argv"][0])
            returncode = self._run(request, code)
            self.status.write(f"done {request['id']} {returncode}".encode())

    def _next_request(self) -> bytes | None:
        while True:
            line = self.requests.pop()
            if line is not None:
                return line
            ready = select.select([0, self.wake_read], [], [])[0]
            if self.wake_read in ready:
                self._drain_wake()
            if self.terminating:
                return None
            if 0 in ready and not self.requests.fill():
                return None  # kiln is done with us, or gone; no hook is running

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_read, 512)

    def _compiled(self, script: str) -> CodeType | None:
        """The in-process script, compiled once for all children (None: let the child fail)."""
        if script not in self.scripts:
            try:
                with open(script, "rb") as stream:  # noqa: PTH123
                    source = stream.read()
                self.scripts[script] = compile(source, script, "exec", dont_inherit=True)
            except (OSError, SyntaxError, ValueError):
                self.scripts[script] = None
        return self.scripts[script]

    def _run(self, request: dict[str, Any], code: CodeType | None) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        # A SIGTERM between fork and the child's reset must not run our handler there.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        imports = ahead.ImportReport(self.status, self.origins, str(request["cwd"]))
        pid = os.fork()
        if pid == 0:
            self._become_child(mask)
            raise Fork(request, code, imports)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return self._wait(pid)

    def _become_child(self, mask: set[int | signal.Signals]) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.close(self.wake_read)
        os.close(self.wake_write)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if self.parent_death is not None:
            # The worker dying takes its hook along (kiln would hear nothing else).
            self.parent_death(signal.SIGKILL)
            if os.getppid() != self.pid:
                os._exit(1)  # it died before the signal was armed
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)

    def _wait(self, pid: int) -> int:
        pidfd = self._pidfd(pid)
        started = time.monotonic()
        try:
            while True:
                watched = [0, self.wake_read] + ([pidfd] if pidfd is not None else [])
                # Without a pidfd, poll: often at first, then at most every 50 ms.
                elapsed = time.monotonic() - started
                timeout = None if pidfd is not None else min(0.05, max(0.0005, elapsed / 20))
                ready = select.select(watched, [], [], timeout)[0]
                if pidfd is None or pidfd in ready:
                    done, status = os.waitpid(pid, 0 if pidfd is not None else os.WNOHANG)
                    if done:
                        return os.waitstatus_to_exitcode(status)
                if self.wake_read in ready:
                    self._drain_wake()
                if 0 in ready and not self.requests.fill():
                    self._orphaned(pid)
                if self.terminating and os.getppid() != self.kiln_pid:
                    self._orphaned(pid)
                # SIGTERM while kiln lives: kiln is stopping the whole process
                # group; the hook got the signal too. Wait for it, then leave.
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _pidfd(self, pid: int) -> int | None:
        if self.use_pidfd:
            try:
                return os.pidfd_open(pid)
            except OSError:
                self.use_pidfd = False  # old kernel or a sandbox: poll instead
        return None

    def _orphaned(self, pid: int) -> NoReturn:
        """kiln is gone: stop the running hook and all it started, then this worker."""
        _signal_own_group(signal.SIGTERM)
        deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.01)
        _signal_own_group(signal.SIGKILL)  # stragglers, and this worker
        os._exit(1)


def _signal_own_group(signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(0, signum)


def run_hook(request: dict[str, Any], code: CodeType | None) -> None:
    """Run the in-process script in this child as ``python SCRIPT HOOK DIR`` would."""
    import importlib
    import importlib.machinery

    argv = [str(arg) for arg in request["argv"]]
    script = argv[0]
    os.chdir(request["cwd"])
    sys.argv = argv
    if not getattr(sys.flags, "safe_path", False):
        sys.path.insert(0, os.path.dirname(os.path.realpath(script)))  # noqa: PTH120
    importlib.invalidate_caches()
    if code is None:
        with open(script, "rb") as stream:  # noqa: PTH123
            code = compile(stream.read(), script, "exec", dont_inherit=True)
    main_module = type(sys)("__main__")
    main_module.__dict__.update(
        __file__=script,
        __cached__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", script),
        __package__=None,
        __spec__=None,
        __builtins__=sys.modules["builtins"],
    )
    sys.modules["__main__"] = main_module
    # As the interpreter runs a script: output flushed once it ends, however it ends.
    try:
        exec(code, main_module.__dict__)
    except SystemExit as exit:
        _flush_io()
        finish(_exit_status(exit))
    except BaseException as error:
        _flush_io()
        # What the interpreter prints for an uncaught exception, from the script's frame on.
        trace = error.__traceback__
        if trace is not None and trace.tb_frame.f_code is run_hook.__code__:
            trace = trace.tb_next
        # The interpreter's display prefers the exception's own traceback.
        sys.excepthook(type(error), error.with_traceback(trace), trace)
        finish(1, interrupted=isinstance(error, KeyboardInterrupt))
    _flush_io()
    finish(0)


def _flush_io() -> None:
    for stream in (sys.stderr, sys.stdout):
        if stream is not None:
            with contextlib.suppress(BaseException):
                stream.flush()


def _exit_status(exit: SystemExit) -> int:
    """The exit status the interpreter makes of an uncaught SystemExit, printing as it does."""
    code = exit.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{code}\n")
    return 1


def finish(status: int, *, interrupted: bool = False) -> NoReturn:
    """Exit as the interpreter does, less tearing down every module.

    A fresh interpreter waits for its threads, runs its atexit callbacks and
    flushes its output, and so does this. It then tears its modules down and
    frees what is left; in a forked child that touches every copy-on-write page
    shared with the worker, tens of milliseconds per hook. The one difference:
    objects still alive at the end are not finalized (a file a backend left open
    in a global is not flushed by its ``__del__``; atexit and ``weakref.finalize``
    callbacks, which is what tempfile and logging use, do run).
    """
    threading = sys.modules.get("threading")
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(BaseException):
            shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(BaseException):
                stream.flush()
    if status == 0 and not interrupted and _import_report is not None:
        _import_report.send()  # after the hook's output: kiln reads it first
    if interrupted:
        # As the interpreter exits after an uncaught KeyboardInterrupt: by SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xFF)


def entry() -> None:
    global _import_report
    try:
        main(sys.argv)
    except Fork as fork:
        request, code, _import_report = fork.request, fork.code, fork.imports
    else:
        finish(0)  # the worker: no hook is running
    # The worker's frames are gone; from here on this process is the hook's.
    run_hook(request, code)


if __name__ == "__main__":
    entry()
