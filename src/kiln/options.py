"""The build options' choices, and the ``KILN_*`` variables that give their defaults.

:class:`kiln.request.BuildRequest` is the one list of build options, typed with
``Literal`` choices. This module holds the same choices as plain tuples, and
reads the environment variables, because the command line needs both before it
starts the last build's warm worker (:mod:`kiln.headstart`), when importing
``typing`` or ``dataclasses`` would cost that head start its lead. A unit test
checks the tuples against the request's ``Literal`` types and the CLI's choices.

:func:`environment_defaults` is the only place the ``KILN_*`` build variables
are read: the CLI and the API call it once, at the edge, and everything below
them reads the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kiln.errors import UsageError

TYPE_CHECKING = False  # spares importing typing: the command line reads this first
if TYPE_CHECKING:
    from typing import Any

    from kiln.request import CompilerCacheChoice, Distribution, HookRunner, Installer

DISTRIBUTIONS: tuple[Distribution, ...] = ("sdist", "wheel", "editable")
INSTALLER_CHOICES: tuple[Installer, ...] = ("auto", "pip", "uv")
HOOK_RUNNER_CHOICES: tuple[HookRunner, ...] = ("auto", "warm", "plain")
COMPILER_CACHE_CHOICES: tuple[CompilerCacheChoice, ...] = ("auto", "ccache", "sccache", "none")

CACHE_DIR_ENV = "KILN_CACHE_DIR"
ENV_DIR_ENV = "KILN_ENV_DIR"
ENV_TTL_ENV = "KILN_ENV_TTL"
HOOK_RUNNER_ENV = "KILN_HOOK_RUNNER"
COMPILER_CACHE_ENV = "KILN_COMPILER_CACHE"
COMPILER_CACHE_REMOTE_ENV = "KILN_COMPILER_CACHE_REMOTE"
PYTHON_ENV = "KILN_PYTHON"

# Each variable, the request field it gives a default to, and the field's values
# that leave it to the variable. An empty variable counts as unset.
VARIABLES: tuple[tuple[str, str, tuple[object, ...]], ...] = (
    (CACHE_DIR_ENV, "cache_dir", (None,)),
    (ENV_DIR_ENV, "env_dir", (None,)),
    (ENV_TTL_ENV, "env_ttl", (None,)),
    (HOOK_RUNNER_ENV, "hook_runner", ("auto",)),
    # `--compiler-cache auto` takes the variable too when it is set (docs/cli.md).
    (COMPILER_CACHE_ENV, "compiler_cache", (None, "auto")),
    (COMPILER_CACHE_REMOTE_ENV, "compiler_cache_remote", (None,)),
    (PYTHON_ENV, "python", (None,)),
)


def environment_defaults(
    options: Mapping[str, object], environ: Mapping[str, str], *, read_env_dir: bool = True
) -> dict[str, Any]:
    """The fields of ``options`` (a request's fields by name, or some of them) that
    ``environ``'s ``KILN_*`` variables fill, with their checked values: those
    present in ``options`` and unset there only.

    ``read_env_dir=False`` leaves ``KILN_ENV_DIR`` alone, as the API does (an
    environment directory is removed after success: a library call should not
    pick one up from its process). ``KILN_ENV_TTL`` is read only where the
    request uses a cached environment, so a bad value does not stop a build
    that has no use for it; ``KILN_PYTHON`` only where the build is isolated
    (``--no-isolation`` builds with the running interpreter, whatever it says).
    """
    filled: dict[str, Any] = {}
    for variable, name, unset in VARIABLES:
        value = environ.get(variable, "").strip()
        if not value or name not in options or options[name] not in unset:
            continue
        if name == "env_dir" and not read_env_dir:
            continue
        if name == "env_ttl" and not _uses_cached_environment({**options, **filled}):
            continue
        if name == "python" and options.get("isolation", True) is not True:
            continue
        filled[name] = _parse(variable, name, value)
    return filled


def _uses_cached_environment(options: Mapping[str, object]) -> bool:
    return (
        options.get("isolation", True) is True
        and options.get("env_dir") is None
        and not options.get("fresh_env", False)
    )


def _parse(variable: str, name: str, value: str) -> object:
    if name in ("cache_dir", "env_dir"):
        return Path(value)
    if name == "env_ttl":
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"{variable}={value!r} is not a number of seconds") from None
    if name in ("compiler_cache_remote", "python"):
        return value
    choices: tuple[str, ...]
    if name == "hook_runner":
        what, choices = "hook runner", HOOK_RUNNER_CHOICES
    else:
        what, choices = "compiler cache", COMPILER_CACHE_CHOICES
        value = value.lower()
    if value not in choices:
        raise UsageError(
            f"{variable}={value!r} is not a {what}; choose one of {', '.join(choices)}"
        )
    return value
