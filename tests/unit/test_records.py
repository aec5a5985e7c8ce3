"""The JSON records kiln keeps (kiln.records): their shapes, reading, writing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kiln.records import EnvRecord, FailedRun, HookCall, WarmNotes

FAILED = FailedRun(
    reason="build_wheel failed",
    time=1700000000.5,
    source="/src/project",
    environment="/cache/envs-v1/abc",
    log="/cache/runs/r1/build.log",
)
HOOK = HookCall(
    hook="build_wheel",
    kwargs={"wheel_directory": "/place/stage", "config_settings": {"a": ["/place/x", "1"]}},
    backend="setuptools.build_meta",
    backend_path=["."],
    cwd="/place/src",
    python="/place/env/bin/python",
    environ={"PATH": f"/place/env/bin{os.pathsep}/usr/bin", "TMPDIR": "/place/tmp", "X": "y"},
    time=1700000001.0,
)
ENV = EnvRecord(key={"python": "/usr/bin/python3", "requirements": ["x==1"]}, created=17.5,
                fingerprint="0123456789abcdef")  # fmt: skip
NOTES = WarmNotes({"setuptools.build_meta": ["setuptools", "wheel"], "flit_core.buildapi": False})

RECORDS = [FAILED, HOOK, ENV, NOTES]
IDS = ["failed.json", "hook.json", "kiln-env.json", "kiln-warm-imports.json"]


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_a_record_is_read_back_as_written(record: object, tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    record.write(path)  # type: ignore[attr-defined]
    assert type(record).read(path) == record  # type: ignore[attr-defined]
    assert json.loads(path.read_text())["version"] == type(record).VERSION  # type: ignore[attr-defined]
    # In the cache, with the hooks' variables: readable by the owner alone.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_env_record_keeps_why_it_is_unfit(tmp_path: Path) -> None:
    unfit = EnvRecord(ENV.key, ENV.created, ENV.fingerprint, unfit="a build changed its files")
    unfit.write(tmp_path / "kiln-env.json")
    assert EnvRecord.read(tmp_path / "kiln-env.json") == unfit
    assert "unfit" not in ENV.to_json()


def _damaged(record: object) -> list[str]:
    """Texts of ``record``'s file as damage or another writer could leave it."""
    good = json.dumps(record.to_json())  # type: ignore[attr-defined]
    texts = ["", good[: len(good) // 2], "[]", "null", '"text"', "{", "\x00\x01", "[" * 100000]
    for field in record.to_json():  # type: ignore[attr-defined]
        for wrong in (None, 3, "text", [1], {"a": 1}, True):
            data = {**record.to_json(), field: wrong}  # type: ignore[attr-defined]
            if data != record.to_json() and type(record).from_json(data) is not None:  # type: ignore[attr-defined]
                # A value of the right type after all (a backend's notes, an optional field).
                continue
            texts.append(json.dumps(data))
    return texts


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_a_damaged_record_reads_as_none(record: object, tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    texts = _damaged(record)
    assert len(texts) > 10
    for text in texts:
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        assert type(record).read(path) is None, text[:200]  # type: ignore[attr-defined]
    path.write_bytes(b"\xff\xfe{")
    assert type(record).read(path) is None  # type: ignore[attr-defined]
    assert type(record).read(tmp_path / "missing.json") is None  # type: ignore[attr-defined]
    assert type(record).read(tmp_path) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_a_record_of_another_version_reads_as_none(record: object) -> None:
    data = {**record.to_json(), "version": 99}  # type: ignore[attr-defined]
    assert type(record).from_json(data) is None  # type: ignore[attr-defined]
    assert type(record).from_json({**data, "version": "1"}) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("record", [FAILED, HOOK, NOTES], ids=["failed", "hook", "notes"])
def test_a_record_from_before_versions_is_version_1(record: object) -> None:
    data = record.to_json()  # type: ignore[attr-defined]
    del data["version"]
    assert type(record).from_json(data) == record  # type: ignore[attr-defined]


def test_an_environment_record_without_a_version_means_rebuild() -> None:
    data = ENV.to_json()
    del data["version"]
    assert EnvRecord.from_json(data) is None


def test_the_worker_reads_the_warm_notes_as_kiln_writes_them(tmp_path: Path) -> None:
    from kiln.hooks.warm._worker._kiln_worker_imports import warm_imports

    NOTES.write(tmp_path / "notes.json")
    assert warm_imports(str(tmp_path / "notes.json"), "setuptools.build_meta") == [
        "setuptools",
        "wheel",
    ]
    assert warm_imports(str(tmp_path / "notes.json"), "flit_core.buildapi") == []


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX's")
@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_a_write_that_fails_leaves_the_old_record_and_no_partial_file(
    record: object, tmp_path: Path
) -> None:
    path = tmp_path / "record.json"
    record.write(path)  # type: ignore[attr-defined]
    before = path.read_bytes()
    # A real failed write: a file size limit (as a full disk would) stops the
    # second write part way, in a process of its own.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from kiln.records import {type(record).__name__} as R
        record = R.read({str(path)!r})
        assert record is not None
        if isinstance(record, R) and hasattr(record, "reason"):
            record.reason = "x" * 100000
        elif hasattr(record, "environ"):
            record.environ["BIG"] = "x" * 100000
        elif hasattr(record, "backends"):
            record.backends["big"] = ["x" * 100000]
        else:
            record.key["big"] = "x" * 100000
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            record.write({str(path)!r})
        except OSError as error:
            print("OSError", error.filename)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["OSError", str(path)]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_moving_a_hook_call_moves_every_path_under_the_old_place() -> None:
    moved = HOOK.moved(Path("/place"), Path("/cache/runs/r1"))
    assert moved.cwd == "/cache/runs/r1/src"
    assert moved.python == "/cache/runs/r1/env/bin/python"
    assert moved.kwargs == {
        "wheel_directory": "/cache/runs/r1/stage",
        "config_settings": {"a": ["/cache/runs/r1/x", "1"]},
    }
    assert moved.environ == {
        "PATH": f"/cache/runs/r1/env/bin{os.pathsep}/usr/bin",
        "TMPDIR": "/cache/runs/r1/tmp",
        "X": "y",
    }
    assert moved.backend_path == ["."]  # relative to cwd, which moved
    assert (moved.hook, moved.backend, moved.time) == (HOOK.hook, HOOK.backend, HOOK.time)
    assert "/place" not in json.dumps(moved.to_json())


def test_moving_a_hook_call_leaves_paths_that_only_share_a_prefix() -> None:
    call = HookCall("build_wheel", {"d": "/placement/x"}, "b", [], "/place", "/placebo/python",
                    {"P": "/place-2/bin"}, 0.0)  # fmt: skip
    moved = call.moved("/place", "/run")
    assert (moved.kwargs, moved.cwd, moved.python) == (
        {"d": "/placement/x"},
        "/run",
        "/placebo/python",
    )
    assert moved.environ == {"P": "/place-2/bin"}


@pytest.mark.parametrize("text", ["[]", '{"reason": 5}', '{"time": "noon"}', "{", ""])
def test_kiln_debug_names_a_damaged_failed_build_record(text: str, tmp_path: Path) -> None:
    from kiln.debug import load_failed_build
    from kiln.errors import UsageError

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    (run / "failed.json").write_text(text)
    with pytest.raises(UsageError, match=r"cannot read the failed build record .*failed\.json"):
        load_failed_build(run)


def test_kiln_debug_does_without_a_damaged_hook_record(tmp_path: Path) -> None:
    from kiln.debug import load_failed_build

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    FAILED.write(run / "failed.json")
    (run / "hook.json").write_text('{"hook": "build_wheel", "environ": []}')
    failed = load_failed_build(run)
    assert failed.hook is None
    assert failed.rerun_command() is None
    assert failed.reason == FAILED.reason
