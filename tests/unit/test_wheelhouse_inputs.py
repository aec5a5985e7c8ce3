"""kiln.wheelhouse.inputs: requirement files, lock files and project directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import UsageError
from kiln.wheelhouse.inputs import read_inputs
from kiln.wheelhouse.model import FileRef

SHA_A = "a" * 64
SHA_B = "b" * 64


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_requirement_file_keeps_markers_and_drops_comments(tmp_path: Path) -> None:
    file = write(
        tmp_path / "requirements.txt",
        "# a comment\n"
        "attrs>=20  # why attrs\n"
        "\n"
        'tomli; python_version < "3.11"\n'
        "six \\\n"
        "  ==1.17.0\n",
    )
    inputs = read_inputs(requirement_files=[file])
    assert inputs.requirements == ["attrs>=20", 'tomli; python_version < "3.11"', "six ==1.17.0"]


def test_includes_are_read_relative_to_the_including_file(tmp_path: Path) -> None:
    write(tmp_path / "deeper" / "more.txt", "six\n-c pins.txt\n")
    write(tmp_path / "deeper" / "pins.txt", "six==1.17.0\n")
    top = write(tmp_path / "requirements.txt", "attrs\n-r deeper/more.txt\n")
    inputs = read_inputs(requirement_files=[top])
    assert inputs.requirements == ["attrs", "six"]
    assert inputs.constraints == [(tmp_path / "deeper" / "pins.txt").absolute()]


def test_an_include_loop_reads_each_file_once(tmp_path: Path) -> None:
    write(tmp_path / "b.txt", "six\n-r a.txt\n")
    top = write(tmp_path / "a.txt", "attrs\n--requirement=b.txt\n")
    assert read_inputs(requirement_files=[top]).requirements == ["attrs", "six"]


def test_hashes_are_collected_by_canonical_name(tmp_path: Path) -> None:
    file = write(
        tmp_path / "requirements.txt",
        f"Six==1.17.0 \\\n    --hash=sha256:{SHA_A} \\\n    --hash sha256:{SHA_B.upper()}\n",
    )
    inputs = read_inputs(requirement_files=[file])
    assert inputs.requirements == ["Six==1.17.0"]
    assert inputs.hashes == {"six": {SHA_A, SHA_B}}


def test_a_hash_that_is_not_sha256_names_the_line(tmp_path: Path) -> None:
    file = write(tmp_path / "requirements.txt", "attrs\nsix --hash=md5:abc\n")
    with pytest.raises(UsageError, match=r"requirements.txt:2: --hash 'md5:abc'"):
        read_inputs(requirement_files=[file])


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("-e ./project", "-e: editable"),
        ("--index-url https://example.org/simple", "--index-url is not read"),
        ("--find-links=./wheels", "--find-links is not read"),
        ("--pre", "option --pre is not supported"),
        ("six --config-settings=a=b", "option --config-settings is not supported"),
    ],
)
def test_options_kiln_cannot_honour_name_file_and_line(
    tmp_path: Path, line: str, words: str
) -> None:
    file = write(tmp_path / "requirements.txt", f"attrs\n\n{line}\n")
    with pytest.raises(UsageError, match=rf"requirements.txt:3: {words}"):
        read_inputs(requirement_files=[file])


def test_an_invalid_requirement_names_the_line(tmp_path: Path) -> None:
    file = write(tmp_path / "requirements.txt", "attrs >>= 2\n")
    with pytest.raises(UsageError, match=r"requirements.txt:1: not a valid requirement") as raised:
        read_inputs(requirement_files=[file])
    assert "\n" not in str(raised.value)  # one line, without packaging's caret drawing


def test_a_missing_included_file_names_its_includer(tmp_path: Path) -> None:
    top = write(tmp_path / "requirements.txt", "attrs\n-r nothere.txt\n")
    with pytest.raises(UsageError, match=r"nothere.txt \(included by .*requirements.txt:2\)"):
        read_inputs(requirement_files=[top])


def test_positionals_are_requirements_locks_or_projects(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write(project / "pyproject.toml", '[project]\nname = "proj"\ndynamic = ["version"]\n')
    legacy = write(tmp_path / "legacy" / "setup.py", "").parent
    lock = write(tmp_path / "pylock.toml", 'lock-version = "1.0"\n')
    inputs = read_inputs(["tomli", str(project), str(lock), str(legacy)])
    # Projects are resolved as direct references: the resolver reads their dependencies.
    assert inputs.requirements == ["tomli", f"proj @ {project.as_uri()}", str(legacy)]
    assert inputs.projects == [project.resolve(), legacy.resolve()]
    assert inputs.locked == []


def test_a_directory_that_is_not_a_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"empty has no pyproject.toml, setup.py or setup.cfg"):
        read_inputs([str(tmp_path / "empty")])


def test_an_invalid_positional_requirement_is_refused() -> None:
    with pytest.raises(UsageError, match=r"requirement 'attrs >>= 2': not a valid requirement"):
        read_inputs(["attrs >>= 2"])


LOCK = f"""\
lock-version = "1.0"
created-by = "someone"

