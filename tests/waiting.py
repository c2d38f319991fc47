"""Polling for a condition in tests that drive real processes, servers and containers."""

from __future__ import annotations

import time
from typing import Callable


def wait_for(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Return once ``pred()`` is true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
