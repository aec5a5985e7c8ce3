"""kiln.wheelhouse.sources: fetching into the cache, hash checks, build requirements."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from kiln.errors import ConfigError
from kiln.layout import SDISTS
from kiln.wheelhouse.model import FileRef
from kiln.wheelhouse.sources import (
    BUILD_FACTS,
    BuildFacts,
    HashMismatchError,
    build_facts,
    build_requirements,
    fetch,
    kept_sha256,
    self_build_requirements,
)


def sdist_file(tmp_path: Path, name: str = "pkg-1.0.tar.gz", content: bytes = b"x") -> FileRef:
    path = tmp_path / "index" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return FileRef(path.as_uri(), name, hashlib.sha256(content).hexdigest())


def test_fetch_keeps_the_file_by_its_hash(tmp_path: Path) -> None:
    ref = sdist_file(tmp_path, content=b"the sdist")
    kept = fetch(ref, tmp_path / "cache")
    assert kept == tmp_path / "cache" / SDISTS / str(ref.sha256) / "pkg-1.0.tar.gz"
    assert kept.read_bytes() == b"the sdist"
    # A second fetch is served from the cache: the original is not read again.
    Path(tmp_path / "index" / "pkg-1.0.tar.gz").unlink()
    assert fetch(ref, tmp_path / "cache") == kept


def test_fetch_without_a_known_hash_files_it_under_its_digest(tmp_path: Path) -> None:
    ref = sdist_file(tmp_path, content=b"abc")
    kept = fetch(FileRef(ref.url, ref.filename), tmp_path / "cache")
    assert kept.parent.name == hashlib.sha256(b"abc").hexdigest()


def test_a_hash_mismatch_names_the_file_and_both_hashes_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    ref = sdist_file(tmp_path, content=b"tampered")
    promised = "0" * 64
    with pytest.raises(HashMismatchError) as caught:
        fetch(FileRef(ref.url, ref.filename, promised), tmp_path / "cache")
    message = str(caught.value)
    assert "pkg-1.0.tar.gz" in message
    assert promised in message
    assert str(ref.sha256) in message
    bucket = tmp_path / "cache" / SDISTS
    assert [p for p in bucket.rglob("*") if p.is_file()] == []


def test_the_inputs_hashes_are_checked_too(tmp_path: Path) -> None:
    ref = sdist_file(tmp_path, content=b"abc")
    with pytest.raises(HashMismatchError, match=r"not among the --hash values"):
        fetch(FileRef(ref.url, ref.filename), tmp_path / "cache", allowed={"1" * 64})
    assert fetch(ref, tmp_path / "cache", allowed={str(ref.sha256).upper()}).is_file()


def make_tar(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_build_requirements_come_from_the_sdists_pyproject(tmp_path: Path) -> None:
    sdist = make_tar(
        tmp_path / "pkg-1.0.tar.gz",
        {
            "pkg-1.0/PKG-INFO": "Metadata-Version: 2.1\n",
            # Not the top-level one: ignored.
            "pkg-1.0/sub/pyproject.toml": '[build-system]\nrequires = ["nope"]\n',
            "pkg-1.0/pyproject.toml": '[build-system]\nrequires = ["hatchling>=1", "hatch-vcs"]\n',
        },
    )
    assert build_requirements(sdist) == ["hatchling>=1", "hatch-vcs"]


def test_an_sdist_without_a_build_system_gets_setuptools(tmp_path: Path) -> None:
    plain = make_tar(tmp_path / "a-1.tar.gz", {"a-1/setup.py": ""})
    tool_only = make_tar(tmp_path / "b-1.tar.gz", {"b-1/pyproject.toml": "[tool.x]\n"})
    assert build_requirements(plain) == ["setuptools>=40.8.0"]
    assert build_requirements(tool_only) == ["setuptools>=40.8.0"]


def test_build_requirements_from_a_zip_sdist(tmp_path: Path) -> None:
    sdist = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(sdist, "w") as archive:
        archive.writestr("pkg-1.0/pyproject.toml", '[build-system]\nrequires = ["flit_core"]\n')
    assert build_requirements(sdist) == ["flit_core"]


@pytest.mark.parametrize(
    ("pyproject", "message"),
    [
        ('[build-system]\nrequires = ["ok", "bad >>= 1"]\n', r"invalid requirement 'bad >>= 1'"),
        ("[build-system]\nbuild-backend = 'x'\n", r"has no 'requires' key"),
        ("[build-system\n", r"invalid TOML"),
    ],
)
def test_bad_build_requirements_name_the_sdist(
    tmp_path: Path, pyproject: str, message: str
) -> None:
    sdist = make_tar(tmp_path / "pkg-1.0.tar.gz", {"pkg-1.0/pyproject.toml": pyproject})
    with pytest.raises(ConfigError, match=message) as caught:
        build_requirements(sdist)
    assert "pkg-1.0.tar.gz/pyproject.toml" in str(caught.value)


SELF_HOSTING = {
    "back-1.0/PKG-INFO": (
        "Metadata-Version: 2.1\nName: back\nVersion: 1.0\n"
        "Requires-Dist: pathspec>=0.10\n"
        "Requires-Dist: tomli; python_version < '3.11'\n"
        "Requires-Dist: pytest; extra == 'test'\n"
    ),
    "back-1.0/pyproject.toml": (
        '[build-system]\nrequires = []\nbuild-backend = "back"\nbackend-path = ["src"]\n'
    ),
}


def test_a_self_hosting_backends_own_requirements_are_build_requirements(
    tmp_path: Path,
) -> None:
    sdist = make_tar(tmp_path / "back-1.0.tar.gz", SELF_HOSTING)
    assert self_build_requirements(sdist) == [
        "pathspec>=0.10",
        "tomli; python_version < '3.11'",
    ]
    # Without backend-path the backend is installed, not the project: nothing more.
    other = dict(SELF_HOSTING)
    other["back-1.0/pyproject.toml"] = '[build-system]\nrequires = ["flit_core"]\n'
    assert self_build_requirements(make_tar(tmp_path / "other-1.0.tar.gz", other)) == []


def test_build_facts_are_read_once_then_kept_beside_the_sdist(tmp_path: Path) -> None:
    kept = tmp_path / "sdists" / ("a" * 64)
    kept.mkdir(parents=True)
    sdist = make_tar(kept / "back-1.0.tar.gz", SELF_HOSTING)
    facts = build_facts(sdist)
    assert facts == BuildFacts((), ("pathspec>=0.10", "tomli; python_version < '3.11'"), False)
    assert (kept / BUILD_FACTS).is_file()
    sdist.write_bytes(b"not an archive any more")  # the note answers: the archive is not read
    assert build_facts(sdist) == facts
    assert kept_sha256(sdist) == "a" * 64


def test_an_sdist_with_extension_sources_is_compiled(tmp_path: Path) -> None:
    kept = tmp_path / "sdists" / ("b" * 64)
    kept.mkdir(parents=True)
    files = dict(SELF_HOSTING, **{"back-1.0/src/_speed.pyx": "cdef int x\n"})
    assert build_facts(make_tar(kept / "back-1.0.tar.gz", files)).compiled
