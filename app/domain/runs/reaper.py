"""Notice runs whose worker died, and queued runs whose message got lost.

A worker writes a heartbeat on its run row every few seconds (a thread, so even one long step
beats). If the heartbeat is older than ``stale_run_seconds`` the worker is gone (``kill -9``, OOM,
host lost): the run is re-queued and re-sent while ``attempts < max_run_attempts``, else failed with
an explanation. A re-queued run is claimed with a new attempt number, so the dead attempt can never
publish anything afterwards.

A queued run whose message was scheduled longer than ``stale_run_seconds`` ago is re-sent when
the workers have been *idle* for that long (no run running, none started or ended): the broker
may have been down at commit time, or the web process may have died between commit and send
(kombu's SQLAlchemy transport also never restores a message taken by a killed worker). While
workers are busy a queued message is most likely waiting its turn, so nothing is re-sent; a
duplicate would be harmless anyway, since claiming is idempotent.

Callers: the web process's maintenance loop (:mod:`app.maintenance`, every
:func:`reaper_interval` seconds, whether or not any worker is alive), each worker task at start, a
loop thread in every worker process, and ``tapestry reap``. Reads (run detail, progress) never
reap. All only flush; callers commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db.base import utcnow
from app.db.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RUNNING,
    TrainingRun,
)
from app.domain.runs.lifecycle import send_follow_up
from app.domain.runs.locks import lock_project, schedule_send


@dataclass
class ReapReport:
    """Run ids per decision, for logs and the ``tapestry reap`` output."""

    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any((self.requeued, self.failed, self.superseded, self.resent, self.cancelled))

    def summary(self) -> str:
        parts = [
            f"{name}: {ids}"
            for name, ids in (
                ("re-queued", self.requeued),
                ("failed", self.failed),
                ("superseded", self.superseded),
                ("re-sent", self.resent),
                ("cancelled", self.cancelled),
            )
            if ids
        ]
        return "; ".join(parts) if parts else "nothing to reap"


def reap_stale_runs(
    session: Session, *, settings: Settings | None = None, now: datetime | None = None
) -> ReapReport:
    """Re-queue or fail running runs without a recent heartbeat; re-send lost queued runs."""
    settings = settings or get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.stale_run_seconds)
    report = ReapReport()
    for run_id in _running_ids(session):
        _reap_running(session, run_id, cutoff, now, settings.max_run_attempts, report)
    if not _workers_busy_since(session, cutoff):
        for run_id in _queued_ids(session):
            _resend_if_lost(session, run_id, cutoff, now, report)
    session.flush()
    return report


def _running_ids(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(TrainingRun.id).where(TrainingRun.status == RUN_RUNNING).order_by(TrainingRun.id)
        )
    )


def _queued_ids(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(TrainingRun.id).where(TrainingRun.status == RUN_QUEUED).order_by(TrainingRun.id)
        )
    )


def _workers_busy_since(session: Session, cutoff: datetime) -> bool:
    """Is some run running, or did one start or end after ``cutoff``?"""
    busy = select(TrainingRun.id).where(
        or_(
            TrainingRun.status == RUN_RUNNING,
            TrainingRun.started_at >= cutoff,
            TrainingRun.finished_at >= cutoff,
        )
    )
    return session.scalar(busy.limit(1)) is not None


def _last_sign_of_life(run: TrainingRun) -> datetime:
    return run.heartbeat_at or run.started_at or run.created_at


def _reap_running(
    session: Session,
    run_id: int,
    cutoff: datetime,
    now: datetime,
    max_attempts: int,
    report: ReapReport,
) -> None:
    run = session.get(TrainingRun, run_id)
    if run is None or _last_sign_of_life(run) >= cutoff:
        return
    lock_project(session, run.project_id)
    session.refresh(run)
    if run.status != RUN_RUNNING or _last_sign_of_life(run) >= cutoff:
        return  # it finished or beat while we took the lock
    silent = int((now - _last_sign_of_life(run)).total_seconds())
    lost = f"worker lost: no heartbeat for {silent}s during attempt {run.attempts}"
    follow_up = _queued_sibling(session, run)
    if run.cancel_requested:
        _end(run, RUN_CANCELLED, f"{lost}; it had been asked to cancel", None, now)
        report.cancelled.append(run.id)
        send_follow_up(session, run.project_id, run.kind, now=now)
    elif follow_up is not None:
        # The queued follow-up trains on newer data anyway; two queued runs would break coalescing.
        _end(run, RUN_FAILED, f"{lost}; superseded by queued run {follow_up.id}", lost, now)
        report.superseded.append(run.id)
        send_follow_up(session, run.project_id, run.kind, now=now)
    elif run.attempts < max_attempts:
        run.status = RUN_QUEUED
        run.heartbeat_at = None
        run.message = f"{lost}; re-queued (attempt {run.attempts + 1} of {max_attempts} next)"
        run.log_tail = (run.log_tail + "\n" + run.message).strip()[-8000:]
        schedule_send(session, run, now=now)
        report.requeued.append(run.id)
    else:
        _end(run, RUN_FAILED, f"{lost}; gave up after {run.attempts} attempts", lost, now)
        report.failed.append(run.id)


def _resend_if_lost(
    session: Session, run_id: int, cutoff: datetime, now: datetime, report: ReapReport
) -> None:
    run = session.get(TrainingRun, run_id)
    if run is None or run.status != RUN_QUEUED:
        return
    scheduled = run.params.get("scheduled_at")
    if scheduled is not None and datetime.fromisoformat(scheduled) >= cutoff:
        return
    if scheduled is None and run.created_at >= cutoff:
        return
    lock_project(session, run.project_id)
    session.refresh(run)
    if run.status != RUN_QUEUED:
        return
    if run.cancel_requested:
        _end(run, RUN_CANCELLED, "cancelled before it started", None, now)
        report.cancelled.append(run.id)
        return
    schedule_send(session, run, now=now)
    report.resent.append(run.id)


def _queued_sibling(session: Session, run: TrainingRun) -> TrainingRun | None:
    return _sibling(session, run, RUN_QUEUED)


def _sibling(session: Session, run: TrainingRun, status: str) -> TrainingRun | None:
    return session.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.project_id == run.project_id,
            TrainingRun.kind == run.kind,
            TrainingRun.status == status,
            TrainingRun.id != run.id,
        )
        .order_by(TrainingRun.id)
        .limit(1)
    ).first()


def _end(run: TrainingRun, status: str, message: str, error: str | None, now: datetime) -> None:
    run.status = status
    run.message = message
    run.error = error
    run.finished_at = now


def reaper_interval(settings: Settings) -> float:
    """How often the web process's reaper runs: a dead run is noticed at most this long after
    ``stale_run_seconds`` of silence (defaults: 60 s + 15 s, well inside two minutes)."""
    return max(0.5, min(15.0, settings.stale_run_seconds / 4))
