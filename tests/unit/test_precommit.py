"""The pre-commit hooks run the ruff that the test extra pins, so a commit that passes
them passes .ci/run's lint step too."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_pre_commit_pins_the_test_extras_ruff() -> None:
    with (ROOT / "pyproject.toml").open("rb") as stream:
        extra = tomllib.load(stream)["project"]["optional-dependencies"]["test"]
    pinned = [requirement for requirement in extra if requirement.startswith("ruff==")]
    assert len(pinned) == 1, extra
    config = (ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    # No YAML parser among the test tools: the pins are plain strings in the file.
    in_hooks = re.findall(r"""["']?(ruff==[^"'\]\s]+)""", config)
    assert len(in_hooks) == 2, config  # ruff check and ruff format
    assert set(in_hooks) == set(pinned)
