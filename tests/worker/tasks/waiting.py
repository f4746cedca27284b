"""Poll a condition with a deadline: tests synchronise on state, never on sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], what: str, *, timeout: float = 60.0, interval: float = 0.05
) -> object:
    """Return the first truthy value of ``condition()``; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
