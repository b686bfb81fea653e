"""One pass of a local stand-in, repeated from a thread while a test's block runs: bounded in time,
stopped when the block ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def repeating(one_pass: Callable[[], list[Any]], deadline_s: float, interval_s: float = 0.5) -> Iterator[list[Any]]:
    """Run ``one_pass`` every ``interval_s`` for at most ``deadline_s`` while the block runs; yields
    the list of what the passes returned so far."""
    stop, done = threading.Event(), []

    def loop():
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and not stop.wait(interval_s):
            done.extend(one_pass())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=10)
