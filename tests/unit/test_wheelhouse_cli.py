"""`kiln wheelhouse`'s command line, its request, and where packages come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import UsageError
from kiln.output import refuse_outdir_in_cache
from kiln.wheelhouse.indexes import only_find_links, with_index_options
from kiln.wheelhouse.request import WheelhouseRequest, binary_names
from kiln.wheelhouse_command import build_parser, request_from_args


def request(*argv: str) -> WheelhouseRequest:
    return request_from_args(build_parser().parse_args(list(argv)))


def test_the_options_make_the_request(tmp_path: Path) -> None:
    made = request(
        "six",
        "-r",
        "reqs.txt",
        "-o",
        str(tmp_path / "wh"),
        "-j",
        "3",
        "-p",
        "3.12",
        "-p",
        "3.10",
        "--binary",
        "cmake,Ninja",
        "--build-deps",
        "source",
        "--fail-fast",
    )
    assert made.requirements == ("six",)
    assert made.requirement_files == (Path("reqs.txt").absolute(),)
    assert made.outdir == tmp_path / "wh"
    assert made.jobs == 3
    assert made.pythons == ("3.12", "3.10")
    assert made.binary == {"cmake", "ninja"}
    assert made.build_deps == "source"
    assert made.fail_fast
    assert made.report_path == tmp_path / "wh" / "report.json"


def test_the_default_wheelhouse_is_named_as_pip_users_expect() -> None:
    assert request("six").outdir == Path("wheelhouse").absolute()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "needs something to build"),
        (("six", "-j", "0"), "-j/--jobs must be 1 or more"),
        (("six", "--no-index", "-i", "https://example.org/simple"), "contradict"),
    ],
)
def test_bad_requests_are_refused_in_one_line(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        request(*argv)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_binary_names_are_canonical_and_all_is_kept() -> None:
    assert binary_names(["Foo_Bar, baz", ":all:"]) == {"foo-bar", "baz", ":all:"}
    assert WheelhouseRequest(requirements=("x",), binary=frozenset({":all:"})).takes_binary("y")


def test_kiln_variables_fill_what_the_options_leave_unset(tmp_path: Path) -> None:
    filled = WheelhouseRequest(requirements=("x",)).with_environment_defaults(
        {"KILN_CACHE_DIR": str(tmp_path), "KILN_COMPILER_CACHE": "ccache"}
    )
    assert filled.cache_dir == tmp_path
    assert filled.compiler_cache == "ccache"


def test_index_options_reach_pip_and_uv(tmp_path: Path) -> None:
    environ = with_index_options(
        {"PIP_FIND_LINKS": "/a", "UV_FIND_LINKS": "/a"},
        index_url="https://example.org/simple",
        extra_index_urls=["https://extra.example.org/simple"],
        find_links=["/b"],
        no_index=False,
        empty_index=tmp_path / "empty",
    )
    assert environ["PIP_INDEX_URL"] == environ["UV_DEFAULT_INDEX"] == "https://example.org/simple"
    assert environ["UV_INDEX"] == environ["PIP_EXTRA_INDEX_URL"]
    assert environ["PIP_FIND_LINKS"] == "/a /b"
    assert environ["UV_FIND_LINKS"] == "/a,/b"


def test_no_index_leaves_uv_an_empty_index_and_only_find_links(tmp_path: Path) -> None:
    # uv reads no variable for --no-index: an empty default index stands in for it.
    environ = only_find_links(
        {"UV_INDEX_URL": "https://x", "PIP_INDEX_URL": "https://x", "UV_FIND_LINKS": "/a"},
        tmp_path / "empty",
        [tmp_path / "tree"],
    )
    assert "UV_INDEX_URL" not in environ and "PIP_INDEX_URL" not in environ
    assert environ["PIP_NO_INDEX"] == "1"
    assert environ["UV_DEFAULT_INDEX"] == (tmp_path / "empty").as_uri()
    assert (tmp_path / "empty").is_dir()
    assert environ["UV_FIND_LINKS"] == str(tmp_path / "tree")


def test_only_a_wheelhouse_jobs_own_output_may_be_inside_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    job_out = cache / "wheelhouse-v1" / "run-1-ab" / "jobs" / "six" / "out"
    job_out.mkdir(parents=True)
    refuse_outdir_in_cache(job_out, cache)
    for elsewhere in (cache / "wheelhouse-v1" / "sources", cache / "wheels-v1" / "x"):
        with pytest.raises(UsageError, match="inside kiln's cache"):
            refuse_outdir_in_cache(elsewhere, cache)


def test_the_summary_names_each_failure_and_offers_only_a_kept_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kiln.wheelhouse.model import JobResult, Outcome, Status
    from kiln.wheelhouse.run import WheelhouseResult
    from kiln.wheelhouse_command import _print_summary

    patch_error = "patch /s/bad.patch does not apply to a-1.0: 1 out of 1 hunk FAILED"
    hook_error = "the build backend's build_wheel hook failed (exit status 1)"
    outcomes = {
        "a==1.0": Outcome(
            "a==1.0", Status.FAILED, result=JobResult("a==1.0", False, error=patch_error)
        ),
        "b==1.0": Outcome(
            "b==1.0",
            Status.FAILED,
            result=JobResult("b==1.0", False, error=hook_error, kept=str(tmp_path)),
        ),
    }
    # -q: no progress lines, so the summary is the only place the reason shows.
    _print_summary(WheelhouseResult(outdir=tmp_path, outcomes=outcomes), verbosity=-1)
    err = capsys.readouterr().err
    assert patch_error in err and hook_error in err
    assert "kiln debug b" in err
    assert "kiln debug a" not in err
