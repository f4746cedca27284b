"""The run-row implementation of the ML core's ``ProgressReporter``, plus the heartbeat thread.

Training loops call ``report`` every step; writing the row each time would hammer the database,
so writes are throttled (and forced on a phase change). Each write uses its own short session
and transaction, never the task's, so progress is visible at once and never holds locks.

A separate heartbeat thread writes at least every ``heartbeat_seconds`` even when one step (a long
evaluation, a slow tokenizer pass, a paused test) takes minutes: the reaper must only ever see a
stale heartbeat when the process is really gone.

``cancelled()`` is true when an admin asked to cancel *or* when this attempt lost the run to the
reaper; either way the loop should stop at its next step.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.domain.runs.lifecycle import LOG_TAIL_LINES, Claim, ProgressSnapshot, beat
from worker.tasks.pause_points import pause_point

log = logging.getLogger(__name__)

MESSAGE_CHARS = 2000


class RunReporter:
    """Writes progress, heartbeats and a log tail to one run row, fenced by the claim."""

    def __init__(
        self,
        claim: Claim,
        sessions: sessionmaker[Session],
        *,
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        self.claim = claim
        self._sessions = sessions
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._phase = ""
        self._step = 0
        self._total = 0
        self._metrics: dict[str, Any] = {}
        self._message = ""
        self._eta: float | None = None
        self._lines: deque[str] = deque(claim.log_tail.splitlines(), maxlen=LOG_TAIL_LINES)
        self._lines.append(f"attempt {claim.attempt} started")
        self._phase_started = (clock(), 0)
        self._last_write = -math.inf
        self._cancel = False
        self.lost = False
        self._paused_in_training = False

    # -- ProgressReporter ---------------------------------------------------------------------
    def report(
        self,
        *,
        phase: str,
        step: int,
        total: int,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
    ) -> None:
        now = self._clock()
        with self._lock:
            changed = phase != self._phase
            if changed:
                self._phase_started = (now, step)
                self._lines.append(f"[{phase}] started ({total} steps)")
            self._phase, self._step, self._total = phase, step, total
            clean = _finite(metrics or {})
            self._eta = clean.pop("eta_seconds", None) or self._estimate_eta(now, step, total)
            self._metrics = {**self._metrics, **clean} if not changed else clean
            if message:
                self._message = message[:MESSAGE_CHARS]
                self._lines.append(f"[{phase}] {message}")
            due = changed or now - self._last_write >= self._min_interval
        if due:
            try:
                self.flush()
            except OperationalError as error:
                # Progress is best-effort, like the heartbeat thread's beats: on SQLite a stream
                # of short writes (labels, live-head refits) can keep this process's write
                # waiting past the busy timeout. Failing the run for a progress line lost a
                # finished adapter round's queue rebuild; the next flush writes the newer state.
                log.warning("progress of run %s not written (%s); the next flush retries",
                            self.claim.run_id, str(error).splitlines()[0][:200])
        if phase == "train" and step >= 1 and not self._paused_in_training:
            self._paused_in_training = True
            pause_point("training")

    def cancelled(self) -> bool:
        return self._cancel or self.lost

    # -- extras for the task layer ------------------------------------------------------------
    def log(self, line: str) -> None:
        """Add a line to the run's log tail (written with the next flush)."""
        with self._lock:
            self._lines.append(line[:MESSAGE_CHARS])

    def set_message(self, message: str) -> None:
        with self._lock:
            self._message = message[:MESSAGE_CHARS]
            self._lines.append(message[:MESSAGE_CHARS])

    def flush(self) -> None:
        """Write the current snapshot and a heartbeat now (one short transaction)."""
        with self._write_lock:
            with self._lock:
                snapshot = ProgressSnapshot(
                    phase=self._phase,
                    step=self._step,
                    total=self._total,
                    metrics=dict(self._metrics),
                    message=self._message,
                    eta_seconds=self._eta,
                    log_tail="\n".join(self._lines),
                )
                self._last_write = self._clock()
            with self._sessions() as session:
                result = beat(session, self.claim, snapshot=snapshot)
                session.commit()
            self._cancel = self._cancel or result.cancel_requested
            if not result.owner and not self.lost:
                self.lost = True
                log.warning(
                    "run %s attempt %s lost its claim", self.claim.run_id, self.claim.attempt
                )

    def _estimate_eta(self, now: float, step: int, total: int) -> float | None:
        started_at, started_step = self._phase_started
        done = step - started_step
        if done <= 0 or total <= 0:
            return None
        return max(0.0, (now - started_at) / done * (total - step))


def _finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics: numbers must be finite (NaN is not JSON, Postgres rejects it)."""
    clean: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            clean[str(key)] = float(value)
    return clean


class Heartbeat:
    """A daemon thread that flushes the reporter every ``interval`` seconds until stopped."""

    def __init__(self, reporter: RunReporter, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0 seconds, got {interval}")
        self._reporter = reporter
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-run-{reporter.claim.run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval * 4 + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._reporter.flush()
            except Exception:  # a DB hiccup must not kill the beat; the next one retries
                log.exception("heartbeat for run %s failed", self._reporter.claim.run_id)


class _TailHandler(logging.Handler):
    def __init__(self, reporter: RunReporter) -> None:
        super().__init__(level=logging.INFO)
        self._reporter = reporter
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._reporter.log(self.format(record))
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextmanager
def capture_logs(reporter: RunReporter, logger_name: str = "worker.ml") -> Iterator[None]:
    """Copy INFO+ records of the ML core into the run's log tail while the block runs."""
    logger = logging.getLogger(logger_name)
    handler = _TailHandler(reporter)
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
