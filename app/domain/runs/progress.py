"""Read runs: one run of a project, a project's runs, and the progress a status page shows.

Reads only: dead workers are noticed by the scheduled reaper (:mod:`app.maintenance` in the web
process, and every worker), never by a GET.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import RUN_QUEUED, RUN_RUNNING, TrainingRun
from app.errors import NotFound


class RunNotFound(NotFound):
    code = "run_not_found"

    def __init__(self, run_id: int) -> None:
        super().__init__(f"Training run {run_id} not found.", details={"run_id": run_id})


def get_run(session: Session, project_id: int, run_id: int, *, fresh: bool = False) -> TrainingRun:
    """The project's run row (another project's run is "not found"); ``fresh`` re-reads it even
    if the session already holds it (progress polls)."""
    run = session.get(TrainingRun, run_id, populate_existing=fresh)
    if run is None or run.project_id != project_id:
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


def run_progress(
    session: Session, project_id: int, run_id: int, *, include_error: bool = False
) -> RunProgress:
    """Read one run's progress. A read only: dead workers are noticed by the scheduled reaper
    (:mod:`app.maintenance` in the web process, and every worker), never by a GET."""
    run = get_run(session, project_id, run_id, fresh=True)
    return RunProgress.of(run, include_error=include_error)
