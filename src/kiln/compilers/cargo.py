"""maturin and setuptools-rust: cargo runs rustc behind ``RUSTC_WRAPPER``.

sccache only: ccache cannot cache rustc. sccache's base directories do not
apply to Rust (docs/how-it-works.md, "Rust in another place").
"""

from __future__ import annotations

from collections.abc import Mapping

# What cargo runs in front of rustc: one path each, never split into words.
RUSTC_WRAPPER_VARIABLES = (
    "RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
)


def set_rustc_wrapper(environ: dict[str, str], base: Mapping[str, str], executable: str) -> None:
    """Make ``executable`` cargo's rustc wrapper, unless the user set one.

    An empty ``RUSTC_WRAPPER`` is a user's way to switch a configured wrapper
    off, so it counts as set.
    """
    if "RUSTC_WRAPPER" not in base and "CARGO_BUILD_RUSTC_WRAPPER" not in base:
        environ["RUSTC_WRAPPER"] = executable
