"""Training runs seen from the web: request one (coalescing), cancel one, read its progress.

A *run* is a row in ``training_runs``; the database, not Celery, holds its state. Requests
coalesce per (project, kind): while a run of that kind is queued it absorbs every further request,
so twenty batch submissions during one training produce exactly one follow-up run, which trains on
whatever data is newest when it starts. A run is only sent to the broker when no sibling of the
same kind is running; otherwise the running one sends its follow-up when it finishes
(see ``app.domain.run_lifecycle``).

Domain functions only flush. The caller (request dependency, task wrapper, CLI) commits, and jobs
are sent after that commit (``app.jobs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    RUN_CANCELLED,
    RUN_KINDS,
    RUN_QUEUE,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_RUNNING,
    RUN_TAPT,
    Project,
    TrainingRun,
    User,
)
from app.errors import Conflict, NotFound, ProjectNotFound
from app.jobs import Job, enqueue_after_commit
from contract.tasks import TASK_RECOMPUTE_QUEUE, TASK_RETRAIN, TASK_TAPT

KIND_TASKS: Mapping[str, str] = {
    RUN_RETRAIN: TASK_RETRAIN,
    RUN_TAPT: TASK_TAPT,
    RUN_QUEUE: TASK_RECOMPUTE_QUEUE,
}
MAX_REASONS = 10
"""How many request reasons a coalesced run remembers (the count is kept separately)."""


class RunNotFound(NotFound):
    code = "run_not_found"

    def __init__(self, run_id: int) -> None:
        super().__init__(f"Training run {run_id} not found.", details={"run_id": run_id})


class RunAlreadyFinished(Conflict):
    code = "run_finished"

    def __init__(self, run: TrainingRun) -> None:
        super().__init__(
            f"Training run {run.id} already {run.status}; there is nothing to cancel.",
            details={"run_id": run.id, "status": run.status},
        )


def lock_project(session: Session, project_id: int) -> Project:
    """Load the project with a write lock held until the transaction ends.

    Serialises the decisions "is a run of this kind queued or running?" across web processes and
    workers. Postgres takes a row lock (``FOR UPDATE``); SQLite has no row locks, so a no-op
    UPDATE takes the database write lock first (pysqlite only opens a transaction at the first
    write, so a plain SELECT would not serialise anything).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Project)
            .where(Project.id == project_id)
            .values(data_version=Project.data_version)
            .execution_options(synchronize_session=False)
        )
    project = session.scalars(
        select(Project)
        .where(Project.id == project_id)
        # FOR NO KEY UPDATE: rows that reference the project (annotations, leases) take KEY SHARE
        # locks on it, which plain FOR UPDATE conflicts with; two batch closes then deadlocked.
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if project is None:
        raise ProjectNotFound(project_id)
    return project


def request_retrain(
    session: Session,
    project: Project | int,
    *,
    requested_by: User | int | None = None,
    reason: str = "batch submitted",
    force: bool = False,
) -> TrainingRun:
    """Ask for the adapter to be retrained on the project's newest labelled data.

    Called after every submitted batch and by the admin button. Returns the queued run that will
    do it (an existing queued run absorbs the request). ``force`` retrains even when a model for
    the current data version already exists (e.g. after a TAPT refresh changed the base).
    """
    params: dict[str, Any] = {"force": True} if force else {}
    return _request(session, _id_of(project), RUN_RETRAIN, requested_by, reason, params)


def request_tapt(
    session: Session,
    project: Project | int,
    *,
    requested_by: User | int | None = None,
    reason: str = "requested",
    config: Mapping[str, Any] | None = None,
) -> TrainingRun:
    """Ask for task-adaptive pretraining on the pool; ``config`` overrides TaptConfig fields."""
    params: dict[str, Any] = {"tapt_config": dict(config)} if config else {}
    return _request(session, _id_of(project), RUN_TAPT, requested_by, reason, params)


def request_queue_recompute(
    session: Session,
    project: Project | int,
    *,
    requested_by: User | int | None = None,
    reason: str = "requested",
) -> TrainingRun:
    """Ask for the annotation queue to be rebuilt with the project's current model version."""
    return _request(session, _id_of(project), RUN_QUEUE, requested_by, reason, {})


def _request(
    session: Session,
    project_id: int,
    kind: str,
    requested_by: User | int | None,
    reason: str,
    params: dict[str, Any],
) -> TrainingRun:
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; expected one of {', '.join(RUN_KINDS)}")
    project = lock_project(session, project_id)
    queued = _sibling(session, project_id, kind, RUN_QUEUED)
    if queued is not None:
        merged = dict(queued.params)
        merged["requests"] = int(merged.get("requests", 1)) + 1
        merged["reasons"] = [*merged.get("reasons", []), reason][-MAX_REASONS:]
        merged.update(params)
        queued.params = merged
        session.flush()
        return queued
    run = TrainingRun(
        project_id=project_id,
        kind=kind,
        status=RUN_QUEUED,
        data_version=project.data_version,
        requested_by_id=_id_of(requested_by) if requested_by is not None else None,
        params={**params, "requests": 1, "reasons": [reason]},
        message=f"queued: {reason}",
    )
    session.add(run)
    session.flush()
    if _sibling(session, project_id, kind, RUN_RUNNING) is None:
        schedule_send(session, run)
    else:
        run.message = f"queued behind the running {kind} run: {reason}"
    return run


def schedule_send(session: Session, run: TrainingRun, *, now: datetime | None = None) -> None:
    """Send the run's task after commit and remember when, so the reaper can re-send lost ones."""
    run.params = {**run.params, "scheduled_at": (now or utcnow()).isoformat()}
    enqueue_after_commit(session, Job(KIND_TASKS[run.kind], (run.id,)))


def _sibling(session: Session, project_id: int, kind: str, status: str) -> TrainingRun | None:
    return session.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.project_id == project_id,
            TrainingRun.kind == kind,
            TrainingRun.status == status,
        )
        .order_by(TrainingRun.id)
        .limit(1)
    ).first()


