"""What kiln knows about particular build backends.

Some backends compile in a directory of their own choosing, a new temporary
one each build unless told otherwise, and every compile then looks new to a
compiler cache. Where the user has not chosen one, kiln gives them a stable
directory inside the project's stable place (see kiln.workspace), emptied
before each build so stale outputs can never reach an artifact.

setuptools, maturin and pdm-backend build inside the source tree (``build/``,
``target/``, ``.pdm-build/``), which is stable already once the source is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kiln.project import Project

# backend module -> (config setting naming the build directory, [tool.X] table, key there)
_BUILD_DIR_SETTINGS = {
    "scikit_build_core.build": ("build-dir", "scikit-build", "build-dir"),
    "mesonpy": ("build-dir", None, None),
}


def with_stable_build_dir(
    project: Project, config_settings: Mapping[str, Any], build_dir: Path, distribution: str
) -> dict[str, Any]:
    """``config_settings``, plus a stable build directory for backends that need one.

    Not for editable wheels: those load from their build directory for as long as
    they are installed (meson-python), so it must outlive kiln's run.
    """
    settings = dict(config_settings)
    if distribution == "editable":
        return settings
    module = project.build_system.build_backend.partition(":")[0]
    known = _BUILD_DIR_SETTINGS.get(module)
    if known is None:
        return settings
    setting, table, key = known
    if setting in settings or (table and key and _tool_setting(project, table, key)):
        return settings  # the user's choice stands
    settings[setting] = str(build_dir)
    return settings


def _tool_setting(project: Project, table: str, key: str) -> bool:
    from kiln.project import load_pyproject

    data = load_pyproject(project.source_dir)
    tool = data.get("tool", {})
    return isinstance(tool, dict) and isinstance(tool.get(table), dict) and key in tool[table]
