"""What the caller asks for: :class:`BuildRequest`, and the checks on it alone."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import UsageError

SDIST = "sdist"
WHEEL = "wheel"
EDITABLE = "editable"
DISTRIBUTIONS = (SDIST, WHEEL, EDITABLE)


@dataclass(frozen=True)
class BuildRequest:
    """One build, as the CLI or an API caller describes it.

    ``distributions`` empty means the default flow: an sdist from a project
    directory, then a wheel from that sdist; from an sdist archive, a wheel.
    """

    source: Path = Path()
    outdir: Path | None = None
    distributions: tuple[str, ...] = ()
    config_settings: Mapping[str, Any] = field(default_factory=dict)
    isolation: bool = True
    skip_dependency_check: bool = False
    installer: str = "auto"
    constraints: tuple[Path, ...] = ()
    cache_dir: Path | None = None
    env_dir: Path | None = None
    hook_runner: str = "auto"
    # A throwaway environment, as `python -m build` makes, instead of a cached one.
    fresh_env: bool = False
    # Resolve the cached environment's requirements again now, whatever its age.
    refresh: bool = False
    # "auto", "ccache", "sccache" or "none"; None: $KILN_COMPILER_CACHE, else none.
    compiler_cache: str | None = None
    # Remote storage for the compiler cache; None: $KILN_COMPILER_CACHE_REMOTE.
    compiler_cache_remote: str | None = None

    def __post_init__(self) -> None:
        unknown = [d for d in self.distributions if d not in DISTRIBUTIONS]
        if unknown:
            raise UsageError(
                f"unknown distribution {unknown[0]!r}; choose from {', '.join(DISTRIBUTIONS)}"
            )
        self._check_environment_options()

    def _check_environment_options(self) -> None:
        """Refuse option combinations that cannot all be honoured."""
        if self.isolation:
            if self.refresh and (self.env_dir is not None or self.fresh_env):
                raise UsageError(
                    "--refresh re-resolves a reusable cached environment; "
                    "with --env-dir or --fresh-env every environment is new already"
                )
            if self.env_dir is not None and self.fresh_env:
                raise UsageError(
                    "--fresh-env and --env-dir both say where the environment goes; pick one"
                )
            return
        # --no-isolation: the options about isolated environments mean nothing.
        if self.installer != "auto":
            raise UsageError("--installer has no effect with --no-isolation")
        if self.env_dir is not None:
            raise UsageError(
                "--env-dir names an isolated environment; it has no effect with --no-isolation"
            )
        if self.fresh_env or self.refresh:
            raise UsageError(
                "--fresh-env and --refresh are about isolated environments; "
                "they have no effect with --no-isolation"
            )
        if self.constraints:
            raise UsageError(
                "-c/--constraint applies to installs; it has no effect with --no-isolation"
            )


def parse_config_settings(
    pairs: Iterable[str] = (), config_json: str | None = None
) -> dict[str, Any]:
    """``-C KEY[=VALUE]`` pairs over an optional ``--config-json`` object.

    A key given more than once collects its values in a list, as pypa/build does.
    """
    settings: dict[str, Any] = {}
    if config_json is not None:
        try:
            loaded = json.loads(config_json)
        except json.JSONDecodeError as error:
            raise UsageError(f"--config-json is not valid JSON: {error}") from error
        if not isinstance(loaded, dict):
            raise UsageError('--config-json must be a JSON object, like \'{"key": "value"}\'')
        settings.update(loaded)
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise UsageError(f"-C/--config-setting {pair!r} has no key; use KEY=VALUE")
        if key not in settings:
            settings[key] = value
        elif isinstance(settings[key], list):
            settings[key].append(value)
        else:
            settings[key] = [settings[key], value]
    return settings


def absolute_paths(paths: Sequence[Path | str]) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().absolute() for p in paths)
