"""What a compiler cache did during one build, for the terminal and ``--report``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CompilerCacheStats:
    """What the compiler cache did during one build.

    ``hits`` counts compilations served from the cache, local or remote;
    ``remote_hits`` is the part of them that came from remote storage.
    ``misses`` counts compilations that ran and were stored. ``uncacheable``
    counts the calls the cache passed straight to the compiler as the tool
    classifies them: links, preprocessing only, version probes, configure
    checks, failed compilations and the like. ``remote_errors`` counts failed
    reads or writes of remote storage (a wrong URL shows up here).
    """

    hits: int
    misses: int
    uncacheable: int
    remote_hits: int = 0
    remote_errors: int = 0

    def hit_rate(self) -> float | None:
        """hits / (hits + misses), or None when nothing cacheable was compiled."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def summary(self) -> str:
        """One line for the terminal, e.g. ``12 hits (4 remote), 3 misses: 80% hits``."""
        hits = f"{self.hits} {'hit' if self.hits == 1 else 'hits'}"
        if self.remote_hits:
            hits += f" ({self.remote_hits} remote)"
        text = f"{hits}, {self.misses} {'miss' if self.misses == 1 else 'misses'}"
        rate = self.hit_rate()
        text += f": {rate:.0%} hits" if rate is not None else ": nothing cacheable compiled"
        if self.uncacheable:
            text += f"; {self.uncacheable} uncacheable"
        if self.remote_errors:
            text += f"; {self.remote_errors} remote storage errors"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``--report``."""
        rate = self.hit_rate()
        return {
            "hits": self.hits,
            "misses": self.misses,
            "uncacheable": self.uncacheable,
            "remote_hits": self.remote_hits,
            "remote_errors": self.remote_errors,
            "hit_rate": round(rate, 4) if rate is not None else None,
        }
