"""Tests for kiln.sdist: unpacking sdists, and refusing unsafe ones."""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from kiln import sdist
from kiln.errors import SdistError
from kiln.sdist import SDIST_SUFFIXES, is_sdist_archive, unpack_sdist

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

PKG_INFO = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"


@dataclass(frozen=True)
class Entry:
    """One archive member, written the same way into a tar or a zip."""

    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, fifo, chr
    data: bytes = b""
    target: str = ""
    mode: int = 0o644


GOOD = [
    Entry("foo-1.0", "dir", mode=0o755),
    Entry("foo-1.0/PKG-INFO", data=PKG_INFO),
    Entry("foo-1.0/src", "dir", mode=0o755),
    Entry("foo-1.0/src/foo.py", data=b"print('hi')\n"),
]

_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
}
_ZIP_TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "chr": stat.S_IFCHR,
}


def make_tar(path: Path, entries: Iterable[Entry]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TAR_TYPES[entry.kind]
            info.mode = entry.mode
            info.linkname = entry.target
            info.size = len(entry.data) if entry.kind == "file" else 0
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    return path


def make_zip(path: Path, entries: Iterable[Entry]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for entry in entries:
            name = entry.name + "/" if entry.kind == "dir" else entry.name
            info = zipfile.ZipInfo(name)
            info.external_attr = (_ZIP_TYPES[entry.kind] | entry.mode) << 16
            data = entry.target.encode() if entry.kind == "symlink" else entry.data
            zf.writestr(info, data)
    return path


def make(tmp_path: Path, kind: str, entries: Iterable[Entry]) -> Path:
    """An sdist named foo-1.0 of the given kind ("tar" or "zip")."""
    if kind == "tar":
        return make_tar(tmp_path / "foo-1.0.tar.gz", entries)
    return make_zip(tmp_path / "foo-1.0.zip", entries)


def snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture(params=["data", "trusted", "bare"])
def extraction(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with tarfile's data filter, and with kiln's own checks only."""
    mode: str = request.param
    if mode != "data":
        monkeypatch.setattr(sdist, "_USE_DATA_FILTER", False)
    if mode == "bare":
        if sys.version_info >= (3, 12):
            pytest.skip("every Python >= 3.12 has extraction filters")
        monkeypatch.setattr(sdist, "_HAS_FILTERS", False)
    return mode


# --- good archives ----------------------------------------------------------


@pytest.mark.filterwarnings("error")
@pytest.mark.usefixtures("extraction")
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_good_archive_unpacks(tmp_path: Path, kind: str) -> None:
    archive = make(tmp_path, kind, GOOD)
    dest = tmp_path / "out" / "dest"

    top = unpack_sdist(archive, dest)

    assert top == dest / "foo-1.0"
    assert (top / "PKG-INFO").read_bytes() == PKG_INFO
    assert (top / "src" / "foo.py").read_bytes() == b"print('hi')\n"
    assert sorted(p.name for p in dest.iterdir()) == ["foo-1.0"]


def test_dot_slash_prefixed_tar_unpacks(tmp_path: Path) -> None:
    entries = [Entry("./", "dir", mode=0o755)]
    entries += [Entry("./" + e.name, e.kind, e.data, mode=e.mode) for e in GOOD]
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", entries)
    top = unpack_sdist(archive, tmp_path / "dest")
    assert top == tmp_path / "dest" / "foo-1.0"
    assert (top / "PKG-INFO").read_bytes() == PKG_INFO


def test_existing_empty_destination_is_used(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", GOOD)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert unpack_sdist(archive, dest) == dest / "foo-1.0"
    assert (dest / "foo-1.0" / "PKG-INFO").is_file()


@pytest.mark.usefixtures("extraction")
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_symlink_inside_tree_is_kept(tmp_path: Path, kind: str) -> None:
    entries = [
        *GOOD,
        Entry("foo-1.0/link.py", "symlink", target="src/foo.py", mode=0o777),
        Entry("foo-1.0/src/up", "symlink", target="../PKG-INFO", mode=0o777),
    ]
    archive = make(tmp_path, kind, entries)
    top = unpack_sdist(archive, tmp_path / "dest")
    link = top / "link.py"
    assert link.is_symlink()
    assert str(link.readlink()) == "src/foo.py"
    assert link.read_bytes() == b"print('hi')\n"
    assert (top / "src" / "up").read_bytes() == PKG_INFO


@pytest.mark.usefixtures("extraction")
def test_hard_link_inside_tree_is_kept(tmp_path: Path) -> None:
    entries = [*GOOD, Entry("foo-1.0/copy.py", "hardlink", target="foo-1.0/src/foo.py")]
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", entries)
    top = unpack_sdist(archive, tmp_path / "dest")
    assert (top / "copy.py").read_bytes() == b"print('hi')\n"
    assert (top / "copy.py").samefile(top / "src" / "foo.py")


@pytest.mark.usefixtures("extraction")
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_modes_are_sanitised(tmp_path: Path, kind: str) -> None:
    entries = [
        *GOOD,
        Entry("foo-1.0/suid", data=b"x", mode=0o4755),
        Entry("foo-1.0/sgid-writable", data=b"x", mode=0o2666),
        Entry("foo-1.0/no-perms", data=b"x", mode=0o000),
        Entry("foo-1.0/other-exec", data=b"x", mode=0o645),
        Entry("foo-1.0/sticky", "dir", mode=0o1777),
        Entry("foo-1.0/locked", "dir", mode=0o000),
    ]
    archive = make(tmp_path, kind, entries)
    top = unpack_sdist(archive, tmp_path / "dest")

    def mode(name: str) -> int:
        return stat.S_IMODE((top / name).stat().st_mode)

    assert mode("suid") == 0o755
    assert mode("sgid-writable") == 0o644
    assert mode("no-perms") == 0o600
    assert mode("other-exec") == 0o644
    assert mode("sticky") == 0o755
    assert mode("locked") == 0o700


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("foo-1.0.tar.gz", True),
        ("FOO-1.0.TAR.GZ", True),
        ("foo-1.0.zip", True),
        ("foo-1.0.tar.bz2", False),
        ("foo-1.0-py3-none-any.whl", False),
    ],
)
def test_is_sdist_archive(tmp_path: Path, name: str, expected: bool) -> None:
    assert not is_sdist_archive(tmp_path / name)  # does not exist yet
    (tmp_path / name).write_bytes(b"")
    assert is_sdist_archive(tmp_path / name) is expected


def test_sdist_suffixes() -> None:
    assert SDIST_SUFFIXES == (".tar.gz", ".zip")


def test_is_sdist_archive_rejects_directory(tmp_path: Path) -> None:
    (tmp_path / "foo-1.0.tar.gz").mkdir()
    assert not is_sdist_archive(tmp_path / "foo-1.0.tar.gz")


# --- refusals ---------------------------------------------------------------


def assert_refused(tmp_path: Path, archive: Path, *fragments: str) -> SdistError:
    """Unpacking must fail with SdistError and change nothing on disk."""
    dest = tmp_path / "out" / "dest"
    before = snapshot(tmp_path)
    with pytest.raises(SdistError) as info:
        unpack_sdist(archive, dest)
    message = str(info.value)
    assert archive.name in message
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert not dest.exists()
    assert snapshot(tmp_path) == before
    assert info.value.exit_code == 2
    return info.value


TAR_ATTACKS = [
    pytest.param(
        [Entry("../evil", data=b"pwned")],
        "member '../evil' would be written outside the extraction directory",
        id="dotdot",
    ),
    pytest.param(
        [Entry("foo-1.0/../../evil", data=b"pwned")],
        "'foo-1.0/../../evil' would be written outside",
        id="dotdot-nested",
    ),
    pytest.param(
        [Entry("foo-1.0/a\\..\\..\\..\\evil", data=b"pwned")],
        "would be written outside",
        id="dotdot-backslash",
    ),
    pytest.param(
        [Entry("/tmp/kiln-evil", data=b"x")], "'/tmp/kiln-evil' has an absolute path", id="abs"
    ),
    pytest.param([Entry("C:/evil", data=b"x")], "'C:/evil' has an absolute path", id="drive"),
    pytest.param([Entry("\\\\server\\share\\evil", data=b"x")], "has an absolute path", id="unc"),
    pytest.param(
        [Entry("foo-1.0/evil", "symlink", target="../../x")],
        "'foo-1.0/evil' is a symlink to '../../x', which is outside foo-1.0/",
        id="symlink-relative",
    ),
    pytest.param(
        [Entry("foo-1.0/evil", "symlink", target="../bar-1.0")],
        "is a symlink to '../bar-1.0'",
        id="symlink-sibling",
    ),
    pytest.param(
        [Entry("foo-1.0/passwd", "symlink", target="/etc/passwd")],
        "'foo-1.0/passwd' is a symlink to '/etc/passwd'",
        id="symlink-absolute",
    ),
    pytest.param(
        [
            Entry("foo-1.0/a", "symlink", target="b/.."),
            Entry("foo-1.0/b", "symlink", target=".."),
        ],
        # lexically "b/.." is foo-1.0 itself; through the link b it is outside
        "'foo-1.0/a' is a symlink to 'b/..'",
        id="symlink-chain",
    ),
    pytest.param(
        [
            Entry("foo-1.0/up", "symlink", target="sub/../.."),
            Entry("foo-1.0/sub", "symlink", target="x/y/z/.."),
            Entry("foo-1.0/x", "symlink", target="../.."),
        ],
        "is a symlink to",
        id="symlink-chain-through-link",
    ),
    pytest.param(
        [Entry("foo-1.0/loop", "symlink", target="loop/x")],
        "'foo-1.0/loop' is a symlink to 'loop/x'",
        id="symlink-loop",
    ),
    pytest.param(
        [
            Entry("foo-1.0/dir", "symlink", target="src"),
            Entry("foo-1.0/dir/foo.py", data=b"x"),
        ],
        "'foo-1.0/dir/foo.py' would be written through symlink 'foo-1.0/dir'",
        id="write-through-symlink",
    ),
    pytest.param(
        [
            Entry("foo-1.0/src/foo.py", "symlink", target="../PKG-INFO"),
        ],
        "'foo-1.0/src/foo.py' occurs more than once",
        id="symlink-replaces-file",
    ),
    pytest.param(
        [Entry("foo-1.0/shadow", "hardlink", target="/etc/shadow")],
        "'foo-1.0/shadow' is a hard link to '/etc/shadow', outside foo-1.0/",
        id="hardlink-absolute",
    ),
    pytest.param(
        [Entry("foo-1.0/evil", "hardlink", target="../outside")],
        "'foo-1.0/evil' is a hard link to '../outside'",
        id="hardlink-outside",
    ),
    pytest.param(
        [Entry("foo-1.0/evil", "hardlink", target="foo-1.0/later")],
        "not an earlier file",
        id="hardlink-missing",
    ),
    pytest.param([Entry("foo-1.0/pipe", "fifo")], "'foo-1.0/pipe' is a FIFO", id="fifo"),
    pytest.param(
        [Entry("foo-1.0/null", "chr")], "'foo-1.0/null' is a character device", id="chardev"
    ),
    pytest.param(
        [Entry("bar-1.0", "dir"), Entry("bar-1.0/PKG-INFO", data=PKG_INFO)],
        "expected one top-level directory, found 'bar-1.0', 'foo-1.0'",
        id="two-top-level",
    ),
    pytest.param([Entry("setup.py", data=b"")], "found 'foo-1.0', 'setup.py'", id="stray-file"),
]


@pytest.mark.parametrize(("extra", "expected"), TAR_ATTACKS)
def test_tar_attack_refused(tmp_path: Path, extra: list[Entry], expected: str) -> None:
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", [*GOOD, *extra])
    assert_refused(tmp_path, archive, expected)


@pytest.mark.parametrize(("extra", "expected"), TAR_ATTACKS[:2])
def test_attack_first_in_archive_refused(tmp_path: Path, extra: list[Entry], expected: str) -> None:
    # The bad member comes first: nothing may be written before it is judged.
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", [*extra, *GOOD])
    assert_refused(tmp_path, archive, expected)


ZIP_ATTACKS = [
    pytest.param(
        [Entry("../evil", data=b"pwned")],
        "member '../evil' would be written outside the extraction directory",
        id="dotdot",
    ),
    pytest.param([Entry("/tmp/kiln-evil", data=b"x")], "has an absolute path", id="abs"),
    pytest.param(
        [Entry("foo-1.0/evil", "symlink", target="../../x")],
        "'foo-1.0/evil' is a symlink to '../../x'",
        id="symlink-relative",
    ),
    pytest.param(
        [Entry("foo-1.0/passwd", "symlink", target="/etc/passwd")],
        "is a symlink to '/etc/passwd'",
        id="symlink-absolute",
    ),
    pytest.param([Entry("foo-1.0/pipe", "fifo")], "'foo-1.0/pipe' is a FIFO", id="fifo"),
    pytest.param(
        [Entry("foo-1.0/null", "chr")], "'foo-1.0/null' is a character device", id="chardev"
    ),
]


@pytest.mark.parametrize(("extra", "expected"), ZIP_ATTACKS)
def test_zip_attack_refused(tmp_path: Path, extra: list[Entry], expected: str) -> None:
    archive = make_zip(tmp_path / "foo-1.0.zip", [*GOOD, *extra])
    assert_refused(tmp_path, archive, expected)


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_missing_pkg_info_refused(tmp_path: Path, kind: str) -> None:
    entries = [e for e in GOOD if not e.name.endswith("PKG-INFO")]
    archive = make(tmp_path, kind, entries)
    assert_refused(tmp_path, archive, "has no PKG-INFO in foo-1.0/; is it an sdist?")


def test_pkg_info_must_be_a_file(tmp_path: Path) -> None:
    entries = [e for e in GOOD if not e.name.endswith("PKG-INFO")]
    entries.append(Entry("foo-1.0/PKG-INFO", "symlink", target="src/foo.py"))
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", entries)
    assert_refused(tmp_path, archive, "has no PKG-INFO in foo-1.0/")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("foo-1.0.tar.gz", b"this is not gzip data", "is not a readable .tar.gz archive: "),
        ("foo-1.0.zip", b"PK\x03\x04 truncated", "is not a readable .zip archive: "),
        ("foo-1.0.tar.gz", b"", "is not a readable .tar.gz archive: "),
    ],
)
def test_corrupt_archive_refused(tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    archive = tmp_path / name
    archive.write_bytes(content)
    assert_refused(tmp_path, archive, fragment)


def test_truncated_tar_refused(tmp_path: Path) -> None:
    good = make_tar(tmp_path / "good.tar.gz", GOOD).read_bytes()
    archive = tmp_path / "foo-1.0.tar.gz"
    archive.write_bytes(good[: len(good) // 2])
    assert_refused(tmp_path, archive, "foo-1.0.tar.gz")


def test_missing_archive_refused(tmp_path: Path) -> None:
    archive = tmp_path / "foo-1.0.tar.gz"
    assert_refused(tmp_path, archive, "is not a readable .tar.gz archive")


def test_other_suffix_refused(tmp_path: Path) -> None:
    archive = tmp_path / "foo-1.0.tar.bz2"
    with tarfile.open(archive, "w:bz2"):
        pass
    assert_refused(tmp_path, archive, "is not a .tar.gz or .zip archive")


def test_non_empty_destination_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", GOOD)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(SdistError, match=r"foo-1\.0\.tar\.gz.*is not an empty directory"):
        unpack_sdist(archive, dest)
    assert snapshot(tmp_path) == before
    assert (dest / "keep.txt").read_text() == "mine"


def test_destination_that_is_a_file_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "foo-1.0.tar.gz", GOOD)
    (tmp_path / "dest").write_text("")
    with pytest.raises(SdistError, match="is not an empty directory"):
        unpack_sdist(archive, tmp_path / "dest")


# --- failures during extraction ---------------------------------------------

# Passes every check, but the OS refuses it: a file used as a directory.
_CLASH = [*GOOD, Entry("foo-1.0/src/foo.py/inner.py", data=b"x")]


@pytest.mark.usefixtures("extraction")
@pytest.mark.parametrize("kind", ["tar", "zip"])
@pytest.mark.parametrize("pre_existing", [False, True], ids=["new-dest", "empty-dest"])
def test_os_error_midway_cleans_up(tmp_path: Path, kind: str, pre_existing: bool) -> None:
    archive = make(tmp_path, kind, _CLASH)
    dest = tmp_path / "out" / "dest"
    if pre_existing:
        dest.mkdir(parents=True)
    with pytest.raises(SdistError, match=rf"{archive.name}: extracting into .* failed: "):
        unpack_sdist(archive, dest)
    if pre_existing:
        assert list(dest.iterdir()) == []
    else:
        assert not dest.exists()