def cancel_run(session: Session, run_id: int) -> TrainingRun:
    """Cancel a queued run at once; ask a running one to stop at its next step.

    The worker's reporter reads ``cancel_requested``; the training loop then raises ``Cancelled``
    and the run ends ``cancelled`` with the previous model version still current.
    """
    run = get_run(session, run_id)
    lock_project(session, run.project_id)
    session.refresh(run)
    if run.status == RUN_QUEUED:
        run.status = RUN_CANCELLED
        run.cancel_requested = True
        run.finished_at = utcnow()
        run.message = "cancelled before it started"
    elif run.status == RUN_RUNNING:
        run.cancel_requested = True
        run.message = "cancel requested; stopping at the next step"
    else:
        raise RunAlreadyFinished(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int, *, fresh: bool = False) -> TrainingRun:
    """The run row; ``fresh`` re-reads it even if the session already holds it (progress polls)."""
    run = session.get(TrainingRun, run_id, populate_existing=fresh)
    if run is None:
        raise RunNotFound(run_id)
    return run


def list_runs(
    session: Session, project_id: int, *, kind: str | None = None, limit: int = 20
) -> list[TrainingRun]:
    """The project's runs, newest first."""
    stmt = select(TrainingRun).where(TrainingRun.project_id == project_id)
    if kind is not None:
        stmt = stmt.where(TrainingRun.kind == kind)
    return list(session.scalars(stmt.order_by(TrainingRun.id.desc()).limit(limit)))


def active_runs(session: Session, project_id: int) -> list[TrainingRun]:
    """Queued and running runs of the project, oldest first."""
    return list(
        session.scalars(
            select(TrainingRun)
            .where(
                TrainingRun.project_id == project_id,
                TrainingRun.status.in_((RUN_QUEUED, RUN_RUNNING)),
            )
            .order_by(TrainingRun.id)
        )
    )


@dataclass(frozen=True)
class RunProgress:
    """What a status page shows about one run; ``error`` only for admins."""

    id: int
    project_id: int
    kind: str
    status: str
    phase: str
    step: int
    total: int
    fraction: float | None
    eta_seconds: float | None
    metrics: dict[str, Any]
    message: str
    log_tail: str
    attempts: int
    cancel_requested: bool
    data_version: int
    model_version_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    heartbeat_age_seconds: float | None
    error: str | None

    @property
    def active(self) -> bool:
        return self.status in (RUN_QUEUED, RUN_RUNNING)

    @classmethod
    def of(
        cls, run: TrainingRun, *, include_error: bool = False, now: datetime | None = None
    ) -> RunProgress:
        now = now or utcnow()
        age = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else None
        fraction = min(1.0, run.step / run.total) if run.total > 0 else None
        return cls(
            id=run.id,
            project_id=run.project_id,
            kind=run.kind,
            status=run.status,
            phase=run.phase,
            step=run.step,
            total=run.total,
            fraction=fraction,
            eta_seconds=run.eta_seconds,
            metrics=dict(run.metrics),
            message=run.message,
            log_tail=run.log_tail,
            attempts=run.attempts,
            cancel_requested=run.cancel_requested,
            data_version=run.data_version,
            model_version_id=run.model_version_id,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            heartbeat_at=run.heartbeat_at,
            heartbeat_age_seconds=age,
            error=run.error if include_error else None,
        )


def run_progress(session: Session, run_id: int, *, include_error: bool = False) -> RunProgress:
    """Read one run's progress. A read only: dead workers are noticed by the scheduled reaper
    (:mod:`app.maintenance` in the web process, and every worker), never by a GET."""
    return RunProgress.of(get_run(session, run_id, fresh=True), include_error=include_error)


def _id_of(value: Project | User | int) -> int:
    return value if isinstance(value, int) else value.id
