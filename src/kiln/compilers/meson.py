"""meson-python: meson reads ``CC``/``CXX`` (wrapped by :mod:`kiln.compilers.setuptools`),
and recognises a compiler cache in front only by its bare name."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping

from kiln.compilers.common import same_file


def launcher_word(name: str, executable: str, environ: Mapping[str, str]) -> str:
    """How to spell the cache ``name`` at ``executable`` in front of a compiler in CC/CXX.

    The bare name when the build's PATH finds this very executable: meson
    treats exactly ``ccache``/``sccache`` as a launcher and the rest as the
    compiler. Otherwise the full path, quoted.
    """
    found = shutil.which(name, path=environ.get("PATH"))
    if found is not None and same_file(found, executable):
        return name
    return shlex.quote(executable)
