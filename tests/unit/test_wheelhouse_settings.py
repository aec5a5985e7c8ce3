"""Per-package settings: kiln's TOML file, a fromager overrides tree, and their errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from kiln.errors import ConfigError
from kiln.wheelhouse.settings import PackageSettings, Settings, fromager_patches, load_settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_kiln_settings_file(tmp_path: Path) -> None:
    patch = write(tmp_path / "patches" / "fix.patch", "")
    settings_file = write(
        tmp_path / "kiln-settings.toml",
        """
        [packages.Foo_Bar]
        config-settings = { setup-args = ["-Dx=1"], "cmake.define.X" = "ON" }
        env = { CFLAGS = "-O2" }
        build-requires = ["cython<4"]
        patches = ["patches/fix.patch"]

        [packages.cmake]
        binary = true

        [packages.unwanted]
        skip = true
        """,
    )
    settings = Settings.load(settings_file, environ={})
    assert settings.names == ["cmake", "foo-bar", "unwanted"]
    foo = settings.settings_for("foo.bar", "1.0")
    assert foo == PackageSettings(
        name="foo-bar",
        config_settings={"setup-args": ["-Dx=1"], "cmake.define.X": "ON"},
        env={"CFLAGS": "-O2"},
        build_requires=("cython<4",),
        patches=(patch,),
        sources=(settings_file,),
    )
    assert settings.settings_for("cmake", "4.0").binary
    assert settings.settings_for("unwanted", "1").skip
    assert settings.settings_for("other", "1") == PackageSettings("other")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[packages.foo]\nconfig_settings = {}\n", "unknown key packages.foo.config_settings"),
        ("[packages.foo]\nbinary = 'yes'\n", "packages.foo.binary must be true or false"),
        ("[packages.foo]\nenv = { X = ['a'] }\n", "packages.foo.env.X must be a string"),
        ("[packages.foo]\nbuild-requires = ['not a req!']\n", "packages.foo.build-requires"),
        ("[packages.foo]\npatches = ['missing.patch']\n", "packages.foo.patches names missing"),
        ("[packages.foo]\n[packages.Foo]\n", "packages.Foo names foo again"),
        ("[package.foo]\n", "unknown key 'package'"),
        ("[packages.foo\n", "is not valid TOML"),
        ("[packages.'foo bar']\n", "packages.foo bar: 'foo bar' is not a valid package name"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "settings.toml", text)
    with pytest.raises(ConfigError) as raised:
        Settings.load(path)
    assert str(raised.value).startswith(str(path)) or str(path) in str(raised.value)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)  # one line, even where packaging says more


def fromager_tree(root: Path) -> Path:
    write(
        root / "settings" / "foo_bar.yaml",
        """
        changelog:
          "1.0": [rebuilt]
        config_settings:
          setup-args: ["-Dsystem=true"]
        env:
          EGG: spam
          BOTH: "$EGG and ${MISSING:-default} $$ ${__version__}"
        project_override:
          update_build_requires: ["setuptools>=68"]
          remove_build_requires: [cmake]
        variants:
          cpu:
            env:
              EGG: "cpu ${EGG}"
          rocm:
            pre_built: true
        """,
    )
    write(root / "settings" / "prebuilt.yaml", "variants:\n  cpu:\n    pre_built: true\n")
    for relative in (
        "foo_bar-1.0/002-second.patch",
        "foo_bar-1.0/cpu/003-cpu.patch",
        "foo_bar-1.0/rocm/004-rocm.patch",
        "foo_bar/001-any-version.patch",
        "foo_bar-2.0/009-other-version.patch",
        "foo_barx-1.0/009-other-name.patch",
    ):
        write(root / "patches" / relative, "")
    return root


def test_fromager_overrides_tree(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = fromager_tree(tmp_path / "overrides")
    settings = Settings.load(overrides=root, environ={"EGG": "ignored: the file sets it"})
    foo = settings.settings_for("foo-bar", "1.0")
    assert foo.config_settings == {"setup-args": ["-Dsystem=true"]}
    assert foo.build_requires == ("setuptools>=68",)
    assert not foo.binary
    # Unversioned and versioned patches and the variant's, by file name.
    assert [p.name for p in foo.patches] == [
        "001-any-version.patch",
        "002-second.patch",
        "003-cpu.patch",
    ]
    env = foo.env
    # In order: BOTH is set before the variant changes EGG, as fromager does.
    assert env == {"EGG": "cpu spam", "BOTH": "spam and default $ 1.0"}
    assert settings.settings_for("prebuilt", "1").binary
    assert Settings.load(overrides=root, variant="rocm").settings_for("foo-bar", "1").binary
    assert settings.binary_names() == {"prebuilt"}
    # The fromager settings kiln does not honour are named, not silently dropped.
    assert "changelog" in caplog.text and "project_override.remove_build_requires" in caplog.text


def test_kiln_file_applies_over_the_overrides_tree(tmp_path: Path) -> None:
    root = fromager_tree(tmp_path / "overrides")
    write(tmp_path / "mine.patch", "")
    ours = write(
        tmp_path / "settings.toml",
        '[packages.foo-bar]\nenv = { EGG = "ours" }\npatches = ["mine.patch"]\n',
    )
    foo = Settings.load(ours, root, environ={}).settings_for("foo_bar", "1.0")
    assert foo.env["EGG"] == "ours"
    assert [p.name for p in foo.patches][-1] == "mine.patch"
    assert len(foo.sources) == 2


def test_a_version_table_applies_to_that_version_only(tmp_path: Path) -> None:
    write(tmp_path / "all.patch", "")
    write(tmp_path / "old.patch", "")
    path = write(
        tmp_path / "s.toml",
        """
        [packages.foo]
        patches = ["all.patch"]
        env = { X = "1" }

        [packages."Foo==1.0-rc1"]
        patches = ["old.patch"]
        env = { X = "2" }
        """,
    )
    settings = Settings.load(path, environ={})
    assert settings.names == ["foo"]
    old = settings.settings_for("foo", "1.0rc1")
    assert [p.name for p in old.patches] == ["all.patch", "old.patch"]
    assert old.env == {"X": "2"} and old.name == "foo"
    new = settings.settings_for("foo", "1.1")
    assert [p.name for p in new.patches] == ["all.patch"]
    bad = write(tmp_path / "bad.toml", '[packages."foo==latest"]\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: packages\.foo==latest: 'latest' is not"):
        Settings.load(bad)


def test_what_goes_into_the_wheel_key(tmp_path: Path) -> None:
    from kiln.wheelhouse.keys import wheel_key

    patch = write(tmp_path / "p.patch", "one")
    path = write(
        tmp_path / "s.toml",
        '[packages.foo]\nenv = { X = "${Y:-d}" }\npatches = ["p.patch"]\n'
        'config-settings = { b = "2", a = "1" }\n',
    )
    foo = Settings.load(path, environ={}).settings_for("foo", "1")
    data = foo.key_material()
    assert data == {
        "config_settings": {"a": "1", "b": "2"},
        "env": {"X": "d"},
        "build_requires": [],
    }
    with_y = Settings.load(path, environ={"Y": "e"}).settings_for("foo", "1")
    assert with_y.key_material()["env"] == {"X": "e"}
    assert foo.patch_contents() == [b"one"]

    def key() -> str:
        return wheel_key(
            sdist_sha256="0" * 64,
            patches=foo.patch_contents(),
            settings=foo.key_material(),
            build_env=[],
            interpreter="cp312",
            platform="linux_x86_64",
        )

    before = key()
    patch.write_text("two")  # editing a patch changes the key
    assert key() != before
    patch.unlink()
    with pytest.raises(ConfigError, match=r"cannot read patch .*p\.patch"):
        foo.patch_contents()


def test_unset_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", '[packages.foo]\nenv = { X = "$NOPE" }\n')
    with pytest.raises(ConfigError, match=r"s\.toml: env X of foo uses \$NOPE"):
        Settings.load(path, environ={}).settings_for("foo", "1")


def test_unknown_fromager_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "o" / "settings" / "foo.yaml", "variants:\n  cpu:\n    bogus: 1\n")
    with pytest.raises(ConfigError, match=r"foo\.yaml: unknown key variants\.cpu\.bogus"):
        Settings.load(overrides=tmp_path / "o")
    write(path, "nonsense: 1\n")
    with pytest.raises(ConfigError, match=r"foo\.yaml: unknown key 'nonsense'"):
        Settings.load(overrides=tmp_path / "o")


def test_missing_pyyaml_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "o" / "settings" / "foo.yaml", "env: {}\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    with pytest.raises(ConfigError, match=rf"reading {path} needs PyYAML.*kiln-build\[fromager\]"):
        Settings.load(overrides=tmp_path / "o")


def test_a_toml_file_needs_no_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    path = write(tmp_path / "s.toml", "[packages.foo]\nskip = true\n")
    assert load_settings(path).settings_for("foo", "1").skip


def test_fromager_patches_ignore_local_versions(tmp_path: Path) -> None:
    write(tmp_path / "foo-1.0" / "1.patch", "")
    assert [p.name for p in fromager_patches(tmp_path, "foo", "1.0+local")] == ["1.patch"]
    assert fromager_patches(tmp_path / "missing", "foo", "1.0") == []
