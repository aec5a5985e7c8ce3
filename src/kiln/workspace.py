"""The scratch area and log of one kiln run, both inside the cache directory."""

from __future__ import annotations

import os
import re
import shutil
import time
from types import TracebackType

from kiln.cache import LOGS, SCRATCH, Cache
from kiln.process import BuildLog


class Workspace:
    """Scratch space for one run (removed at the end) and its build log (kept).

    Subprocesses get ``TMPDIR``/``TEMP``/``TMP`` inside the scratch area, so
    nothing kiln starts writes to the global temporary directory.
    """

    def __init__(self, cache: Cache, label: str) -> None:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self.scratch = cache.bucket(SCRATCH) / run_id
        self.tmp = self.scratch / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        safe_label = re.sub(r"[^A-Za-z0-9._-]+", "_", label) or "build"
        self.log = BuildLog(cache.bucket(LOGS) / f"{safe_label}-{run_id}.log")

    def subprocess_environ(self) -> dict[str, str]:
        """The user's environment, with temporary files redirected into the scratch area."""
        environ = dict(os.environ)
        for name in ("TMPDIR", "TEMP", "TMP"):
            environ[name] = str(self.tmp)
        return environ

    def close(self) -> None:
        self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
