"""The plans kept for a head start, and starting a worker from one (kiln.headstart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.cache import Cache
from kiln.environments.virtual import create_virtualenv, interpreter_path
from kiln.fingerprint import RECORD_NAME, fingerprint
from kiln.headstart import KEPT_PLANS, keep_plan, read_plan, start_for_build
from kiln.hooks.runners import PlainRunnerPool, TakesHeadStart, hand_head_start
from kiln.hooks.warm import WarmRunnerPool
from kiln.layout import project_place, worker_plans
from kiln.options import environment_defaults
from tests.helpers import pid_alive

ENVIRONMENT = "0123456789abcdef"


def kiln_made_environment(cache: Path, name: str = ENVIRONMENT) -> Path:
    """An environment in ``cache`` as kiln leaves one (a virtual environment of this
    interpreter, its record with the fingerprint): its interpreter's path."""
    env = cache / "envs-v1" / name
    create_virtualenv(env)
    record = {"version": 2, "key": {}, "created": 1, "fingerprint": fingerprint(env)}
    (env / RECORD_NAME).write_text(json.dumps(record))
    return interpreter_path(env)


def plan_fields(tmp_path: Path, **changes: object) -> dict[str, object]:
    """A plan for a worker of a kiln-made environment's interpreter in the cache at
    ``tmp_path / "cache"`` (see kiln_made_environment) that imports the json module
    as its backend."""
    environment = tmp_path / "cache" / "envs-v1" / ENVIRONMENT
    fields: dict[str, object] = {
        "python": str(interpreter_path(environment)),
        "backend": "json",
        "environ": {"PATH": "/usr/bin:/bin"},
        "cwd": str(tmp_path),
        "warm_imports": None,
        "generation": f"{environment}@1",
    }
    return fields | changes


def plans_in_cache(tmp_path: Path) -> Path:
    """The plans file of the project "proj" in a new cache with a kiln-made environment."""
    cache = Cache.open(tmp_path / "cache").root
    (cache / "projects-v1").mkdir(mode=0o700, exist_ok=True)
    kiln_made_environment(cache)
    return worker_plans(project_place(cache, "proj"))


def test_plans_are_kept_per_source_the_most_recent_ones(tmp_path: Path) -> None:
    plans = plans_in_cache(tmp_path)
    sources = [tmp_path / f"checkout{number}" / "proj" for number in range(KEPT_PLANS + 1)]
    for number, source in enumerate(sources):
        keep_plan(plans, source, plan_fields(tmp_path, cwd=str(number)))
    assert read_plan(plans, sources[0]) is None, "the least recently built is dropped"
    assert read_plan(plans, sources[1]) == plan_fields(tmp_path, cwd="1")
    assert plans.stat().st_mode & 0o777 == 0o600, "plans hold the hooks' variables"

    # Built again, unchanged: now the most recent, so the next new source drops another.
    keep_plan(plans, sources[1], plan_fields(tmp_path, cwd="1"))
    keep_plan(plans, tmp_path / "another" / "proj", plan_fields(tmp_path))
    assert read_plan(plans, sources[1]) is not None
    assert read_plan(plans, sources[2]) is None


def test_a_plans_file_from_another_version_is_replaced(tmp_path: Path) -> None:
    plans = plans_in_cache(tmp_path)
    plans.write_text(json.dumps(plan_fields(tmp_path)))  # one bare plan, as kiln kept before
    source = tmp_path / "proj"
    assert read_plan(plans, source) is None
    keep_plan(plans, source, plan_fields(tmp_path))
    assert list(json.loads(plans.read_text())) == [str(source)]
    assert read_plan(plans, source) == plan_fields(tmp_path)
    # Plans that kept the hooks' whole environment go, whichever source they are for.
    other = str(tmp_path / "other")
    plans.write_text(json.dumps({other: plan_fields(tmp_path)}))
    keep_plan(plans, source, plan_fields(tmp_path))
    assert list(json.loads(plans.read_text())) == [str(source)]


