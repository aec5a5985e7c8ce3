"""The bench's pure parts: statistics, targets, rendering, option parsing, artifact checks.

No processes are started; the bench itself (bench/run.py) is run by hand, never here.
"""

from __future__ import annotations

import io
import random
import sys
import tarfile
from pathlib import Path

import pytest

# bench/ is a directory of scripts, not a package: its modules import each other by
# their plain names, as they do when run as ``python bench/run.py``.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import harness
import render
import run
import stats
import timing
import tree
import treeparts
from cells import Cell, Results

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HATCH_WARM = Cell("kiln", "hatchling", "wheel", "warm")
HATCH_COLD = Cell("kiln", "hatchling", "wheel", "cold")
HATCH_UV = Cell("uv-build", "hatchling", "wheel", "")
HATCH_BUILD_UV = Cell("build-uv", "hatchling", "wheel", "")


def sample_results() -> Results:
    results = Results(rounds_done=3, kiln_installer="uv")
    results.samples[HATCH_WARM] = [0.30, 0.20, 0.25]
    results.samples[HATCH_COLD] = [0.80, 0.90, 1.00]
    results.samples[HATCH_UV] = [0.50, 0.40, 0.60]
    results.samples[HATCH_BUILD_UV] = [0.80, 0.85, 0.70]
    return results


META = {
    "date": "2026-12-05 21:00 UTC",
    "machine": {"nproc": "2", "cpu": "CPU", "memory": "1.0 GiB", "os": "Linux", "load": "0.10"},
    "versions": {
        "python": "CPython 3.11.7",
        "kiln": "0.1.0",
        "uv": "0.1",
        "build": "1",
        "pip": "2",
    },
    "backends": {"hatchling": "hatchling 1.33.0"},
    "seed": 7,
    "duration_seconds": 90,
    "command": "python bench/run.py --rounds 3",
}


# ------------------------------------------------------------------------- statistics


def test_median_of_nothing_is_none() -> None:
    assert stats.median([]) is None
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([1.0, 2.0, 3.0, 4.0]) == 2.5


def test_cell_median_leaves_out_failed_and_missing_cells() -> None:
    results = sample_results()
    assert stats.cell_median(results, HATCH_WARM) == 0.25
    assert stats.cell_median(results, Cell("kiln", "flit", "wheel", "warm")) is None
    results.failures[HATCH_UV] = "exit status 1"
    assert stats.cell_median(results, HATCH_UV) is None


def test_spread_is_fastest_and_slowest() -> None:
    assert stats.spread([0.3, 0.1, 0.2]) == (0.1, 0.3)


def test_ratio_needs_both_values_and_a_nonzero_divisor() -> None:
    assert stats.ratio(1.0, 4.0) == 0.25
    assert stats.ratio(None, 4.0) is None
    assert stats.ratio(1.0, None) is None
    assert stats.ratio(1.0, 0.0) is None


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    # Per round: 2.0, 3.0, 10.0 -> median 3.0; the ratio of medians would be 5/1.5.
    assert stats.paired_ratio([2.0, 6.0, 5.0], [1.0, 2.0, 0.5]) == 3.0
    assert stats.paired_ratio([1.0, 2.0], [1.0]) is None  # rounds do not pair up
    assert stats.paired_ratio([1.0], []) is None


def test_targets_pass_fail_and_skip() -> None:
    results = sample_results()
    results.version_samples = [0.070, 0.080, 0.075]
    found = stats.targets(results, ["hatchling"], ["wheel"])
    assert [t.text for t in found] == [
        "PASS  warm --wheel, hatchling: kiln / uv build = 0.50 (target ≤ 0.6)",
        "FAIL  cold wheel, hatchling: kiln / build --installer uv = 1.12 (target ≤ 1)",
        "FAIL  kiln --version: 75.0 ms (target < 60 ms)",
    ]
    assert [t.ok for t in found] == [True, False, False]

    skipped = stats.targets(Results(), ["hatchling"], ["default"])
    assert [(t.ok, t.text) for t in skipped] == [
        (None, "SKIP  warm default, hatchling: not measured (kiln or uv build missing)"),
        (None, "SKIP  warm default, hatchling: not measured (kiln or floor missing)"),
        (
            None,
            "SKIP  cold default, hatchling: not measured (kiln or build --installer uv missing)",
        ),
    ]


