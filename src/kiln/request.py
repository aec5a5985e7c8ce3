"""What the caller asks for: :class:`BuildRequest`, and the checks on it alone.

:class:`BuildRequest` is the one list of build options. The API's keyword
arguments (:class:`BuildOptions`) and the command line's options are checked
against it by tests/unit/test_request.py and tests/unit/test_cli.py; the choices' plain
tuples, which the command line needs before it imports this module, are in
:mod:`kiln.options`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, Union, get_args, get_origin, get_type_hints

from kiln.errors import UsageError
from kiln.options import DISTRIBUTIONS, environment_defaults

Distribution = Literal["sdist", "wheel", "editable"]
Installer = Literal["auto", "pip", "uv"]
HookRunner = Literal["auto", "warm", "plain"]
CompilerCacheChoice = Literal["auto", "ccache", "sccache", "none"]

SDIST: Distribution = "sdist"
WHEEL: Distribution = "wheel"
EDITABLE: Distribution = "editable"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class BuildRequest:
    """One build, as the CLI or an API caller describes it.

    ``distributions`` empty means the default flow: an sdist from a project
    directory, then a wheel from that sdist; from an sdist archive, a wheel.
    The fields that ``KILN_*`` variables give defaults to are filled by
    :meth:`with_environment_defaults`, at the edge; nothing below reads them.
    """

    source: Path = Path()
    outdir: Path | None = None
    distributions: tuple[Distribution, ...] = ()
    config_settings: Mapping[str, Any] = field(default_factory=dict)
    isolation: bool = True
    skip_dependency_check: bool = False
    installer: Installer = "auto"
    constraints: tuple[Path, ...] = ()
    cache_dir: Path | None = None
    env_dir: Path | None = None
    # "auto": warm where fork() is safe.
    hook_runner: HookRunner = "auto"
    # A throwaway environment, as `python -m build` makes, instead of a cached one.
    fresh_env: bool = False
    # Resolve the cached environment's requirements again now, whatever its age.
    refresh: bool = False
    # None: none ($KILN_COMPILER_CACHE fills it in).
    compiler_cache: CompilerCacheChoice | None = None
    # Remote storage for the compiler cache.
    compiler_cache_remote: str | None = None
    # Seconds a cached environment resolved from unpinned requirements is reused
    # before it is resolved again; None: a day. No option: $KILN_ENV_TTL fills it in.
    env_ttl: float | None = None
    # The interpreter to build for (--python: "3.12", "cp312", a path or a command
    # name; kiln.interpreters.find_interpreter); None: the one running kiln.
    python: str | None = None

    def __post_init__(self) -> None:
        unknown = [d for d in self.distributions if d not in DISTRIBUTIONS]
        if unknown:
            raise UsageError(
                f"unknown distribution {unknown[0]!r}; choose from {', '.join(DISTRIBUTIONS)}"
            )
        for name, choices in _choices().items():
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise UsageError(
                    f"unknown {name.replace('_', ' ')} {value!r}; "
                    f"choose one of {', '.join(choices)}"
                )
        self._check_environment_options()

    def with_environment_defaults(
        self, environ: Mapping[str, str], *, read_env_dir: bool = True
    ) -> BuildRequest:
        """This request with its unset fields filled from ``environ``'s ``KILN_*``
        variables (:func:`kiln.options.environment_defaults`)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        filled = environment_defaults(fields, environ, read_env_dir=read_env_dir)
        return dataclasses.replace(self, **filled) if filled else self

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
        if self.python is not None:
            raise UsageError(
                "--python makes a build environment from another interpreter; with "
                "--no-isolation kiln builds with the one running it (run that one's kiln)"
            )
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


@functools.cache
def _choices() -> dict[str, tuple[str, ...]]:
    """Each field typed with a ``Literal`` (alone or with None), and its choices."""
    found = {}
    for name, hint in get_type_hints(BuildRequest).items():
        # `X | None` is a union whose arguments include X; a tuple's are its items.
        union = get_origin(hint) in (Union, types.UnionType)
        candidates = (hint, *get_args(hint)) if union else (hint,)
        literals = [a for a in candidates if get_origin(a) is Literal]
        if literals:
            found[name] = get_args(literals[0])
    return found


class BuildOptions(TypedDict, total=False):
    """The keyword arguments of :func:`kiln.build` and :func:`kiln.get_metadata`:
    the :class:`BuildRequest` fields after ``source``, ``outdir`` and
    ``distributions``, with paths as ``str`` or ``PathLike``."""

    config_settings: Mapping[str, Any] | None
    isolation: bool
    skip_dependency_check: bool
    installer: Installer
    constraints: Iterable[PathLike]
    cache_dir: PathLike | None
    env_dir: PathLike | None
    hook_runner: HookRunner
    fresh_env: bool
    refresh: bool
    compiler_cache: CompilerCacheChoice | None
    compiler_cache_remote: str | None
    env_ttl: float | None
    python: str | None


# The fields the API takes positionally, before the options.
POSITIONAL = ("source", "outdir", "distributions")


def request_from_options(
    function: str,
    source: PathLike,
    outdir: PathLike | None,
    distributions: Distribution | Iterable[Distribution],
    options: Mapping[str, Any],
) -> BuildRequest:
    """The request for an API call of ``function`` with these arguments, its unset
    fields filled from the process's environment, as the API documents."""
    unknown = sorted(set(options) - set(BuildOptions.__annotations__))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    fields = dict(options)
    for name in ("cache_dir", "env_dir"):
        if fields.get(name) is not None:
            fields[name] = Path(fields[name])
    if "constraints" in fields:
        fields["constraints"] = absolute_paths([os.fspath(c) for c in fields["constraints"]])
    fields["config_settings"] = dict(fields.get("config_settings") or {})
    request = BuildRequest(
        source=Path(source),
        outdir=Path(outdir) if outdir is not None else None,
        # A bare "wheel" means one distribution, not five letters.
        distributions=(distributions,) if isinstance(distributions, str) else tuple(distributions),
        **fields,
    )
    # The API leaves KILN_ENV_DIR alone (docs/api.md): see environment_defaults.
    return request.with_environment_defaults(os.environ, read_env_dir=False)


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
