"""The output directory: a staging directory of its own per build, held while in use and
removed whole (read-only trees included, never through a link); dead runs' leftovers
removed, anything else left alone; what a hook returns checked; no outdir in the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiln.errors import BadArtifactError, UsageError
from kiln.output import (
    STAGING_PREFIX,
    check_artifact,
    publish,
    refuse_outdir_in_cache,
    remove_dead_staging,
    staging_dir,
)

WHEEL = "pkg-1.0-py3-none-any.whl"
posix_only = pytest.mark.skipif(os.name == "nt", reason="directory locks and modes are POSIX")


def hold_staging(outdir: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another run, in another process, inside its staging directory until killed."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from kiln.output import staging_dir
        with staging_dir(Path(sys.argv[1])) as staging:
            (staging / "partial.whl").write_bytes(b"half")
            print(staging, flush=True)
            sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(outdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


def test_every_build_gets_a_new_staging_directory(tmp_path: Path) -> None:
    with staging_dir(tmp_path) as first, staging_dir(tmp_path) as second:
        assert first != second
        for path in (first, second):
            assert path.parent == tmp_path and path.name.startswith(STAGING_PREFIX)
            assert path.is_dir() and not path.is_symlink()
        (first / "junk").mkdir()
    assert list(tmp_path.iterdir()) == []


@posix_only
def test_a_live_runs_staging_is_left_alone_and_a_dead_ones_removed(tmp_path: Path) -> None:
    child, held = hold_staging(tmp_path)
    try:
        with staging_dir(tmp_path) as mine:
            assert mine != held
            assert (held / "partial.whl").read_bytes() == b"half"  # alive: not touched
        remove_dead_staging(tmp_path)
        assert (held / "partial.whl").read_bytes() == b"half"
    finally:
        child.kill()  # like SIGKILL in a hook: its staging directory stays behind
        child.communicate()
    assert held.is_dir()
    with staging_dir(tmp_path):
        assert not held.exists()
    assert list(tmp_path.iterdir()) == []


@posix_only
def test_a_staging_directory_another_run_just_made_is_not_taken_for_a_leftover(
    tmp_path: Path,
) -> None:
    # Many runs cleaning and creating at once: each keeps its own until it ends.
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from kiln.output import staging_dir
        outdir = Path(sys.argv[1])
        for _ in range(200):
            with staging_dir(outdir) as staging:
                (staging / "a.whl").write_bytes(b"x")
                assert (staging / "a.whl").read_bytes() == b"x"
        """
    )
    children = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)]) for _ in range(4)]
    assert [child.wait() for child in children] == [0, 0, 0, 0]
    assert list(tmp_path.iterdir()) == []


@posix_only
def test_leftovers_that_are_not_directories_are_left_alone(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "sub" / "precious.txt").write_text("mine")
    (outdir / f"{STAGING_PREFIX}link").symlink_to(elsewhere)
    (outdir / f"{STAGING_PREFIX}dangling").symlink_to(tmp_path / "nothing")
    (outdir / f"{STAGING_PREFIX}file").write_text("not kiln's")
    before = sorted(p.name for p in outdir.iterdir())
    with staging_dir(outdir) as staging:
        (staging / WHEEL).write_bytes(b"wheel")
        publish(staging / WHEEL, outdir, "wheel")
    assert (elsewhere / "sub" / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in outdir.iterdir()) == sorted([*before, WHEEL])


@posix_only
def test_removing_staging_never_follows_a_link(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine")
    with staging_dir(outdir) as staging:
        (staging / "inside-link").symlink_to(elsewhere)
    with staging_dir(outdir) as staging:
        # A backend that replaced the directory it was given with a link to another.
        shutil.rmtree(staging)
        staging.symlink_to(elsewhere)
    assert (elsewhere / "precious.txt").read_text() == "mine"
    assert list(outdir.iterdir()) == []  # the link is gone, not what it named


@posix_only
@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="os.chown needs root")
def test_another_users_leftover_is_left_alone(tmp_path: Path) -> None:
    # In a shared outdir, kiln run as root removed another user's .kiln-staging-* tree.
    outdir = tmp_path / "out"
    outdir.mkdir()
    theirs = outdir / f"{STAGING_PREFIX}theirs00"
    theirs.mkdir()
    (theirs / "work.txt").write_text("theirs")
    os.chown(theirs / "work.txt", 65534, 65534)
    os.chown(theirs, 65534, 65534)
    with staging_dir(outdir):
        pass
    assert (theirs / "work.txt").read_text() == "theirs"


