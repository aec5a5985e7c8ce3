"""Conversion."""

from __future__ import annotations

from unitconv.units import DIMENSIONS, TEMPERATURES


class UnknownUnitError(ValueError):
    """A unit that no table knows, or two units of different dimensions."""


def _to_kelvin(value: float, unit: str) -> float:
    if unit == "C":
        return value + 273.15
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0 + 273.15
    return value


def _from_kelvin(value: float, unit: str) -> float:
    if unit == "C":
        return value - 273.15
    if unit == "F":
        return (value - 273.15) * 9.0 / 5.0 + 32.0
    return value


def convert(value: float, source: str, target: str) -> float:
    """Convert ``value`` from unit ``source`` to unit ``target``."""
    if source in TEMPERATURES and target in TEMPERATURES:
        return _from_kelvin(_to_kelvin(value, source), target)
    for table in DIMENSIONS.values():
        if source in table and target in table:
            return value * table[source] / table[target]
    raise UnknownUnitError(f"cannot convert {source!r} to {target!r}")