[[packages]]
name = "Six"
version = "1.17.0"
sdist = {{ url = "https://files.example.org/six-1.17.0.tar.gz", hashes = {{ sha256 = "{SHA_A}" }} }}

[[packages]]
name = "tomli"
version = "2.5.0"
marker = "python_version < '3.11'"
sdist = {{ path = "sdists/tomli-2.5.0.tar.gz", hashes = {{ sha256 = "{SHA_B}" }} }}
wheels = [
  {{ name = "tomli-2.5.0-py3-none-any.whl", url = "file:///w/tomli-2.5.0-py3-none-any.whl" }},
]

[[packages]]
name = "local"
directory = {{ path = "src/local" }}
"""


def test_a_pylock_is_read_into_pins(tmp_path: Path) -> None:
    lock = write(tmp_path / "pylock.dev.toml", LOCK)
    inputs = read_inputs(requirement_files=[lock])
    six, tomli, local = inputs.locked
    assert six.id == "six==1.17.0"
    assert six.sdist == FileRef(
        "https://files.example.org/six-1.17.0.tar.gz", "six-1.17.0.tar.gz", SHA_A
    )
    assert tomli.sdist is not None
    assert tomli.sdist.url == (tmp_path / "sdists" / "tomli-2.5.0.tar.gz").as_uri()
    assert tomli.wheels == (
        FileRef("file:///w/tomli-2.5.0-py3-none-any.whl", "tomli-2.5.0-py3-none-any.whl"),
    )
    assert local.project_dir == tmp_path / "src" / "local"
    assert inputs.requirements == []


def test_locked_markers_are_evaluated_per_interpreter(tmp_path: Path) -> None:
    inputs = read_inputs(requirement_files=[write(tmp_path / "pylock.toml", LOCK)])
    names = [pin.name for pin in inputs.locked_for({"python_version": "3.12"})]
    assert names == ["six", "local"]
    names = [pin.name for pin in inputs.locked_for({"python_version": "3.10"})]
    assert names == ["six", "tomli", "local"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('lock-version = "2.0"\n', r"lock-version '2.0' is not 1.x"),
        ('lock-version = "1.0"\n[[packages]]\nname = "x"\n', r"package x has no version"),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "../../evil"\n'
            'sdist = { url = "https://e/x-1.tar.gz" }\n',
            r"package x: version '\.\./\.\./evil' is not a version \(PEP 440\)",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "1"\n',
            r"package x has no sdist, wheel or directory",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "1"\n'
            'sdist = { url = "https://e/x-1.tar.gz", hashes = { sha256 = "nope" } }\n',
            r"package x sdist: hashes.sha256 'nope'",
        ),
        ("lock-version = ", r"invalid TOML"),
    ],
)
def test_a_bad_lock_is_a_usage_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    lock = write(tmp_path / "pylock.toml", text)
    with pytest.raises(UsageError, match=message) as caught:
        read_inputs([str(lock)])
    assert str(lock) in str(caught.value)


def test_a_locked_archive_is_an_sdist_or_a_wheel_by_its_name(tmp_path: Path) -> None:
    lock = write(
        tmp_path / "lock" / "pylock.toml",
        'lock-version = "1.0"\n'
        '[[packages]]\nname = "six"\nversion = "1.17.0"\n'
        'archive = { path = "../six-1.17.0.tar.gz" }\n'
        '[[packages]]\nname = "w"\nversion = "1"\n'
        'archive = { url = "https://e.org/w-1-py3-none-any.whl" }\n',
    )
    six, wheel = read_inputs(requirement_files=[lock]).locked
    assert six.sdist == FileRef((tmp_path / "six-1.17.0.tar.gz").as_uri(), "six-1.17.0.tar.gz")
    assert wheel.sdist is None
    assert wheel.wheels == (FileRef("https://e.org/w-1-py3-none-any.whl", "w-1-py3-none-any.whl"),)


def test_a_locked_vcs_package_is_refused(tmp_path: Path) -> None:
    lock = write(
        tmp_path / "pylock.toml",
        'lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "1"\n'
        'vcs = { type = "git", url = "https://e.org/x.git", commit-id = "abc" }\n',
    )
    with pytest.raises(UsageError, match=r"package x comes from version control"):
        read_inputs(requirement_files=[lock])