# --- read-only trees: root ignores permission bits, so these run as an unprivileged user ----

NOBODY = 65534


@pytest.fixture
def unprivileged_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory the user of :func:`run_unprivileged` owns."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix="kiln-test-"))  # pytest's tmp_path is root's alone
    try:
        os.chown(directory, NOBODY, NOBODY)
        yield directory
    finally:
        shutil.rmtree(directory)  # root: whatever the modes


def run_unprivileged(function: Callable[[Path], None], directory: Path) -> None:
    """Call ``function(directory)`` in a child process as a user whom permission bits
    bind (root ignores them); forked, not started anew: that user may not reach this Python."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() with threads (pytest-xdist's); the child only
        # touches files and leaves with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            function(directory)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged check failed (see stderr)"


def read_only_tree(top: Path) -> None:
    """What `chmod -R a-w` leaves, with one directory closed entirely."""
    (top / "pkg" / "sub").mkdir(parents=True)
    (top / "pkg" / "sub" / "mod.py").write_text("x")
    (top / "closed").mkdir()
    (top / "closed" / "f").write_text("x")
    (top / "pkg" / "sub").chmod(0o500)
    (top / "pkg").chmod(0o500)
    (top / "closed").chmod(0)


def leave_a_read_only_tree_in_staging(directory: Path) -> None:
    out = directory / "out"
    out.mkdir()
    with staging_dir(out) as staging:
        read_only_tree(staging)
    assert list(out.iterdir()) == [], list(out.iterdir())


def remove_a_dead_runs_read_only_staging(directory: Path) -> None:
    out = directory / "out"
    leftover = out / f"{STAGING_PREFIX}k1lled00"
    leftover.mkdir(parents=True)
    read_only_tree(leftover)
    leftover.chmod(0o500)
    with staging_dir(out) as staging:
        assert list(out.iterdir()) == [staging], list(out.iterdir())
    assert list(out.iterdir()) == []


@posix_only
def test_a_read_only_tree_a_backend_left_in_staging_is_removed(unprivileged_dir: Path) -> None:
    run_unprivileged(leave_a_read_only_tree_in_staging, unprivileged_dir)


@posix_only
def test_a_dead_runs_read_only_staging_is_removed(unprivileged_dir: Path) -> None:
    run_unprivileged(remove_a_dead_runs_read_only_staging, unprivileged_dir)


def leave_a_read_only_tree_in_the_place(directory: Path) -> None:
    from kiln.cache import Cache
    from kiln.workspace import Workspace

    cache = Cache.open(directory / "cache")
    first = Workspace.in_cache(cache, "proj").open()
    read_only_tree(first.stable_dir("build"))
    first.succeed()
    second = Workspace.in_cache(cache, "proj").open()
    assert sorted(p.name for p in second.place.iterdir()) == ["tmp"], "emptied for this build"
    second.succeed()
    assert list(second.place.iterdir()) == [], "and after it"


@posix_only
def test_a_read_only_tree_in_the_stable_place_does_not_reach_the_next_build(
    unprivileged_dir: Path,
) -> None:
    # Emptying a project's stable place skipped what a backend left read-only: the
    # next build of the project found the last one's files, and `kiln cache clean`
    # could not remove them either. Staging has the one removal that copes; now all do.
    run_unprivileged(leave_a_read_only_tree_in_the_place, unprivileged_dir)


# --- what a hook returns ----------------------------------------------------------------------


def check(staging: Path, name: str = WHEEL) -> Path:
    return check_artifact(staging, name, "wheel", "build_wheel", None)


def test_a_regular_file_is_an_artifact(tmp_path: Path) -> None:
    (tmp_path / WHEEL).write_bytes(b"wheel")
    assert check(tmp_path) == tmp_path / WHEEL


@posix_only
@pytest.mark.parametrize("target", ["beside", "outside", "nowhere"])
def test_a_symlink_is_not_an_artifact(tmp_path: Path, target: str) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "real.whl").write_bytes(b"wheel")
    (tmp_path / "outside.whl").write_bytes(b"wheel")
    named = {"beside": "real.whl", "outside": str(tmp_path / "outside.whl"), "nowhere": "gone"}
    (staging / WHEEL).symlink_to(named[target])
    with pytest.raises(BadArtifactError) as caught:
        check(staging)
    assert str(caught.value) == (
        f"the build backend's build_wheel hook returned {WHEEL!r}, "
        f"which is a symbolic link to {named[target]}"
    )
    assert caught.value.exit_code == 1


@posix_only
def test_a_staging_directory_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / WHEEL).write_bytes(b"someone else's")
    (tmp_path / "staging").symlink_to(elsewhere)
    with pytest.raises(BadArtifactError, match="replaced the directory it was to write into"):
        check(tmp_path / "staging")


def test_a_directory_is_not_an_artifact(tmp_path: Path) -> None:
    (tmp_path / WHEEL).mkdir()
    with pytest.raises(BadArtifactError, match="which is not a regular file"):
        check(tmp_path)


def test_publishing_over_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    staging, outdir = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    (outdir / WHEEL).mkdir(parents=True)
    (staging / WHEEL).write_bytes(b"wheel")
    with pytest.raises(UsageError, match=f"cannot move {WHEEL} into output directory {outdir}"):
        publish(staging / WHEEL, outdir, "wheel")


# --- the output directory and kiln's cache -----------------------------------------------------


@pytest.mark.parametrize("inside", ["", "projects-v1/proj/wheels", "envs-v1", "new/dir"])
def test_an_outdir_inside_the_cache_is_refused(tmp_path: Path, inside: str) -> None:
    cache = tmp_path / "cache"
    (cache / "projects-v1").mkdir(parents=True)
    outdir = cache / inside
    with pytest.raises(UsageError) as caught:
        refuse_outdir_in_cache(outdir, cache)
    assert str(caught.value) == (
        f"output directory {outdir} is inside kiln's cache directory {cache}, whose contents "
        "kiln empties and prunes; choose an output directory outside it (-o)"
    )
    assert caught.value.exit_code == 2


@posix_only
def test_links_count_for_the_outdir_and_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (tmp_path / "to-cache").symlink_to(cache)
    with pytest.raises(UsageError):
        refuse_outdir_in_cache(tmp_path / "to-cache" / "out", cache)
    with pytest.raises(UsageError):
        refuse_outdir_in_cache(cache / "out", tmp_path / "to-cache")


@pytest.mark.skipif(sys.platform != "linux", reason="bind mounts are Linux's")
def test_an_outdir_in_the_cache_through_a_bind_mount_is_refused(tmp_path: Path) -> None:
    # The cache seen under a second name (a container's volume, a bind mount): no path
    # comparison sees it, and a build's -o there was emptied after "Successfully built".
    cache = tmp_path / "cache"
    (cache / "projects-v1" / "proj").mkdir(parents=True)
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    bind = ["mount", "--bind", str(cache), str(mounted)]
    bound = subprocess.run(bind, check=False, capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.decode(errors='replace').strip()}")
    try:
        with pytest.raises(UsageError, match="inside kiln's cache directory"):
            refuse_outdir_in_cache(mounted / "projects-v1" / "proj" / "wheels", cache)
        refuse_outdir_in_cache(tmp_path / "elsewhere", cache)
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


@pytest.mark.parametrize("outdir", ["cache-other", "out", "."])
def test_an_outdir_beside_or_above_the_cache_is_fine(tmp_path: Path, outdir: str) -> None:
    refuse_outdir_in_cache(tmp_path / outdir, tmp_path / "cache")