def test_the_floor_targets_name_only_hatchling_and_setuptools() -> None:
    found = stats.targets(Results(), ["flit"], ["default"])
    assert [t.text for t in found] == [
        "SKIP  cold default, flit: not measured (kiln or build --installer uv missing)"
    ]


# -------------------------------------------------------------------------- rendering


def test_formats() -> None:
    assert render.fmt(None) == "—"
    assert render.fmt(0.12345) == "0.123"
    assert render.fmt_ratio(None) == "—"
    assert render.fmt_ratio(1.5) == "1.50x"


def test_text_table_aligns_the_first_column_left_and_the_rest_right() -> None:
    lines = render.render_text(["project", "kiln"], [["flit", "0.100"], ["setuptools", "12.000"]])
    assert lines == [
        "project       kiln",
        "----------  ------",
        "flit         0.100",
        "setuptools  12.000",
    ]


def test_markdown_table_right_aligns_the_numbers() -> None:
    assert render.render_markdown(["project", "kiln", "uv"], [["flit", "0.1", "0.2"]]) == [
        "| project | kiln | uv |",
        "| --- | ---: | ---: |",
        "| flit | 0.1 | 0.2 |",
    ]


def test_tables_medians_then_ratios_with_the_floor_only_when_warm() -> None:
    results = sample_results()
    found = render.tables(
        results, ["hatchling"], ["wheel"], ["warm", "cold"], ["kiln", "uv-build"], True
    )
    assert [(title.split(":")[0], header) for title, header, _ in found] == [
        (
            "WARM, --wheel (a wheel from the project directory)",
            ["project", "kiln", "uv build", "floor"],
        ),
        ("WARM, wheel", ["project", "uv build / kiln", "floor / kiln"]),
        ("COLD, --wheel (a wheel from the project directory)", ["project", "kiln", "uv build"]),
        ("COLD, wheel", ["project", "uv build / kiln"]),
    ]
    assert [rows for _, _, rows in found] == [
        [["hatchling", "0.250", "0.500", "—"]],
        [["hatchling", "2.00x", "—"]],
        [["hatchling", "0.900", "0.500"]],
        [["hatchling", "0.56x"]],
    ]
    assert found[0][0].endswith("median seconds of 3 round(s); kiln's cache kept")
    assert found[2][0].endswith(
        "kiln's cache emptied before each run (same runs as warm: they keep no environments)"
    )


def test_no_ratio_table_without_kiln() -> None:
    found = render.tables(Results(), ["flit"], ["default"], ["warm"], ["uv-build"], False)
    assert len(found) == 1


def test_text_report() -> None:
    results = sample_results()
    results.version_samples = [0.010, 0.012, 0.011]
    results.python_startup_samples = [0.009, 0.008, 0.010]
    results.failures[Cell("build-pip", "hatchling", "wheel", "")] = "exit status 1"
    table_list = render.tables(
        results, ["hatchling"], ["wheel"], ["warm"], ["kiln", "uv-build"], False
    )
    target_list = stats.targets(results, ["hatchling"], ["wheel"])
    text = render.report(results, META, table_list, target_list, markdown=False)
    assert text.splitlines()[:7] == [
        "kiln benchmark",
        "Date: 2026-12-05 21:00 UTC",
        "Machine: 2 CPUs (nproc), CPU, 1.0 GiB RAM, Linux; load average at start 0.10, at end ?",
        "Python CPython 3.11.7; kiln 0.1.0, installer uv; uv 0.1; build 1; pip 2",
        "Backends: hatchling 1.33.0",
        "Method: 3 round(s) after one discarded warm-up round, order shuffled each round "
        "(seed 7); 1.5 min; `python bench/run.py --rounds 3`",
        "kiln --version: 0.011 s, median of 3 (python -c pass: 0.009 s)",
    ]
    assert "\nTargets:\n  PASS  warm --wheel, hatchling: kiln / uv build = 0.50" in text
    assert text.endswith("Failed cells (left out):\n  build-pip hatchling wheel: exit status 1\n")


