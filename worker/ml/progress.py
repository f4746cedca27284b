"""Progress reporting through an injected object, so training loops never call Celery or the DB.

The task layer passes an implementation that writes the run row; tests pass a recorder; library
callers pass nothing and get :class:`NullReporter`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from contract.errors import Cancelled


@runtime_checkable
class ProgressReporter(Protocol):
    """Receives progress from long jobs and can ask them to stop."""

    def report(
        self,
        *,
        phase: str,
        step: int,
        total: int,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
    ) -> None: ...

    def cancelled(self) -> bool: ...


class NullReporter:
    """Reporter that ignores progress and never cancels."""

    def report(
        self,
        *,
        phase: str,
        step: int,
        total: int,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
    ) -> None:
        return None

    def cancelled(self) -> bool:
        return False


class RecordingReporter:
    """Reporter that keeps every event in memory; useful in tests and notebooks."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.events: list[dict[str, object]] = []
        self._cancel_after = cancel_after

    def report(
        self,
        *,
        phase: str,
        step: int,
        total: int,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
    ) -> None:
        self.events.append(
            {
                "phase": phase,
                "step": step,
                "total": total,
                "metrics": dict(metrics or {}),
                "message": message,
            }
        )

    def cancelled(self) -> bool:
        return self._cancel_after is not None and len(self.events) >= self._cancel_after


class StepClock:
    """Estimates the remaining seconds of a loop from the pace of the steps done so far."""

    def __init__(self, total: int, start_step: int = 0) -> None:
        self.total = total
        self._start_step = start_step
        self._started = time.perf_counter()

    def eta_seconds(self, step: int) -> float:
        done = step - self._start_step
        if done <= 0:
            return float("nan")
        elapsed = time.perf_counter() - self._started
        return max(0.0, elapsed / done * (self.total - step))


def check_cancelled(reporter: ProgressReporter, phase: str) -> None:
    """Raise :class:`Cancelled` when the reporter asks the job to stop."""
    if reporter.cancelled():
        raise Cancelled(f"{phase} cancelled by request")