@pytest.mark.parametrize(
    ("option", "variable", "starts"),
    [("warm", None, True), ("auto", None, True), ("plain", None, False), ("auto", "plain", False)],
)
def test_a_build_starts_the_planned_worker_unless_its_hooks_run_plain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    variable: str | None,
    starts: bool,
) -> None:
    # The command line reads KILN_HOOK_RUNNER into the option before the head start;
    # start_for_build reads the option alone.
    monkeypatch.setenv("KILN_HOOK_RUNNER", "plain")
    environ = {} if variable is None else {"KILN_HOOK_RUNNER": variable}
    option = environment_defaults({"hook_runner": option}, environ).get("hook_runner", option)
    cache, source = tmp_path / "cache", tmp_path / "src" / "proj"
    source.mkdir(parents=True)
    keep_plan(plans_in_cache(tmp_path), source, plan_fields(tmp_path))

    started = start_for_build(source, cache, option)
    if not starts:
        assert started is None
        return
    assert started is not None
    assert started.fields == plan_fields(tmp_path)
    launched = started.take()
    assert launched is not None
    assert started.take() is None, "taken once"
    started.discard()  # taken: no longer the head start's to kill
    assert pid_alive(launched.process.pid, seconds=0)
    started = None
    launched.process.kill()
    launched.process.wait()
    for stream in (launched.process.stdin, launched.process.stdout):
        assert stream is not None
        stream.close()


def test_no_plan_or_a_plan_without_a_lasting_environment_starts_nothing(tmp_path: Path) -> None:
    cache, source = tmp_path / "cache", tmp_path / "proj"
    source.mkdir()
    assert start_for_build(source, cache, "warm") is None
    keep_plan(plans_in_cache(tmp_path), source, plan_fields(tmp_path, generation=None))
    assert start_for_build(source, cache, "warm") is None


@pytest.mark.parametrize(
    "damage",
    [
        {"cwd": 5},
        {"warm_imports": 7},
        {"generation": ["not", "a", "string"]},
        {"backend": None},
        {"an_unknown_field": "from another version"},
    ],
)
def test_a_plan_whose_fields_are_not_a_plans_is_neither_read_nor_started(
    tmp_path: Path, damage: dict[str, object]
) -> None:
    """A damaged plan (or one of another version) is checked field by field when
    read: no worker is started from it, and nothing raises."""
    cache, source = tmp_path / "cache", tmp_path / "proj"
    source.mkdir()
    plans = plans_in_cache(tmp_path)
    keep_plan(plans, source, plan_fields(tmp_path))
    kept = json.loads(plans.read_text())
    kept[str(source)] |= damage
    plans.write_text(json.dumps(kept))
    assert read_plan(plans, source) is None
    assert start_for_build(source, cache, "warm") is None


class FakeStarted:
    """Stands in for a HeadStart: records whether it was discarded."""

    def __init__(self) -> None:
        self.plans = self.source = Path("/started/for/another/project")
        self.discarded = False

    def discard(self) -> None:
        self.discarded = True


def test_the_head_start_goes_to_runners_that_take_one_and_is_discarded_by_the_rest(
    tmp_path: Path,
) -> None:
    started = FakeStarted()
    hand_head_start(PlainRunnerPool(), tmp_path / "plans", tmp_path, started)  # type: ignore[arg-type]
    assert started.discarded, "no plain hook takes a worker started ahead"
    warm = WarmRunnerPool()
    assert isinstance(warm, TakesHeadStart)
    assert not isinstance(PlainRunnerPool(), TakesHeadStart)
    started = FakeStarted()
    hand_head_start(warm, tmp_path / "plans", tmp_path, started)  # type: ignore[arg-type]
    # Not the source the worker was started for: the warm runners discard it too,
    # and start none (no plan is kept there).
    assert started.discarded
    warm.close()
