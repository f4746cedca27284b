"""Run state transitions made by workers: claim, heartbeat, succeed, fail, cancel.

Every transition after the claim is *fenced* by the attempt number the claim got: if the reaper
decided the worker was dead and re-queued the run, a late write from the old attempt matches no
row and is ignored, and the old attempt may not promote a model version. When a run ends, a
queued sibling of the same kind (the coalesced follow-up) is sent to the broker.

These functions only flush; the task wrapper commits (and jobs are sent after that commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    TrainingRun,
)
from app.domain.runs.locks import lock_project, schedule_send

LOG_TAIL_LINES = 50


class LostOwnership(Exception):
    """The run no longer belongs to this attempt (re-queued by the reaper, or finished)."""


@dataclass(frozen=True)
class Claim:
    """Proof that one task attempt owns a run; ``attempt`` fences every later write."""

    run_id: int
    project_id: int
    kind: str
    attempt: int
    data_version: int
    params: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    """The run's log so far (earlier attempts, the reaper's notes), continued by this attempt."""


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim | None
    reason: str


@dataclass(frozen=True)
class ProgressSnapshot:
    """The progress fields a reporter writes on the run row."""

    phase: str
    step: int
    total: int
    metrics: dict[str, Any]
    message: str
    eta_seconds: float | None
    log_tail: str


@dataclass(frozen=True)
class BeatResult:
    owner: bool
    cancel_requested: bool


def claim_run(
    session: Session,
    run_id: int,
    *,
    kind: str,
    task_id: str | None = None,
    now: datetime | None = None,
) -> ClaimResult:
    """Move a queued run to running for this attempt, or say why not.

    Returns no claim when the run is missing, not queued (a duplicate or redelivered message),
    cancelled, or when a sibling of the same kind is running (the sibling sends this run when it
    finishes). The run's data version is stamped now, so a coalesced run trains on the newest data.
    """
    run = session.get(TrainingRun, run_id)
    if run is None:
        return ClaimResult(None, f"run {run_id} does not exist")
    if run.kind != kind:
        return ClaimResult(None, f"run {run_id} is a {run.kind} run, not {kind}")
    project = lock_project(session, run.project_id)
    session.refresh(run)
    if run.status != RUN_QUEUED:
        return ClaimResult(None, f"run {run_id} is already {run.status}")
    if run.cancel_requested:
        _finish(run, RUN_CANCELLED, "cancelled before it started", now)
        return ClaimResult(None, f"run {run_id} was cancelled before it started")
    busy = session.scalars(
        select(TrainingRun.id).where(
            TrainingRun.project_id == run.project_id,
            TrainingRun.kind == kind,
            TrainingRun.status == RUN_RUNNING,
            TrainingRun.id != run.id,
        )
    ).first()
    if busy is not None:
        run.message = f"waiting for run {busy} to finish"
        session.flush()
        return ClaimResult(None, f"run {busy} of the same kind is still running")
    now = now or utcnow()
    run.status = RUN_RUNNING
    run.attempts += 1
    run.started_at = now
    run.heartbeat_at = now
    run.finished_at = None
    run.error = None
    run.cancel_requested = False
    run.data_version = project.data_version
    run.celery_task_id = task_id
    run.message = f"started (attempt {run.attempts})"
    session.flush()
    claim = Claim(
        run_id=run.id,
        project_id=run.project_id,
        kind=kind,
        attempt=run.attempts,
        data_version=run.data_version,
        params=dict(run.params),
        log_tail=run.log_tail,
    )
    return ClaimResult(claim, "claimed")


def beat(
    session: Session,
    claim: Claim,
    *,
    snapshot: ProgressSnapshot | None = None,
    now: datetime | None = None,
) -> BeatResult:
    """Record a heartbeat (and progress, if given) unless this attempt lost the run."""
    values: dict[str, Any] = {"heartbeat_at": now or utcnow()}
    if snapshot is not None:
        values.update(
            phase=snapshot.phase[:50],
            step=snapshot.step,
            total=snapshot.total,
            metrics=snapshot.metrics,
            message=snapshot.message,
            eta_seconds=snapshot.eta_seconds,
            log_tail=snapshot.log_tail,
        )
    result = session.execute(
        update(TrainingRun)
        .where(*_owned(claim))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return BeatResult(owner=False, cancel_requested=True)
    cancel = session.scalar(
        select(TrainingRun.cancel_requested).where(TrainingRun.id == claim.run_id)
    )
    return BeatResult(owner=True, cancel_requested=bool(cancel))


def owned_run(session: Session, claim: Claim) -> TrainingRun:
    """Lock the project and return the run if this attempt still owns it.

    Used at the start of the transaction that publishes results (promotion), so that a stale
    attempt can never publish.
    """
    lock_project(session, claim.project_id)
    run = session.get(TrainingRun, claim.run_id, populate_existing=True)
    if run is None or run.status != RUN_RUNNING or run.attempts != claim.attempt:
        state = "missing" if run is None else f"{run.status}, attempt {run.attempts}"
        raise LostOwnership(
            f"run {claim.run_id} attempt {claim.attempt} no longer owns the run ({state})"
        )
    return run


def succeed_run(
    session: Session,
    claim: Claim,
    *,
    message: str,
    model_version_id: int | None = None,
    metrics: dict[str, Any] | None = None,
    timings: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> TrainingRun:
    """Finish the run as succeeded (raises LostOwnership for a stale attempt)."""
    run = owned_run(session, claim)
    if model_version_id is not None:
        run.model_version_id = model_version_id
    if metrics:
        run.metrics = {**run.metrics, **metrics}
    if timings:
        run.timings = {**run.timings, **timings}
    run.step = max(run.step, run.total)
    run.eta_seconds = 0.0
    _finish(run, RUN_SUCCEEDED, message, now)
    send_follow_up(session, claim.project_id, claim.kind, now=now)
    return run


def fail_run(
    session: Session, claim: Claim, *, error: str, message: str, now: datetime | None = None
) -> TrainingRun | None:
    """Finish the run as failed with the traceback for admins; no-op for a stale attempt."""
    return _end_owned(session, claim, RUN_FAILED, message, error, now)


def cancel_claimed_run(
    session: Session, claim: Claim, *, message: str, now: datetime | None = None
) -> TrainingRun | None:
    """Finish the run as cancelled (the reporter saw cancel_requested); no-op when stale."""
    return _end_owned(session, claim, RUN_CANCELLED, message, None, now)


def _end_owned(
    session: Session,
    claim: Claim,
    status: str,
    message: str,
    error: str | None,
    now: datetime | None,
) -> TrainingRun | None:
    try:
        run = owned_run(session, claim)
    except LostOwnership:
        return None
    run.error = error
    _finish(run, status, message, now)
    send_follow_up(session, claim.project_id, claim.kind, now=now)
    return run


def send_follow_up(
    session: Session, project_id: int, kind: str, *, now: datetime | None = None
) -> TrainingRun | None:
    """Send the queued sibling (the coalesced follow-up) of a run that just ended, if any."""
    follow_up = session.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.project_id == project_id,
            TrainingRun.kind == kind,
            TrainingRun.status == RUN_QUEUED,
        )
        .order_by(TrainingRun.id)
        .limit(1)
    ).first()
    if follow_up is not None:
        schedule_send(session, follow_up, now=now)
        session.flush()
    return follow_up


def append_log(tail: str, lines: list[str], limit: int = LOG_TAIL_LINES) -> str:
    """Keep the last ``limit`` lines of a log tail."""
    kept = [*tail.splitlines(), *lines][-limit:]
    return "\n".join(kept)


def _owned(claim: Claim) -> tuple[Any, ...]:
    return (
        TrainingRun.id == claim.run_id,
        TrainingRun.status == RUN_RUNNING,
        TrainingRun.attempts == claim.attempt,
    )


def _finish(run: TrainingRun, status: str, message: str, now: datetime | None) -> None:
    run.status = status
    run.message = message
    run.finished_at = now or utcnow()
    run.heartbeat_at = run.finished_at
