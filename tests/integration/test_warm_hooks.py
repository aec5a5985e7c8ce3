"""The warm hook runner: each hook in a fresh child forked from a worker per environment.

Most tests build a small setuptools project whose ``setup.py`` is the probe: setuptools
runs it inside every hook (get_requires_for_build_sdist, build_sdist,
get_requires_for_build_wheel, build_wheel), and setuptools' own
``setuptools.build_meta`` is the backend, installed, without backend-path, so the
warm runner serves it. The probe reports what its hook process sees, leaves traces
that the next hook must not see, and can fail, kill itself or hang in a chosen hook.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import cast

import pytest

import kiln
from kiln.environments.current import CurrentEnvironment
from kiln.errors import ConfigError, HookFailedError
from kiln.headstart import WORKER_SCRIPT
from kiln.hooks import Backend
from kiln.hooks.runners import select_runner_pool
from kiln.hooks.warm import WarmRunnerPool, WorkerPlan
from kiln.process import BuildLog, run_logged
from kiln.project import Project
from tests.conftest import ProjectFactory
from tests.helpers import (
    FIXTURES,
    pid_alive,
    run_kiln,
    wait_for_file,
    wheel_files,
    wheel_metadata,
)

pytestmark = pytest.mark.integration

PROBE_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "kiln-warm-probe"
version = "1.0.0"
"""

PROBE_SETUP = '''\
"""kiln's warm-runner probe: setuptools runs this file inside every hook.

KILN_TEST_WARM_PROBE=PATH: write what this hook sees to PATH-<hook>.json, then leave
    traces in the process (a variable, a module global) for the next hook to find,
    and import a standard module and a module of the project's own.
KILN_TEST_WARM_ACTION=WHAT:HOOK: in HOOK, print a marker and then WHAT: "fail"
    (raise), "kill" (SIGKILL itself), "hang" (start `sleep`, write
    "<pid> <parent pid> <sleep pid>" to $KILN_TEST_WARM_PIDS, sleep), or
    "kill-parent" (SIGKILL its parent process, then sleep).
"""
import sys

# Modules this file imports below: were they imported before the hook got here?
AHEAD = {name: name in sys.modules for name in ("xml.dom.minidom", "kiln_warm_probe_helper")}

import json
import os
import signal
import subprocess
import sys
import time

import setuptools
from setuptools import setup

MARKER = "KILN-WARM-PROBE: output before"


def running_hook():
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_filename.endswith("_in_process.py"):
            return frame.f_code.co_name
        frame = frame.f_back
    return "?"


hook = running_hook()
probe = os.environ.get("KILN_TEST_WARM_PROBE")
if probe:
    report = {
        "hook": hook,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "leaked_variable": os.environ.get("KILN_WARM_PROBE_LEAK"),
        "leaked_global": getattr(setuptools, "_kiln_warm_probe_leak", None),
        "backend": os.environ.get("_PYPROJECT_HOOKS_BUILD_BACKEND"),
        "marker": os.environ.get("KILN_TEST_MARKER"),
        "main": getattr(sys.modules["__main__"], "__file__", None),
        "stdin": sys.stdin.read(),
        "ahead": AHEAD,
    }
    with open(f"{probe}-{hook}.json", "w", encoding="utf-8") as stream:
        json.dump(report, stream)
    os.environ["KILN_WARM_PROBE_LEAK"] = hook
    setuptools._kiln_warm_probe_leak = hook
    import xml.dom.minidom

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import kiln_warm_probe_helper
    except ImportError:
        pass  # not in the sdist: the wheel's hooks run without it

what, _, when = os.environ.get("KILN_TEST_WARM_ACTION", "").partition(":")
if hook == when:
    print(f"{MARKER} {what}", flush=True)
    if what == "fail":
        raise RuntimeError(f"kiln-warm-probe: deliberate failure in {hook}")
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "hang":
        sleeper = subprocess.Popen(["sleep", "300"])
        pids = os.environ["KILN_TEST_WARM_PIDS"]
        with open(pids + ".tmp", "w", encoding="utf-8") as stream:
            stream.write(f"{os.getpid()} {os.getppid()} {sleeper.pid}")
        os.replace(pids + ".tmp", pids)
        time.sleep(300)
    if what == "kill-parent":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)

setup()
'''