def test_markdown_report_and_its_warnings() -> None:
    results = sample_results()
    results.interrupted = True
    meta = {**META, "kiln_source_changed": True}
    table_list = render.tables(results, ["hatchling"], ["wheel"], ["warm"], ["kiln"], False)
    text = render.report(results, meta, table_list, [], markdown=True)
    lines = text.splitlines()
    assert lines[:3] == ["### kiln benchmark, 2026-12-05", "", "- Date: 2026-12-05 21:00 UTC"]
    assert "- kiln --version: not measured" in lines
    assert "| project | kiln |" in lines
    assert "**Targets**" in lines
    assert text.endswith(
        "\nWARNING: kiln's source files changed during the run: results mix versions.\n"
        "\n(interrupted: partial results)\n"
    )


def test_json_keeps_samples_spread_and_paired_ratios() -> None:
    results = sample_results()
    data = render.to_json(results, META, [stats.Target(True, "PASS  x")])
    by_slug = {
        "-".join(p for p in (c["tool"], c["project"], c["flow"], c["temperature"] or "") if p): c
        for c in data["cells"]
    }
    uv = by_slug["uv-build-hatchling-wheel"]
    assert (uv["median"], uv["min"], uv["max"]) == (0.5, 0.4, 0.6)
    assert uv["temperature"] is None
    # Per round against warm kiln: 0.5/0.3, 0.4/0.2, 0.6/0.25 -> median 2.0; cold: 0.6.
    assert uv["paired_ratio_to_kiln"] == {"warm": 2.0, "cold": 0.6}
    assert "paired_ratio_to_kiln" not in by_slug["kiln-hatchling-wheel-warm"]
    assert data["targets"] == [{"ok": True, "text": "PASS  x"}]
    assert data["rounds"] == 3 and data["seed"] == 7


def test_artifact_mismatches_compare_names_per_project_and_flow() -> None:
    results = Results()
    results.artifacts[HATCH_WARM] = ["p-1.0-py3-none-any.whl"]
    results.artifacts[HATCH_UV] = ["p-1.0-py3-none-any.whl"]
    assert render.artifact_mismatches(results) == []
    results.artifacts[HATCH_BUILD_UV] = ["P-1.0-py3-none-any.whl"]
    (problem,) = render.artifact_mismatches(results)
    assert problem.startswith("hatchling wheel: ")
    assert "build-uv-hatchling-wheel: ['P-1.0-py3-none-any.whl']" in problem


# ------------------------------------------------------------- harness, command line


def test_cell_names() -> None:
    assert HATCH_WARM.slug == "kiln-hatchling-wheel-warm"
    assert HATCH_UV.slug == "uv-build-hatchling-wheel"
    assert HATCH_WARM.label == "kiln (warm) hatchling wheel"
    assert HATCH_UV.label == "uv-build hatchling wheel"


def test_expected_artifacts() -> None:
    assert timing.expected_artifacts(
        "default", ["p-1.tar.gz", "p-1-py3-none-any.whl", ".gitignore"]
    )
    assert timing.expected_artifacts("wheel", ["p-1-py3-none-any.whl"])
    assert not timing.expected_artifacts("wheel", ["p-1.tar.gz", "p-1-py3-none-any.whl"])
    assert not timing.expected_artifacts("default", ["p-1-py3-none-any.whl"])
    assert not timing.expected_artifacts("wheel", ["a.whl", "b.whl"])


def test_clean_environ_drops_installer_kiln_and_python_settings() -> None:
    environ = {
        "PATH": "/bin",
        "HOME": "/h",
        "PIP_INDEX_URL": "x",
        "UV_CACHE_DIR": "x",
        "UV": "x",
        "KILN_CACHE_DIR": "x",
        "PYTHONDONTWRITEBYTECODE": "1",
        "VIRTUAL_ENV": "x",
        "CONDA_PREFIX": "x",
    }
    assert harness.clean_environ(environ) == {"PATH": "/bin", "HOME": "/h"}


