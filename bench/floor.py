"""The floor: the least work any build frontend could do for a build.

One interpreter, the backend already installed, the backend imported once, and a
forked child per hook. Nothing is resolved, installed, checked or copied. kiln's
warm build is measured against this.

Two parts:

* ``setup`` (run by ``bench/run.py``, outside any timing): create a venv without pip
  from the benchmark's interpreter and install the project's static and dynamic build
  requirements into it from the wheelhouse.
* ``run`` (timed from the outside, process start to exit, like the tools): run with
  the venv's interpreter. It imports the backend, then for each hook of the flow
  forks a child that chdirs into the source tree, calls the hook and reports the
  result through a pipe, and waits for it::

      default: get_requires_for_build_sdist, build_sdist, (unpack the sdist),
               get_requires_for_build_wheel, build_wheel  (from the unpacked sdist)
      wheel:   get_requires_for_build_wheel, build_wheel  (from the project)

  Usage: ``VENV/bin/python bench/floor.py run BACKEND FLOW SRC OUTDIR SCRATCH``

The ``run`` path imports only ``os`` and ``sys`` up front (both already loaded by
every interpreter), so it costs what a frontend would have to pay at the very least.
Stdlib only; POSIX only (``os.fork``).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

FLOWS = ("default", "wheel")


# --------------------------------------------------------------------------- run (timed)


def _call_hook(backend: Any, hook: str, cwd: str, args: tuple[object, ...]) -> str:
    """Fork a child that chdirs to ``cwd`` and calls ``backend.<hook>(*args)``.

    The child sends the result back through a pipe: a file name for ``build_*``, one
    requirement per line for ``get_requires_*``. A missing optional hook counts as
    returning nothing, as PEP 517 says.
    """
    function = getattr(backend, hook, None)
    if function is None:
        return ""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read_end)
            os.chdir(cwd)
            result = function(*args)
            text = result if isinstance(result, str) else "\n".join(result)
            os.write(write_end, text.encode())
            status = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise SystemExit(f"floor: hook {hook} failed in {cwd} (exit status {code})")
    return b"".join(chunks).decode()


def _unpack_sdist(archive: str, scratch: str) -> str:
    """Unpack the sdist into ``scratch``; return its single top-level directory."""
    import tarfile

    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(scratch, filter="data")
        else:  # Python without PEP 706 filters; our own sdist, so trusted
            tar.extractall(scratch)
    (top,) = os.listdir(scratch)  # noqa: PTH208
    return os.path.join(scratch, top)  # noqa: PTH118 (pathlib costs an import)


def run(backend_name: str, flow: str, src: str, outdir: str, scratch: str) -> None:
    """The timed part: import the backend once, then fork a child per hook."""
    import importlib

    backend: Any = importlib.import_module(backend_name.partition(":")[0])
    for attribute in filter(None, backend_name.partition(":")[2].split(".")):
        backend = getattr(backend, attribute)
    settings: dict[str, object] = {}
    wheel_src = src
    if flow == "default":
        _call_hook(backend, "get_requires_for_build_sdist", src, (settings,))
        sdist = _call_hook(backend, "build_sdist", src, (outdir, settings))
        wheel_src = _unpack_sdist(os.path.join(outdir, sdist), scratch)  # noqa: PTH118
    _call_hook(backend, "get_requires_for_build_wheel", wheel_src, (settings,))
    _call_hook(backend, "build_wheel", wheel_src, (outdir, settings, None))


# --------------------------------------------------------------------------- setup (untimed)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup(
    python: str,
    venv: Path,
    src: Path,
    backend: str,
    requires: Sequence[str],
    install: Sequence[str],
    env: Mapping[str, str],
) -> None:
    """Create ``venv`` (no pip) from ``python`` and install the build requirements.

    ``install`` is the installer command up to the requirements, e.g.
    ``[uv, "pip", "install", "--python", VENV_PYTHON]``. The dynamic requirements are
    found by calling the two ``get_requires_*`` hooks, in a throwaway copy of ``src``
    (setuptools writes ``*.egg-info`` there), and installed too.
    """
    import shutil
    import subprocess
    import tempfile

    def check(cmd: Sequence[str], what: str, cwd: str | None = None) -> str:
        result = subprocess.run(
            list(cmd), cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"floor setup: {what} failed (exit status {result.returncode}):\n"
                f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    if venv.exists():
        shutil.rmtree(venv)
    check([python, "-m", "venv", "--without-pip", str(venv)], "creating the venv")
    if requires:
        check([*install, *requires], "installing the static build requirements")
    probe = (
        "import importlib, sys\n"
        "name, _, attrs = sys.argv[1].partition(':')\n"
        "b = importlib.import_module(name)\n"
        "for a in filter(None, attrs.split('.')): b = getattr(b, a)\n"
        "for hook in ('get_requires_for_build_sdist', 'get_requires_for_build_wheel'):\n"
        "    for r in getattr(b, hook, lambda s: [])({}): print('@@requires', r)\n"
    )
    with tempfile.TemporaryDirectory(prefix="floor-probe-") as tmp:
        copy = shutil.copytree(src, f"{tmp}/src")
        found = check(
            [str(venv_python(venv)), "-c", probe, backend], "calling get_requires_*", cwd=copy
        )
    # Backends print to stdout too (setuptools: "running egg_info"): keep only our lines.
    tagged = (line.partition("@@requires ") for line in found.splitlines())
    dynamic = list(dict.fromkeys(req.strip() for _, tag, req in tagged if tag))
    if dynamic:
        check([*install, *dynamic], "installing the dynamic build requirements")


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str]) -> int:
    if len(argv) == 6 and argv[0] == "run" and argv[2] in FLOWS:
        _, backend, flow, src, outdir, scratch = argv
        run(backend, flow, src, outdir, scratch)
        return 0
    sys.stderr.write(
        "usage: VENV/bin/python floor.py run BACKEND {default,wheel} SRC OUTDIR SCRATCH\n"
        "(bench/run.py creates VENV and calls this; see bench/README.md)\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