HOOKS = (
    "get_requires_for_build_sdist",
    "build_sdist",
    "get_requires_for_build_wheel",
    "build_wheel",
)


@pytest.fixture
def probe_project(tmp_path: Path) -> Path:
    source = tmp_path / "projects" / "warm_probe"
    (source / "kiln_warm_probe").mkdir(parents=True)
    (source / "kiln_warm_probe" / "__init__.py").write_text('"""Built by the warm probe."""\n')
    (source / "pyproject.toml").write_text(PROBE_PYPROJECT)
    (source / "setup.py").write_text(PROBE_SETUP)
    (source / "kiln_warm_probe_helper.py").write_text('"""The project\'s own module."""\n')
    return source


def read_reports(prefix: Path, hooks: tuple[str, ...] = HOOKS) -> dict[str, dict[str, object]]:
    return {hook: json.loads(Path(f"{prefix}-{hook}.json").read_text()) for hook in hooks}


# --------------------------------------------------------------------------- same results


@pytest.mark.parametrize("fixture", ["setuptools_pyproject", "hatchling_project", "flit_project"])
def test_warm_and_plain_build_the_same_artifacts_and_logs(tmp_path: Path, fixture: str) -> None:
    built: dict[str, dict[str, object]] = {}
    for runner in ("plain", "warm"):
        source = tmp_path / runner / fixture
        shutil.copytree(FIXTURES / fixture, source)
        result = kiln.build(source, tmp_path / runner / "out", hook_runner=runner)
        sdist, wheel = (artifact.path for artifact in result.artifacts)
        with tarfile.open(sdist) as archive:
            members = sorted(archive.getnames())
        assert result.log_path is not None
        built[runner] = {
            "names": [sdist.name, wheel.name],
            "sdist": members,
            "wheel": wheel_files(wheel),
            "metadata": wheel_metadata(wheel),
            "log": hook_log(result.log_path.read_text(), tmp_path / runner),
        }
    assert built["warm"] == built["plain"]


def hook_log(text: str, root: Path) -> list[str]:
    """The log from the first hook on, without what differs from run to run."""
    text = text[text.index("\n=== hook ") :].replace(str(root), "<root>")
    text = re.sub(r"runs-v1/[^/\s]+", "runs-v1/<run>", text)
    # Temporary names: the hooks' handoff directories, kiln's staging directories.
    text = re.sub(r"(hooks/\w+-|\.kiln-staging-|\.tmp-)[a-z0-9_]{8}", r"\1<tmp>", text)
    return text.splitlines()


