"""Patches: applied in order to a freshly unpacked sdist; one that does not apply is named."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from kiln.wheelhouse.patches import PatchError, apply_patches, patched_source

ORIGINAL = "def answer():\n    return 41\n"
FIX = """\
--- a/demo/core.py
+++ b/demo/core.py
@@ -1,2 +1,2 @@
 def answer():
-    return 41
+    return 42
"""
FOLLOW_UP = """\
--- a/demo/core.py
+++ b/demo/core.py
@@ -1,2 +1,3 @@
 def answer():
     return 42
+# patched twice
"""
STALE = """\
--- a/demo/core.py
+++ b/demo/core.py
@@ -1,2 +1,2 @@
 def answer():
-    return 7
+    return 8
"""


def make_sdist(tmp_path: Path) -> Path:
    archive = tmp_path / "demo-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in {
            "demo-1.0/demo/core.py": ORIGINAL,
            "demo-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def patch_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "patches" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_patches_apply_in_order_to_a_fresh_tree(tmp_path: Path) -> None:
    patches = [patch_file(tmp_path, "1.patch", FIX), patch_file(tmp_path, "2.patch", FOLLOW_UP)]
    destination = tmp_path / "place"
    source = patched_source(make_sdist(tmp_path), patches, destination)
    assert source == destination / "demo-1.0"
    assert (
        source / "demo" / "core.py"
    ).read_text() == "def answer():\n    return 42\n# patched twice\n"
    # Again into the same place: unpacked afresh, so the patches apply again.
    again = patched_source(make_sdist(tmp_path), patches, destination)
    assert (again / "demo" / "core.py").read_text().count("patched twice") == 1


def test_a_patch_that_does_not_apply_is_named_and_changes_nothing(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path)
    stale = patch_file(tmp_path, "0002-stale.patch", STALE)
    source = patched_source(sdist, [], tmp_path / "tree")
    with pytest.raises(PatchError) as raised:
        apply_patches(source, [stale])
    assert str(stale) in str(raised.value) and raised.value.patch == stale
    assert (source / "demo" / "core.py").read_text() == ORIGINAL
    assert sorted(p.name for p in (source / "demo").iterdir()) == ["core.py"]  # no .rej, .orig


def test_a_failed_patch_leaves_the_place_empty(tmp_path: Path) -> None:
    good, stale = patch_file(tmp_path, "1.patch", FIX), patch_file(tmp_path, "2.patch", STALE)
    with pytest.raises(PatchError, match=r"2\.patch does not apply to demo-1\.0"):
        patched_source(make_sdist(tmp_path), [good, stale], tmp_path / "place")
    assert not (tmp_path / "place").exists()


def test_a_missing_patch_is_named(tmp_path: Path) -> None:
    source = patched_source(make_sdist(tmp_path), [], tmp_path / "tree")
    with pytest.raises(PatchError, match=r"gone\.patch does not exist"):
        apply_patches(source, [tmp_path / "gone.patch"])


def test_git_apply_when_there_is_no_patch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from kiln.wheelhouse import patches

    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    monkeypatch.setattr(patches, "_tool", lambda: git)
    source = patched_source(make_sdist(tmp_path), [], tmp_path / "tree")
    apply_patches(source, [patch_file(tmp_path, "1.patch", FIX)])
    assert "42" in (source / "demo" / "core.py").read_text()
    with pytest.raises(PatchError, match=r"2\.patch does not apply"):
        apply_patches(source, [patch_file(tmp_path, "2.patch", STALE)])
