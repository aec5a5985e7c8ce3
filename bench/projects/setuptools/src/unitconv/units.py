"""Unit tables: the size of each unit in its dimension's base unit."""

from __future__ import annotations

LENGTH: dict[str, float] = {
    "mm": 0.001,
    "cm": 0.01,
    "m": 1.0,
    "km": 1000.0,
    "in": 0.0254,
    "ft": 0.3048,
    "yd": 0.9144,
    "mi": 1609.344,
}

MASS: dict[str, float] = {
    "mg": 1e-6,
    "g": 0.001,
    "kg": 1.0,
    "t": 1000.0,
    "oz": 0.028349523125,
    "lb": 0.45359237,
}

DIMENSIONS: dict[str, dict[str, float]] = {"length": LENGTH, "mass": MASS}
TEMPERATURES = ("C", "F", "K")
