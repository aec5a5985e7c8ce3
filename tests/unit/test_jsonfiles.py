"""The small JSON files kiln keeps (kiln.jsonfiles)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from kiln.jsonfiles import read_json_object, write_json


def test_a_json_object_is_read_back(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"a": 1})
    assert read_json_object(tmp_path / "a.json") == {"a": 1}
    assert read_json_object(tmp_path / "missing.json") == {}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX's")
def test_a_fifo_in_a_files_place_is_not_waited_on(tmp_path: Path) -> None:
    # A FIFO at CACHE/projects-v1/<label>.worker.json hung every build of the project
    # after its last hook, as kiln read the plans file to keep the new plan.
    fifo = tmp_path / "plans.json"
    os.mkfifo(fifo, 0o600)

    done = threading.Event()

    def write_to_a_reader() -> None:  # what a blocking reader would get, and keep
        while not done.is_set():
            try:  # succeeds only while a reader has the FIFO open
                descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.001)
                continue
            with contextlib.suppress(OSError):
                os.write(descriptor, b'{"from": "the fifo"}')
            os.close(descriptor)
            return

    writer = threading.Thread(target=write_to_a_reader)
    writer.start()
    try:
        assert read_json_object(fifo) == {}
    finally:
        done.set()
        writer.join()