def test_wheelhouse_version_is_the_newest(tmp_path: Path) -> None:
    for name in ("hatchling-1.9.0-py3-none-any.whl", "hatchling-1.33.0-py3-none-any.whl"):
        (tmp_path / name).touch()
    (tmp_path / "flit_core-3.9.0-py3-none-any.whl").touch()
    assert harness.wheelhouse_version(tmp_path, "hatchling") == "1.33.0"
    assert harness.wheelhouse_version(tmp_path, "flit-core") == "3.9.0"
    assert harness.wheelhouse_version(tmp_path, "pdm-backend") == "?"
    assert harness.requirement_name("hatchling>=1.20") == "hatchling"


def test_command_line_defaults_match_the_readme() -> None:
    args = run.parse_args([])
    assert args.rounds == 7
    assert args.projects == ["hatchling", "setuptools", "flit"]
    assert args.flows == ["default", "wheel"]
    assert args.tools == ["kiln", "uv-build", "build-uv", "build-pip"]
    assert args.temperatures == ["warm", "cold"]
    assert args.version_runs == 20
    assert args.timeout == 600
    assert not args.no_floor and not args.markdown and not args.verbose


def test_comma_separated_choices_are_put_in_canonical_order() -> None:
    args = run.parse_args(["--projects", "flit,hatchling", "--kiln-arg=--hook-runner=plain"])
    assert args.projects == ["hatchling", "flit"]
    assert args.kiln_arg == ["--hook-runner=plain"]


@pytest.mark.parametrize("argv", [["--projects", "maturin"], ["--flows", ""], ["--rounds", "0"]])
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        run.parse_args(argv)
    assert excinfo.value.code == 2


# ---- the tree benchmark (bench/tree.py, bench/treeparts.py) ----------------------------


def tree_setup() -> treeparts.TreeSetup:
    return treeparts.TreeSetup(
        python="/py/bin/python",
        kiln=["/py/bin/kiln"],
        uv="/py/bin/uv",
        fromager=["/fv/bin/fromager"],
        requirements=Path("/req.txt"),
        names=["markupsafe", "six"],
        jobs=2,
    )


def test_read_pins_takes_name_version_lines_and_skips_comments() -> None:
    text = "# a tree\nMarkupSafe==3.0.2  # C\n\ntyping_extensions == 4.12.2\n"
    assert treeparts.read_pins(text) == [("markupsafe", "3.0.2"), ("typing-extensions", "4.12.2")]


