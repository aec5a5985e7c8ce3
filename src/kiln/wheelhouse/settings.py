"""Per-package settings: kiln's own TOML file, and a fromager overrides tree.

kiln's file (``--settings FILE``, kept in version control)::

    [packages.numpy]
    config-settings = { setup-args = ["-Dblas=openblas"] }
    env = { CFLAGS = "-O2 -g0" }
    build-requires = ["cython<4"]        # extra, on top of [build-system].requires
    patches = ["patches/numpy-fix.patch"] # relative to the file, applied in order
    binary = false                        # true: take the wheel from the index
    skip = false                          # true: leave it out of the wheelhouse

A fromager tree (``--overrides DIR``) gives ``DIR/settings/<name>.yaml`` and
``DIR/patches/<name>[-<version>]/*.patch``; what maps and what does not is in
docs/wheelhouse.md ("Settings"). kiln's file is applied over the tree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kiln.errors import ConfigError

logger = logging.getLogger(__name__)

_KILN_KEYS = frozenset({"config-settings", "env", "build-requires", "patches", "binary", "skip"})
# fromager's package settings that kiln has no use for, or cannot honour: read,
# then named in a warning (see docs/wheelhouse.md, "Settings").
_FROMAGER_IGNORED = frozenset(
    {
        "annotations",
        "build_dir",
        "build_options",
        "changelog",
        "download_source",
        "git_options",
        "purl",
        "resolver_dist",
    }
)
_FROMAGER_MAPPED = frozenset({"env", "config_settings", "project_override", "variants"})
_FROMAGER_OVERRIDE_IGNORED = frozenset({"remove_build_requires", "requires_external"})
_FROMAGER_VARIANT_IGNORED = frozenset({"annotations", "wheel_server_url"})
# $NAME, ${NAME}, ${NAME:-default}, and $$ for a dollar: fromager's env syntax.
_VARIABLE = re.compile(
    r"\$(?:\$|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})"
)
DEFAULT_VARIANT = "cpu"


@dataclass(frozen=True)
class PackageSettings:
    """What the settings say for one package at one version, ready to use (all
    empty: build it as it is)."""

    name: str
    config_settings: Mapping[str, str | list[str]] = field(default_factory=dict)
    # The variables to set for the build, ``$VARIABLES`` already substituted.
    env: Mapping[str, str] = field(default_factory=dict)
    build_requires: tuple[str, ...] = ()
    patches: tuple[Path, ...] = ()
    binary: bool = False
    skip: bool = False
    # The files the settings came from (for messages and the report).
    sources: tuple[Path, ...] = ()

    def key_material(self) -> dict[str, Any]:
        """What of these settings goes into the wheel key (kiln.wheelhouse.keys):
        the config settings, the env, the extra build requirements (their installed
        versions count through the build env's pins too). The patches count by
        content, given to the key apart (:meth:`patch_contents`)."""
        return {
            "config_settings": {
                name: self.config_settings[name] for name in sorted(self.config_settings)
            },
            "env": dict(self.env),
            "build_requires": list(self.build_requires),
        }

    def patch_contents(self) -> list[bytes]:
        """The patches' contents, in order (for the wheel key). Raises ConfigError
        naming a patch that cannot be read."""
        contents = []
        for patch in self.patches:
            try:
                contents.append(patch.read_bytes())
            except OSError as error:
                raise ConfigError(
                    f"cannot read patch {patch}: {error.strerror or error}"
                ) from error
        return contents


@dataclass(frozen=True)
class RawSettings:
    """What the files say for one package, before substitution."""

    name: str
    config_settings: Mapping[str, str | list[str]] = field(default_factory=dict)
    # Assignments in order, as written (a name may come again: fromager's variant
    # env refers to the package env's value); :meth:`expanded_env` substitutes them.
    env: tuple[tuple[str, str], ...] = ()
    build_requires: tuple[str, ...] = ()
    patches: tuple[Path, ...] = ()
    binary: bool = False
    skip: bool = False
    sources: tuple[Path, ...] = ()

    def resolved(self, environ: Mapping[str, str], version: str) -> PackageSettings:
        """These settings for ``version``, the env substituted from ``environ``."""
        return PackageSettings(
            name=self.name,
            config_settings=self.config_settings,
            env=self.expanded_env(environ, version),
            build_requires=self.build_requires,
            patches=self.patches,
            binary=self.binary,
            skip=self.skip,
            sources=self.sources,
        )

    def expanded_env(self, environ: Mapping[str, str], version: str = "") -> dict[str, str]:
        """:attr:`env` with ``$NAME``, ``${NAME}``, ``${NAME:-default}`` and ``$$``
        substituted from ``environ`` and the entries before it (``${__version__}``
        is the package's version). Raises ConfigError naming an unset variable."""
        values: dict[str, str] = {}
        for name, value in self.env:
            scope = {**environ, "__version__": version, **values}

            def substitute(
                match: re.Match[str], name: str = name, scope: dict[str, str] = scope
            ) -> str:
                if match.group(0) == "$$":
                    return "$"
                variable = match.group(1) or match.group(2)
                default = match.group(3)
                if variable in scope:
                    return scope[variable]
                if default is not None:
                    return default
                where = ", ".join(str(source) for source in self.sources) or "the settings"
                raise ConfigError(
                    f"{where}: env {name} of {self.name} uses ${variable}, which is not set "
                    f"(give a default with ${{{variable}:-default}})"
                )

            values[name] = _VARIABLE.sub(substitute, value)
        return values


class Settings:
    """Every package's settings: from kiln's file and/or a fromager overrides tree."""

    def __init__(
        self,
        packages: Mapping[str, RawSettings] | None = None,
        *,
        overrides: Path | None = None,
        variant: str = DEFAULT_VARIANT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._packages = dict(packages or {})
        self._overrides = overrides
        self._variant = variant
        # What $VARIABLES in env values are substituted from: the build's environment.
        self._environ = dict(os.environ if environ is None else environ)

    @classmethod
    def load(
        cls,
        settings_file: Path | None = None,
        overrides: Path | None = None,
        *,
        variant: str = DEFAULT_VARIANT,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read ``settings_file`` (kiln's TOML) and ``overrides`` (a fromager tree);
        ``environ`` (default: this process's) fills in env values' ``$VARIABLES``.

        Raises ConfigError naming the file and the key at fault.
        """
        packages: dict[str, RawSettings] = {}
        if overrides is not None:
            if not overrides.is_dir():
                raise ConfigError(f"overrides directory {overrides} does not exist")
            packages = _read_fromager_settings(overrides / "settings", variant)
        if settings_file is not None:
            for name, ours in read_settings_file(settings_file).items():
                theirs = packages.get(name)
                packages[name] = ours if theirs is None else _merge(theirs, ours)
        return cls(packages, overrides=overrides, variant=variant, environ=environ)

    @property
    def names(self) -> list[str]:
        """The packages the settings name (canonical names)."""
        return sorted({name.partition("==")[0] for name in self._packages})

    def binary_names(self) -> frozenset[str]:
        """The packages whose every version is taken as a wheel (``binary = true`` in
        the name's own table, or fromager's ``pre_built``)."""
        return frozenset(
            name for name, raw in self._packages.items() if "==" not in name and raw.binary
        )

    def settings_for(self, name: str, version: str) -> PackageSettings:
        """The settings of ``name`` at ``version``: the name's, then its
        ``name==version`` table's, with the overrides tree's patches for that version
        (unversioned ones too) first, and env values substituted. Raises ConfigError
        (an env value naming an unset variable)."""
        from packaging.utils import canonicalize_name

        canonical = str(canonicalize_name(name))
        found = self._packages.get(canonical, RawSettings(canonical))
        specific = self._packages.get(f"{canonical}=={_normalized_version(version)}")
        if specific is not None:
            found = _merge(found, specific)
        if self._overrides is not None:
            patches = fromager_patches(
                self._overrides / "patches", canonical, version, self._variant
            )
            found = replace(found, patches=tuple(patches) + found.patches)
        return found.resolved(self._environ, version)


def load_settings(
    settings_file: Path | None,
    overrides: Path | None = None,
    *,
    variant: str = DEFAULT_VARIANT,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """:meth:`Settings.load` (what a wheelhouse run calls)."""
    return Settings.load(settings_file, overrides, variant=variant, environ=environ)


def read_settings_file(path: Path) -> dict[str, RawSettings]:
    """The packages of kiln's settings file ``path``, by canonical name, or by
    ``name==version`` for a ``[packages."name==version"]`` table (applied over the
    name's own for that version alone). Raises ConfigError naming the key."""
    data = _load_toml(path)
    unknown = sorted(set(data) - {"packages"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (kiln reads only [packages.<name>])")
    tables = data.get("packages", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: packages must be a table of [packages.<name>] tables")
    packages: dict[str, RawSettings] = {}
    for raw_name, table in tables.items():
        key = f"packages.{raw_name}"
        raw_project, pinned, raw_version = str(raw_name).partition("==")
        name = _canonical(path, key, raw_project.strip())
        if pinned:
            version = _normalized_version(raw_version.strip())
            if not version:
                raise ConfigError(f"{path}: {key}: {raw_version!r} is not a version")
            name = f"{name}=={version}"
        if name in packages:
            raise ConfigError(f"{path}: {key} names {name} again (names are compared normalized)")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {key} must be a table")
        for unknown_key in sorted(set(table) - _KILN_KEYS):
            raise ConfigError(
                f"{path}: unknown key {key}.{unknown_key} (known: {', '.join(sorted(_KILN_KEYS))})"
            )
        patches = _strings(path, f"{key}.patches", table.get("patches", []))
        resolved = []
        for patch in patches:
            patch_path = (path.parent / patch).absolute()
            if not patch_path.is_file():
                raise ConfigError(
                    f"{path}: {key}.patches names {patch}, which is not a file ({patch_path})"
                )
            resolved.append(patch_path)
        packages[name] = RawSettings(
            name=name.partition("==")[0],
            config_settings=_config_settings(
                path, f"{key}.config-settings", table.get("config-settings", {})
            ),
            env=tuple(_env(path, f"{key}.env", table.get("env", {})).items()),
            build_requires=tuple(
                _requirements(path, f"{key}.build-requires", table.get("build-requires", []))
            ),
            patches=tuple(resolved),
            binary=_bool(path, f"{key}.binary", table.get("binary", False)),
            skip=_bool(path, f"{key}.skip", table.get("skip", False)),
            sources=(path,),
        )
    return packages


def fromager_patches(
    patches_dir: Path, name: str, version: str, variant: str = DEFAULT_VARIANT
) -> list[Path]:
    """fromager's patches for ``name`` at ``version``: ``<dir>/<name>/*.patch`` and
    ``<dir>/<name>-<version>/*.patch`` (the name with underscores; a local version is
    ignored), each with its ``<variant>/`` subdirectory, sorted by file name."""
    from packaging.version import InvalidVersion, Version

    override = name.replace("-", "_")
    try:
        public = Version(version).public
    except InvalidVersion:
        public = version
    found: list[Path] = []
    if not patches_dir.is_dir():
        return found
    for directory in sorted(patches_dir.iterdir()):
        if not directory.is_dir():
            continue
        if directory.name != override:
            prefix, dash, dir_version = directory.name.rpartition("-")
            if not dash or prefix != override:
                continue
            try:
                if Version(dir_version) != Version(public):
                    continue
            except InvalidVersion:
                continue
        found += directory.glob("*.patch")
        found += (directory / variant).glob("*.patch")
    return sorted((path.absolute() for path in found if path.is_file()), key=lambda path: path.name)


def _read_fromager_settings(settings_dir: Path, variant: str) -> dict[str, RawSettings]:
    packages: dict[str, RawSettings] = {}
    if not settings_dir.is_dir():
        return packages
    for path in sorted(settings_dir.glob("*.yaml")):
        name = _canonical(path, "the file name", path.stem)
        data = _load_yaml(path)
        packages[name] = _fromager_package(path, name, data, variant)
    return packages


def _fromager_package(path: Path, name: str, data: dict[str, Any], variant: str) -> RawSettings:
    unknown = sorted(set(data) - _FROMAGER_IGNORED - _FROMAGER_MAPPED)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (not a fromager package setting)")
    ignored = [key for key in sorted(data) if key in _FROMAGER_IGNORED]
    env = list(_env(path, "env", data.get("env") or {}).items())
    config_settings = _config_settings(path, "config_settings", data.get("config_settings") or {})
    override = data.get("project_override") or {}
    if not isinstance(override, dict):
        raise ConfigError(f"{path}: project_override must be a mapping")
    for key in sorted(override):
        if key in _FROMAGER_OVERRIDE_IGNORED:
            ignored.append(f"project_override.{key}")
        elif key != "update_build_requires":
            raise ConfigError(f"{path}: unknown key project_override.{key}")
    build_requires = _requirements(
        path, "project_override.update_build_requires", override.get("update_build_requires") or []
    )
    variants = data.get("variants") or {}
    if not isinstance(variants, dict):
        raise ConfigError(f"{path}: variants must be a mapping")
    binary = False
    chosen = variants.get(variant) or {}
    if not isinstance(chosen, dict):
        raise ConfigError(f"{path}: variants.{variant} must be a mapping")
    for key in sorted(chosen):
        where = f"variants.{variant}.{key}"
        if key == "env":
            env += _env(path, where, chosen["env"] or {}).items()
        elif key == "pre_built":
            binary = _bool(path, where, chosen["pre_built"])
        elif key in _FROMAGER_VARIANT_IGNORED:
            ignored.append(where)
        else:
            raise ConfigError(f"{path}: unknown key {where}")
    if ignored:
        logger.warning("%s: kiln ignores these fromager settings: %s", path, ", ".join(ignored))
    return RawSettings(
        name=name,
        config_settings=config_settings,
        env=tuple(env),
        build_requires=tuple(build_requires),
        binary=binary,
        sources=(path,),
    )


def _merge(base: RawSettings, over: RawSettings) -> RawSettings:
    """``over`` applied over ``base``: kiln's file over the overrides tree, a
    ``name==version`` table over the name's."""
    return RawSettings(
        name=base.name,
        config_settings={**base.config_settings, **over.config_settings},
        env=base.env + over.env,
        build_requires=base.build_requires + over.build_requires,
        patches=base.patches + over.patches,
        binary=base.binary or over.binary,
        skip=base.skip or over.skip,
        sources=base.sources + over.sources,
    )


def _load_toml(path: Path) -> dict[str, Any]:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as stream:
            data: dict[str, Any] = tomllib.load(stream)
            return data
    except OSError as error:
        raise ConfigError(f"cannot read settings file {path}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error


def _load_yaml(path: Path) -> dict[str, Any]:
    import importlib

    try:
        # Optional (the `fromager` extra), and untyped: imported only for a YAML file.
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise ConfigError(
            f"reading {path} needs PyYAML, which is not installed: "
            "pip install 'kiln-build[fromager]' (or pip install pyyaml)"
        ) from None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return data


def _normalized_version(version: str) -> str:
    """``version`` as packaging writes it (``1.0.0`` stays, ``1.0-rc1`` is ``1.0rc1``);
    "" when it is not a version."""
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(version))
    except InvalidVersion:
        return ""


def _canonical(path: Path, key: str, raw: object) -> str:
    from packaging.utils import InvalidName, canonicalize_name

    try:
        return str(canonicalize_name(str(raw), validate=True))
    except InvalidName:
        raise ConfigError(f"{path}: {key}: {raw!r} is not a valid package name") from None


def _strings(path: Path, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}: {key} must be a list of strings")
    return list(value)


def _requirements(path: Path, key: str, value: object) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    items = _strings(path, key, value)
    for item in items:
        try:
            Requirement(item)
        except InvalidRequirement as error:
            reason = str(error).splitlines()[0] if str(error) else "?"  # not the caret lines
            raise ConfigError(f"{path}: {key}: {item!r} is not a requirement: {reason}") from None
    return items


def _env(path: Path, key: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a table of NAME = value")
    env: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ConfigError(f"{path}: {key}: {name!r} is not an environment variable name")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ConfigError(f"{path}: {key}.{name} must be a string")
        env[name] = str(item)
    return env


def _config_settings(path: Path, key: str, value: object) -> dict[str, str | list[str]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a table")
    settings: dict[str, str | list[str]] = {}
    for name, item in value.items():
        if isinstance(item, str):
            settings[str(name)] = item
        elif isinstance(item, list) and all(isinstance(part, str) for part in item):
            settings[str(name)] = list(item)
        else:
            raise ConfigError(f"{path}: {key}.{name} must be a string or a list of strings")
    return settings


def _bool(path: Path, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: {key} must be true or false")
    return value
