"""Per-caller write rate limit: a sliding window of the last minute, kept in process memory.

Why in memory: the embedded deployment runs ONE web process, and a limit that protects the
database from a runaway client does not need to be exact across processes. With several web
processes each enforces the limit on its own, so a client may get up to ``processes x limit``
writes a minute; a shared limit (Redis) would be the next step there.

The window stores one timestamp per accepted request (a deque per key), so the limit is exact
within a process: at most ``limit`` writes in any 60 s interval. Memory stays bounded because
stale keys are dropped on a periodic sweep.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
SWEEP_EVERY = 1024
"""Sweep idle keys after this many checks (keeps memory proportional to active callers)."""


@dataclass(frozen=True)
class RateDecision:
    """Whether a request may proceed, and when to retry if not."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int = 0


class SlidingWindowLimiter:
    """At most ``limit`` events per key in any ``window`` seconds; thread-safe."""

    def __init__(
        self,
        limit: int,
        *,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 request per window, got {limit}")
        if window <= 0:
            raise ValueError(f"rate window must be positive seconds, got {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._checks = 0

    def hit(self, key: str) -> RateDecision:
        """Count one request for ``key`` if the window has room; say when to retry if not."""
        now = self._clock()
        with self._lock:
            self._checks += 1
            if self._checks % SWEEP_EVERY == 0:
                self._sweep(now)
            events = self._events.setdefault(key, deque())
            self._expire(events, now)
            if len(events) >= self.limit:
                wait = events[0] + self.window - now
                return RateDecision(False, self.limit, 0, max(1, math.ceil(wait)))
            events.append(now)
            return RateDecision(True, self.limit, self.limit - len(events))

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may act again (0: now), without counting anything."""
        now = self._clock()
        with self._lock:
            events = self._events.get(key)
            if not events:
                return 0
            self._expire(events, now)
            if len(events) < self.limit:
                return 0
            return max(1, math.ceil(events[0] + self.window - now))

    def forget(self, key: str) -> None:
        """Drop ``key``'s window (e.g. failures of an account that then signed in)."""
        with self._lock:
            self._events.pop(key, None)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()

    def _expire(self, events: deque[float], now: float) -> None:
        cutoff = now - self.window
        while events and events[0] <= cutoff:
            events.popleft()

    def _sweep(self, now: float) -> None:
        for key in list(self._events):
            events = self._events[key]
            self._expire(events, now)
            if not events:
                del self._events[key]