@pytest.mark.parametrize("line", ["six>=1.16", "six", "-e .", "six==1.16; python_version<'3'"])
def test_read_pins_refuses_anything_but_a_pin(line: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        treeparts.read_pins(f"attrs==24.2.0\n{line}\n")


def test_the_tree_is_twenty_distinct_pins() -> None:
    pins = treeparts.read_pins(treeparts.TREE_REQUIREMENTS.read_text(encoding="utf-8"))
    assert len(pins) == 20
    assert len({name for name, _ in pins}) == 20


def test_file_names_give_canonical_name_and_version() -> None:
    assert treeparts.sdist_name_version("typing_extensions-4.12.2.tar.gz") == (
        "typing-extensions",
        "4.12.2",
    )
    assert treeparts.sdist_name_version("python-dateutil-2.9.0.post0.tar.gz") == (
        "python-dateutil",
        "2.9.0.post0",
    )
    assert treeparts.sdist_name_version("six-1.16.0-py2.py3-none-any.whl") is None
    assert treeparts.wheel_name_version("Flit_Core-3.9.0-py3-none-any.whl") == (
        "flit-core",
        "3.9.0",
    )
    assert treeparts.wheel_name_version("six-1.16.0.tar.gz") is None


def test_build_requires_from_pyproject_or_the_legacy_default() -> None:
    text = '[build-system]\nrequires = ["setuptools>=64", "Cython~=3.0.10"]\n'
    assert treeparts.build_requires_from_pyproject(text) == ["setuptools>=64", "Cython~=3.0.10"]
    legacy = treeparts.LEGACY_BUILD_REQUIRES
    assert treeparts.build_requires_from_pyproject(None) == legacy
    assert treeparts.build_requires_from_pyproject("[project]\nname = 'x'\n") == legacy


def make_sdist(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_sdist_pyproject_reads_only_the_top_level_file(tmp_path: Path) -> None:
    sdist = make_sdist(
        tmp_path / "x-1.0.tar.gz",
        {"x-1.0/tests/pyproject.toml": "nested", "x-1.0/pyproject.toml": "top"},
    )
    assert treeparts.sdist_pyproject(sdist) == "top"
    assert treeparts.sdist_top_directory(sdist) == "x-1.0"
    bare = make_sdist(tmp_path / "y-1.0.tar.gz", {"y-1.0/setup.py": ""})
    assert treeparts.sdist_pyproject(bare) is None


def test_round_patch_adds_a_file_naming_the_round() -> None:
    first, second = treeparts.round_patch(1), treeparts.round_patch(2)
    assert first != second
    assert first.startswith("--- /dev/null\n+++ b/KILN_BENCH_ROUND.txt\n@@ -0,0 +1 @@\n")
    assert first.endswith("+kiln tree benchmark, round 1\n")


def test_settings_toml_patches_one_package() -> None:
    table = tomllib.loads(treeparts.settings_toml("six", "bench.patch"))
    assert table == {"packages": {"six": {"patches": ["bench.patch"]}}}


def test_kiln_arms_run_kiln_wheelhouse() -> None:
    setup, out = tree_setup(), Path("/out")
    cold = treeparts.command(
        setup, treeparts.KILN_COLD, out, cache=Path("/c"), scratch=Path("/s"), settings=None
    )
    assert cold == [
        "/py/bin/kiln", "wheelhouse", "-r", "/req.txt", "-o", "/out",
        "--cache-dir", "/c", "-j", "2", "--python", "/py/bin/python",
    ]  # fmt: skip
    patched = treeparts.command(
        setup, treeparts.KILN_PATCHED, out, cache=Path("/c"), scratch=Path("/s"),
        settings=Path("/set.toml"),
    )  # fmt: skip
    assert patched[-2:] == ["--settings", "/set.toml"]
    source = treeparts.command(
        setup, treeparts.KILN_SOURCE, out, cache=Path("/c"), scratch=Path("/s"), settings=None
    )
    assert source[-2:] == ["--build-deps", "source"]


def test_pip_uv_and_fromager_build_the_same_names_from_source() -> None:
    setup, out = tree_setup(), Path("/out")

    def command(arm: str) -> list[str]:
        return treeparts.command(
            setup, arm, out, cache=Path("/c"), scratch=Path("/s"), settings=None
        )

    pip = command(treeparts.PIP)
    assert pip == [
        "/py/bin/python", "-m", "pip", "wheel", "--no-binary", "markupsafe,six",
        "-r", "/req.txt", "-w", "/out",
    ]  # fmt: skip
    uv = command(treeparts.UV)
    assert uv[:3] == ["/py/bin/uv", "pip", "install"]
    assert uv[uv.index("--no-binary") + 1] == "markupsafe,six"
    assert uv[uv.index("--target") + 1] == "/out"
    fromager = command(treeparts.FROMAGER)
    assert fromager[fromager.index("--constraints-file") + 1] == "/req.txt"
    assert fromager[fromager.index("--wheels-repo") + 1] == "/out"
    assert fromager[-3:] == ["bootstrap", "-r", "/req.txt"]


def test_report_statuses_reads_a_list_or_a_mapping_of_packages() -> None:
    listed = {
        "packages": [{"name": "six", "status": "built"}, {"name": "idna", "status": "cached"}]
    }
    assert treeparts.report_statuses(listed) == {"built": 1, "cached": 1}
    keyed = {"packages": {"six": {"status": "cached"}, "idna": {"status": {"state": "cached"}}}}
    assert treeparts.report_statuses(keyed) == {"cached": 2}
    with pytest.raises(ValueError, match="packages"):
        treeparts.report_statuses({"wheels": []})


def test_missing_wheels_and_installs_name_what_the_run_did_not_make() -> None:
    names = ["markupsafe", "six", "typing-extensions"]
    wheels = ["MarkupSafe-3.0.2-cp311-cp311-linux_x86_64.whl", "six-1.16.0-py2.py3-none-any.whl"]
    assert treeparts.missing_wheels(names, wheels) == ["typing-extensions"]
    installed = ["markupsafe", "six-1.16.0.dist-info", "typing_extensions-4.12.2.dist-info"]
    assert treeparts.missing_installed(names, installed) == ["markupsafe"]


def test_summary_rows_give_the_issue_targets() -> None:
    results = treeparts.TreeResults(
        samples={
            treeparts.KILN_COLD: [20.0, 22.0, 24.0],
            treeparts.UV: [50.0, 44.0, 60.0],
            treeparts.PIP: [70.0],
            treeparts.KILN_NO_CHANGE: [1.5],
        },
        statuses={treeparts.KILN_PATCHED: [{"built": 1, "cached": 19}, {"built": 2}]},
    )
    rows = {row[0]: row[1:] for row in treeparts.summary_rows(results)}
    assert rows["kiln cold / uv"] == ["0.44x", "≤ 0.5", "PASS"]
    assert rows["kiln cold / pip"] == ["0.31x", "≤ 0.3", "FAIL"]
    assert rows["no-change run (s)"] == ["1.50", "< 2", "PASS"]
    assert rows["packages rebuilt after one patch changed"] == ["2", "= 1", "FAIL"]
    assert rows["kiln --build-deps source / fromager"][0] == "—"
    assert rows["kiln warm / uv"][0] == "—"


def test_a_failed_arm_has_no_median_and_its_targets_skip() -> None:
    results = treeparts.TreeResults(
        samples={treeparts.KILN_COLD: [20.0], treeparts.UV: [50.0]},
        failures={treeparts.UV: "exit status 2"},
    )
    rows = {row[0]: row[1:] for row in treeparts.summary_rows(results)}
    assert rows["kiln cold / uv"][-1] == "SKIP"
    assert treeparts.time_rows(results, [treeparts.UV])[0][1] == "failed"
    assert "uv failed: exit status 2" in treeparts.report_text(
        results, [treeparts.KILN_COLD, treeparts.UV], markdown=False
    )


def test_tree_command_line_defaults_and_the_fromager_flag() -> None:
    args = tree.parse_args([])
    assert args.arms == list(treeparts.DEFAULT_ARMS)
    assert treeparts.FROMAGER not in args.arms and args.jobs == 2
    args = tree.parse_args(["--arms", "uv,pip", "--fromager"])
    assert args.arms == [treeparts.PIP, treeparts.UV, treeparts.KILN_SOURCE, treeparts.FROMAGER]


class RecordingBench(tree.TreeBench):
    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.results = treeparts.TreeResults()
        self.order: list[str] = []
        self.failing = failing

    def run(self, arm: str, round_number: int) -> float:
        self.order.append(arm)
        if arm in self.failing:
            raise tree.TreeRunFailed("exit status 2\n  $ kiln wheelhouse")
        return 1.0


@pytest.mark.parametrize("seed", range(5))
def test_kiln_warm_no_change_and_patched_run_together_in_that_order(seed: int) -> None:
    bench = RecordingBench()
    bench.round(treeparts.ARMS, random.Random(seed), 1, warmup=False)
    assert sorted(bench.order) == sorted(treeparts.ARMS)
    start = bench.order.index(treeparts.KILN_WARM)
    assert bench.order[start : start + 3] == list(treeparts.KILN_SEQUENCE)
    assert bench.results.samples[treeparts.PIP] == [1.0]


def test_a_failed_kiln_warm_run_skips_the_runs_that_need_its_cache() -> None:
    bench = RecordingBench(failing=frozenset({treeparts.KILN_WARM}))
    bench.round(treeparts.DEFAULT_ARMS, random.Random(0), 1, warmup=False)
    assert treeparts.KILN_NO_CHANGE not in bench.order
    assert treeparts.KILN_PATCHED not in bench.order
    assert bench.results.failures == {
        treeparts.KILN_WARM: "exit status 2",
        treeparts.KILN_NO_CHANGE: "skipped: kiln-warm failed",
        treeparts.KILN_PATCHED: "skipped: kiln-warm failed",
    }
    assert bench.results.samples[treeparts.UV] == [1.0]  # the other arms still ran