def test_each_hook_runs_in_a_fresh_child_of_one_worker(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    monkeypatch.setenv("KILN_TEST_MARKER", "passed through")
    result = kiln.build(probe_project, tmp_path / "out", hook_runner="warm")
    assert [a.kind for a in result.artifacts] == ["sdist", "wheel"]

    reports = read_reports(tmp_path / "probe")
    pids = {report["pid"] for report in reports.values()}
    parents = {report["ppid"] for report in reports.values()}
    assert len(pids) == 4, "every hook must run in a process of its own"
    [worker] = parents
    assert worker != os.getpid(), "the hooks must be forked by a worker, not started by kiln"
    assert isinstance(worker, int)
    assert not pid_alive(worker), "the worker must exit when the build is over"
    for hook, report in reports.items():
        # Nothing an earlier hook did to its process is seen by a later one.
        assert report["leaked_variable"] is None, hook
        assert report["leaked_global"] is None, hook
        assert report["backend"] == "setuptools.build_meta"
        assert report["marker"] == "passed through"
        assert str(report["main"]).endswith("_in_process.py")
        assert report["stdin"] == ""
    # The sdist's hooks run in the project, the wheel's in the unpacked sdist.
    assert reports["get_requires_for_build_sdist"]["cwd"] == str(probe_project)
    assert reports["build_sdist"]["cwd"] == str(probe_project)
    unpacked = reports["build_wheel"]["cwd"]
    assert reports["get_requires_for_build_wheel"]["cwd"] == unpacked
    assert Path(str(unpacked)).name == "kiln_warm_probe-1.0.0"
    assert Path(str(unpacked)).parent.name == "from-sdist"


def test_plain_hooks_are_children_of_kiln(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe above tells the two runners apart.
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    kiln.build(probe_project, tmp_path / "out", ["wheel"], hook_runner="plain")
    reports = read_reports(tmp_path / "probe", HOOKS[2:])
    assert {report["ppid"] for report in reports.values()} == {os.getpid()}


def test_the_worker_serves_hooks_under_safe_path(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With safe_path the script's directory is not on sys.path: the worker must
    # still find its sibling module, or every hook would fall back to plain.
    monkeypatch.setenv("PYTHONSAFEPATH", "1")
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    completed = run_kiln(probe_project, "-w", "--hook-runner", "warm", "-vv")
    assert completed.returncode == 0, completed.stderr
    assert "hook runner: warm (worker" in completed.stderr
    reports = read_reports(tmp_path / "probe", HOOKS[2:])
    [worker] = {report["ppid"] for report in reports.values()}
    assert isinstance(worker, int)
    # A hook run plain is a child of the kiln process, which has exited; the
    # worker's hooks share a parent that is neither kiln nor this test.
    assert worker != os.getpid()
    assert len({report["pid"] for report in reports.values()}) == 2


def test_auto_is_warm_here(probe_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KILN_HOOK_RUNNER", raising=False)
    completed = run_kiln(probe_project, "-w", "-vv")
    assert completed.returncode == 0, completed.stderr
    assert "hook runner: warm (worker" in completed.stderr
    assert select_runner_pool("auto").name == "warm"


@pytest.mark.parametrize("fixture", ["intree_backend", "hook_raises"])
def test_in_tree_backends_run_plain(project: ProjectFactory, fixture: str) -> None:
    completed = run_kiln(project(fixture), "-w", "--hook-runner", "warm", "-vv")
    assert "hook runner: plain (backend-path)" in completed.stderr
    assert "hook runner: warm (worker" not in completed.stderr
    assert completed.returncode == (0 if fixture == "intree_backend" else 1), completed.stderr


# A hook's process ends as a fresh interpreter's does: same output, order and status.
ENDINGS = {
    "atexit": "import atexit\natexit.register(lambda: print('atexit ran'))\nprint('main')\n",
    "exit-message": "print('buffered')\nimport sys\nsys.exit('a message')\n",
    "exit-code": "print('no line end', end='')\nimport sys\nsys.exit(3)\n",
    "exception": "print('buffered')\ndef f():\n    raise ValueError('boom')\nf()\n",
    "threads": (
        "import sys, threading, time\n"
        "def late():\n    time.sleep(0.1)\n    sys.stderr.write('thread, stderr\\n')\n"
        "threading.Thread(target=late).start()\nprint('main, stdout')\n"
    ),
    "main-module": (
        "import os, sys\n"
        "main = sys.modules['__main__']\n"
        "print(__name__, main.__file__ == __file__, main.__spec__, sys.argv[1:], os.getcwd())\n"
        "print(sys.path[0] == os.path.dirname(os.path.realpath(__file__)), sys.stdin.read())\n"
    ),
}


def test_a_hook_process_ends_as_a_fresh_interpreter_would(tmp_path: Path) -> None:
    environ = dict(os.environ, _PYPROJECT_HOOKS_BUILD_BACKEND="json")
    environ.pop("PYTHONUNBUFFERED", None)  # buffered output is the interesting case
    log = BuildLog(tmp_path / "build.log")
    plan = WorkerPlan(sys.executable, "json", environ, str(tmp_path), None, None)
    worker, reason = plan.start()
    assert worker is not None, reason
    try:
        for name, code in ENDINGS.items():
            script = tmp_path / f"{name}.py"
            script.write_text(code)
            command = [sys.executable, str(script), "an-argument"]
            warm = worker.call(command, str(tmp_path), log)
            plain = run_logged(command, cwd=tmp_path, log=log, env=environ)
            assert warm == plain, name
    finally:
        worker.stop()


# --------------------------------------------------------------------------- failures


def error_report(stderr: str) -> list[str]:
    """The error and the output tail kiln prints, without what differs from run to run."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("kiln: error:"))
    report = [line for line in lines[start:] if not line.startswith("  full log:")]
    return [re.sub(r"runs-v1/[^/\s]+", "runs-v1/RUN", line) for line in report]


@pytest.mark.parametrize(
    ("action", "error"),
    [
        ("fail", "the build backend's build_wheel hook failed (exit status 1)"),
        ("kill", "the build backend's build_wheel hook failed (killed by SIGKILL)"),
    ],
)
def test_a_failing_hook_is_reported_as_with_plain(
    probe_project: Path, monkeypatch: pytest.MonkeyPatch, action: str, error: str
) -> None:
    monkeypatch.setenv("KILN_TEST_WARM_ACTION", f"{action}:build_wheel")
    reports = {}
    for runner in ("plain", "warm"):
        completed = run_kiln(probe_project, "-w", "--hook-runner", runner)
        assert completed.returncode == 1, completed.stderr
        reports[runner] = error_report(completed.stderr)
    assert reports["warm"] == reports["plain"]
    warm = reports["warm"]
    assert warm[0] == f"kiln: error: {error}"
    assert f"  | KILN-WARM-PROBE: output before {action}" in warm
    if action == "fail":
        assert "  | RuntimeError: kiln-warm-probe: deliberate failure in build_wheel" in warm
        assert not any("kiln_worker" in line for line in warm)
    else:
        assert "  | (killed by signal SIGKILL)" in warm


def test_a_dead_worker_fails_the_hook_and_the_next_hook_gets_a_new_one(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    monkeypatch.setenv("KILN_TEST_WARM_ACTION", "kill-parent:get_requires_for_build_wheel")
    runners = WarmRunnerPool()
    try:
        backend = kiln_interpreter_backend(probe_project, tmp_path, runners)
        backend.get_requires("sdist", {})
        started = time.monotonic()
        with pytest.raises(HookFailedError) as caught:
            backend.get_requires("wheel", {})
        # The hook, orphaned, went down with its worker: no 60 s wait.
        assert time.monotonic() - started < 30
        assert "killed by SIGKILL" in str(caught.value)
        assert "KILN-WARM-PROBE: output before kill-parent" in caught.value.output_tail
        backend.build("sdist", tmp_path / "sdist", {})
    finally:
        runners.close()
    hooks = ("get_requires_for_build_sdist", "get_requires_for_build_wheel", "build_sdist")
    first, dead, after = read_reports(tmp_path / "probe", hooks).values()
    assert first["ppid"] == dead["ppid"] != os.getpid()
    assert after["ppid"] not in (first["ppid"], os.getpid())
    assert list((tmp_path / "sdist").glob("*.tar.gz"))


def test_a_worker_that_died_between_hooks_is_replaced(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    runners = WarmRunnerPool()
    try:
        backend = kiln_interpreter_backend(probe_project, tmp_path, runners)
        backend.get_requires("sdist", {})
        [first] = read_reports(tmp_path / "probe", HOOKS[:1]).values()
        worker = first["ppid"]
        assert isinstance(worker, int) and worker != os.getpid()
        os.kill(worker, signal.SIGKILL)
        assert not pid_alive(worker)
        backend.build("sdist", tmp_path / "sdist", {})
    finally:
        runners.close()
    [second] = read_reports(tmp_path / "probe", HOOKS[1:2]).values()
    assert second["ppid"] not in (worker, os.getpid())


def test_the_worker_restarts_when_what_it_imported_may_have_changed(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "extra-site"
    extra.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(extra))
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    runners = WarmRunnerPool()
    try:
        backend = kiln_interpreter_backend(probe_project, tmp_path, runners)
        backend.get_requires("sdist", {})
        backend.build("sdist", tmp_path / "sdist", {})
        # Something is installed into a directory on the worker's sys.path.
        (extra / "kiln_new_module.py").write_text("")
        backend.get_requires("wheel", {})
        # The hook environment changes.
        monkeypatch.setenv("KILN_TEST_MARKER", "changed")
        backend = kiln_interpreter_backend(probe_project, tmp_path, runners)
        backend.get_requires("editable", {})
    finally:
        runners.close()
    hooks = (*HOOKS[:3], "get_requires_for_build_editable")
    reports = read_reports(tmp_path / "probe", hooks)
    parents = [report["ppid"] for report in reports.values()]
    assert parents[0] == parents[1]
    assert len(set(parents)) == 3
    assert os.getpid() not in parents
    assert reports["get_requires_for_build_editable"]["marker"] == "changed"


def test_what_hooks_import_is_imported_ahead_next_time(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    runs = []
    for run in ("first", "second"):
        monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / run))
        kiln.build(probe_project, tmp_path / run / "out", hook_runner="warm", cache_dir=cache)
        runs.append(read_reports(tmp_path / run))
    first, second = runs
    assert first["get_requires_for_build_sdist"]["ahead"] == {
        "xml.dom.minidom": False,
        "kiln_warm_probe_helper": False,
    }
    for hook, report in second.items():
        ahead = report["ahead"]
        assert isinstance(ahead, dict)
        assert ahead["xml.dom.minidom"], f"{hook}: the first run's import was not made ahead"
        # The project's own modules are never imported ahead: they may change.
        assert not ahead["kiln_warm_probe_helper"], hook
        # Still a fresh child per hook, and nothing leaks from one to the next.
        assert report["leaked_variable"] is None, hook
        assert report["ppid"] != os.getpid(), hook
    [notes] = (cache / "envs-v1").glob("*/kiln-warm-imports.json")
    learned = json.loads(notes.read_text())["setuptools.build_meta"]
    assert "xml.dom.minidom" in learned
    assert "kiln_warm_probe_helper" not in learned


SIDE_EFFECTS = {
    "filters-warnings": "import warnings\nwarnings.filterwarnings('ignore', message='kiln')\n",
    "starts-a-thread": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    ),
    "sets-a-variable": "import os\nos.environ['KILN_TEST_SIDE_EFFECT'] = '1'\n",
}


@pytest.mark.parametrize("side_effect", sorted(SIDE_EFFECTS))
def test_importing_ahead_is_given_up_when_it_would_change_every_hook(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side_effect: str
) -> None:
    extra = tmp_path / "extra-site"
    extra.mkdir()
    (extra / "kiln_side_effect.py").write_text(SIDE_EFFECTS[side_effect])
    monkeypatch.setenv("PYTHONPATH", str(extra))
    report, learned = first_hook_with_notes(
        probe_project, tmp_path, monkeypatch, ["xml.dom.minidom", "kiln_side_effect"]
    )
    assert report["ppid"] != os.getpid(), "the hook should still run warm"
    assert report["ahead"] == {"xml.dom.minidom": False, "kiln_warm_probe_helper": False}
    assert learned is False


def test_importing_ahead_serves_hooks_from_the_notes(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, learned = first_hook_with_notes(
        probe_project, tmp_path, monkeypatch, ["xml.dom.minidom", "no.such.module"]
    )
    assert report["ahead"] == {"xml.dom.minidom": True, "kiln_warm_probe_helper": False}
    # A module that no longer imports is skipped, and the notes keep what they had.
    assert isinstance(learned, list)
    assert learned[:2] == ["xml.dom.minidom", "no.such.module"]


def first_hook_with_notes(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modules: list[str]
) -> tuple[dict[str, object], object]:
    """Run the probe's first hook warm, with notes listing ``modules`` for its backend;
    what the hook reported, and what the notes hold for the backend afterwards."""
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    notes = tmp_path / "kiln-warm-imports.json"
    notes.write_text(json.dumps({"setuptools.build_meta": modules}))
    runners = WarmRunnerPool()
    try:
        kiln_interpreter_backend(probe_project, tmp_path, runners, notes).get_requires("sdist", {})
    finally:
        runners.close()
    [report] = read_reports(tmp_path / "probe", HOOKS[:1]).values()
    return report, json.loads(notes.read_text())["setuptools.build_meta"]


# --------------------------------------------------------------------------- head start

STARTED_AHEAD = re.compile(
    r"hook runner: warm \(worker (\d+), setuptools.build_meta, started ahead\)"
)
STOPPED_AHEAD = re.compile(r"stopping the worker started ahead \((\d+)\): not the one needed")


def build_logging_warm(
    source: Path, out: Path, cache: Path, caplog: pytest.LogCaptureFixture, **options: object
) -> str:
    """Build with the warm runner; what kiln.hooks.warm logged at DEBUG."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="kiln.hooks.warm"):
        kiln.build(source, out, hook_runner="warm", cache_dir=cache, **options)  # type: ignore[arg-type]
    return caplog.text


def test_the_next_run_takes_the_worker_started_ahead(
    probe_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "first"))
    first = build_logging_warm(probe_project, tmp_path / "out1", cache, caplog)
    assert not STARTED_AHEAD.search(first)
    [plans] = (cache / "projects-v1").glob("*.worker.json")
    assert plans.stat().st_mode & 0o777 == 0o600, "the plan holds the hooks' variables"
    [(source, plan)] = json.loads(plans.read_text()).items()
    assert (source, plan["backend"]) == (str(probe_project), "setuptools.build_meta")

    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "second"))
    # The variables differ from the first run's (the plan keeps their digest): no worker
    # is started ahead, so none has to be stopped.
    second = build_logging_warm(probe_project, tmp_path / "out2", cache, caplog)
    assert not STOPPED_AHEAD.search(second)
    assert not STARTED_AHEAD.search(second)

    # The same variables as the run before: the hooks get the worker started ahead.
    third = build_logging_warm(probe_project, tmp_path / "out3", cache, caplog)
    [worker] = STARTED_AHEAD.findall(third)
    reports = read_reports(tmp_path / "second")
    assert {report["ppid"] for report in reports.values()} == {int(worker)}
    assert not pid_alive(int(worker)), "the worker must exit when the build is over"
    for hook, report in reports.items():
        assert report["leaked_variable"] is None, hook


def test_a_worker_started_ahead_serves_no_replaced_environment(
    probe_project: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    build_logging_warm(probe_project, tmp_path / "out1", cache, caplog)
    # --refresh makes the environment again: the worker started ahead imported the old one.
    second = build_logging_warm(probe_project, tmp_path / "out2", cache, caplog, refresh=True)
    [stopped] = STOPPED_AHEAD.findall(second)
    assert not pid_alive(int(stopped))
    assert not STARTED_AHEAD.search(second)


def test_a_worker_started_ahead_goes_when_the_run_fails_before_a_hook(
    probe_project: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    build_logging_warm(probe_project, tmp_path / "out1", cache, caplog)
    pyproject = probe_project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"setuptools>=61"', '"setuptools>=>61"'))
    with pytest.raises(ConfigError):
        build_logging_warm(probe_project, tmp_path / "out2", cache, caplog)
    [stopped] = STOPPED_AHEAD.findall(caplog.text)
    assert not pid_alive(int(stopped))


# Records the modules loaded when the command line launches its first worker, and
# that worker's pid, then runs the console script as installed.
LAUNCH_RECORDER = """\
import atexit, json, sys
import kiln.headstart as headstart

record = sys.argv.pop(1)
launched = []
real_launch = headstart.launch

def launch(*args):
    result = real_launch(*args)
    pid = getattr(getattr(result, "process", None), "pid", None)
    launched.append({"pid": pid, "modules": sorted(sys.modules)})
    return result

headstart.launch = launch
atexit.register(lambda: open(record, "w").write(json.dumps(launched)))
from kiln.__main__ import console
console()
"""


def run_recording_launches(
    tmp_path: Path, record: Path, *args: str | Path
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """The real CLI, with a record of the workers it launched."""
    recorder = tmp_path / "launch_recorder.py"
    recorder.write_text(LAUNCH_RECORDER)
    result = subprocess.run(
        [sys.executable, str(recorder), str(record), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result, json.loads(record.read_text())


def test_the_command_line_starts_the_worker_before_importing_the_rest_of_kiln(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    options = ("--cache-dir", tmp_path / "cache", "--hook-runner", "warm", "-vv")
    first = run_kiln(probe_project, "-o", tmp_path / "out1", *options)
    assert first.returncode == 0, first.stderr

    second, launched = run_recording_launches(
        tmp_path, tmp_path / "launched.json", probe_project, "-o", tmp_path / "out2", *options
    )
    assert second.returncode == 0, second.stderr
    [worker] = STARTED_AHEAD.findall(second.stderr)
    ahead = launched[0]
    assert ahead["pid"] == int(worker), "the first worker launched is the one started ahead"
    # Started before the heavy parts of kiln were imported: they load while it starts.
    modules = set(cast(list[str], ahead["modules"]))
    heavy = {"kiln.builder", "kiln.hooks", "kiln.environments", "logging", "dataclasses", "typing"}
    assert not modules & heavy
    assert {r["ppid"] for r in read_reports(tmp_path / "probe").values()} == {int(worker)}
    assert not pid_alive(int(worker)), "the worker must exit when the build is over"


def test_the_command_line_stops_a_worker_started_ahead_that_no_build_takes(
    probe_project: Path, tmp_path: Path
) -> None:
    options = ("--cache-dir", tmp_path / "cache", "--hook-runner", "warm")
    first = run_kiln(probe_project, "-o", tmp_path / "out1", *options)
    assert first.returncode == 0, first.stderr
    report_dir = tmp_path / "a-directory"
    report_dir.mkdir()
    # A usage error found after the worker was started ahead: no build takes it.
    second, launched = run_recording_launches(
        tmp_path, tmp_path / "launched.json", probe_project, "--report", report_dir, *options
    )
    assert second.returncode == 2, second.stderr
    assert "is a directory" in second.stderr
    [ahead] = launched
    # Gone by the time kiln is: killed, not left to notice that its input closed.
    assert not pid_alive(cast(int, ahead["pid"]), seconds=0)


def test_projects_that_share_a_directory_name_keep_their_own_plans(
    probe_project: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    # Another project in a directory of the same name, with another backend.
    namesake = tmp_path / "elsewhere" / probe_project.name
    shutil.copytree(FIXTURES / "flit_project", namesake)
    build_logging_warm(probe_project, tmp_path / "out1", cache, caplog)
    build_logging_warm(namesake, tmp_path / "out2", cache, caplog)
    third = build_logging_warm(probe_project, tmp_path / "out3", cache, caplog)
    assert STARTED_AHEAD.search(third), "the namesake's build replaced this project's plan"
    assert not STOPPED_AHEAD.search(third)


def test_a_relative_pythonpath_runs_plain(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "relative-dir")
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    runners = WarmRunnerPool()
    try:
        kiln_interpreter_backend(probe_project, tmp_path, runners).get_requires("sdist", {})
    finally:
        runners.close()
    [report] = read_reports(tmp_path / "probe", HOOKS[:1]).values()
    assert report["ppid"] == os.getpid()


def test_without_pidfd_the_worker_polls_for_its_children(
    probe_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where os.pidfd_open is missing (macOS, old kernels), the worker polls waitpid().
    wrapper = tmp_path / "wrapper" / "no_pidfd_worker.py"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "import os, runpy, sys\n"
        "del sys.path[0]\n"
        "if hasattr(os, 'pidfd_open'):\n"
        "    del os.pidfd_open\n"
        f"runpy.run_path({str(WORKER_SCRIPT)!r}, run_name='__main__')\n"
    )
    monkeypatch.setattr("kiln.headstart.WORKER_SCRIPT", wrapper)
    monkeypatch.setenv("KILN_TEST_WARM_PROBE", str(tmp_path / "probe"))
    runners = WarmRunnerPool()
    try:
        backend = kiln_interpreter_backend(probe_project, tmp_path, runners)
        backend.get_requires("sdist", {})
        backend.build("sdist", tmp_path / "sdist", {})
    finally:
        runners.close()
    reports = read_reports(tmp_path / "probe", HOOKS[:2])
    [worker] = {report["ppid"] for report in reports.values()}
    assert worker != os.getpid()
    assert list((tmp_path / "sdist").glob("*.tar.gz"))


def kiln_interpreter_backend(
    source: Path, root: Path, runners: WarmRunnerPool, warm_imports: Path | None = None
) -> Backend:
    """The probe's backend in kiln's own interpreter, warm.

    That interpreter has setuptools (so the hooks need no environment) but not
    ``wheel``, which its setuptools needs to build wheels: these tests build no wheel.
    ``warm_imports``: the notes file on what hooks import, as a cached environment has.
    """
    environment = CurrentEnvironment(os.environ, check_requirements=False)
    environment.state_dir = warm_imports.parent if warm_imports is not None else None
    project = Project.load(source)
    log = BuildLog(root / "build.log")
    handoff = root / "hooks"
    handoff.mkdir(exist_ok=True)
    return Backend(
        project,
        environment,
        log,
        handoff_root=handoff,
        runner=runners.runner(environment, project.build_system, log),
    )


# --------------------------------------------------------------------------- no orphans


def start_hanging_build(probe_project: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    pids_file = tmp_path / "pids"
    env = dict(
        os.environ,
        KILN_TEST_WARM_ACTION="hang:build_wheel",
        KILN_TEST_WARM_PIDS=str(pids_file),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", str(probe_project), "-w", "--hook-runner", "warm"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_file(pids_file, process)
    return process, pids_file


def test_the_worker_and_its_hook_die_with_kiln(probe_project: Path, tmp_path: Path) -> None:
    process, pids_file = start_hanging_build(probe_project, tmp_path)
    hook, worker, sleeper = map(int, pids_file.read_text().split())
    assert parent_of(worker) == process.pid
    process.kill()  # SIGKILL: kiln gets no chance to clean up
    process.communicate(timeout=60)
    for pid in (worker, hook, sleeper):
        assert not pid_alive(pid, seconds=10), f"process {pid} outlived kiln"


def test_interrupting_a_warm_hook_stops_everything(probe_project: Path, tmp_path: Path) -> None:
    process, pids_file = start_hanging_build(probe_project, tmp_path)
    hook, worker, sleeper = map(int, pids_file.read_text().split())
    assert parent_of(worker) == process.pid
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    for pid in (worker, hook, sleeper):
        assert not pid_alive(pid), f"process {pid} outlived kiln"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
