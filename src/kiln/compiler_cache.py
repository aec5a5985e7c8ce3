"""The names docs/api.md has documented here since compiler caches came; they now
live in the :mod:`kiln.compilers` package, which is where new code imports them."""

from __future__ import annotations

from kiln.compilers import CompilerCache, CompilerCacheStats
from kiln.compilers.ccache import Ccache, parse_ccache_stats_log
from kiln.compilers.common import redact_url
from kiln.compilers.sccache import Sccache, sccache_stats_difference
from kiln.compilers.sccache_server import start_users_sccache_server, users_sccache
from kiln.compilers.selection import find_ccache, find_sccache, select_compiler_cache
from kiln.options import COMPILER_CACHE_CHOICES, COMPILER_CACHE_ENV, COMPILER_CACHE_REMOTE_ENV

__all__ = [
    "COMPILER_CACHE_CHOICES",
    "COMPILER_CACHE_ENV",
    "COMPILER_CACHE_REMOTE_ENV",
    "Ccache",
    "CompilerCache",
    "CompilerCacheStats",
    "Sccache",
    "find_ccache",
    "find_sccache",
    "parse_ccache_stats_log",
    "redact_url",
    "sccache_stats_difference",
    "select_compiler_cache",
    "start_users_sccache_server",
    "users_sccache",
]
