"""The project lock every run decision takes, and the send-after-commit of a run's task.

Domain functions only flush; jobs are sent after the caller's commit (``app.jobs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import RUN_QUEUE, RUN_RETRAIN, RUN_SCORE, RUN_TAPT, Project, TrainingRun
from app.errors import ProjectNotFound
from app.jobs import Job, enqueue_after_commit
from contract.tasks import TASK_RECOMPUTE_QUEUE, TASK_RETRAIN, TASK_SCORE_POOL, TASK_TAPT

KIND_TASKS: Mapping[str, str] = {
    RUN_RETRAIN: TASK_RETRAIN,
    RUN_TAPT: TASK_TAPT,
    RUN_QUEUE: TASK_RECOMPUTE_QUEUE,
    RUN_SCORE: TASK_SCORE_POOL,
}


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


def schedule_send(session: Session, run: TrainingRun, *, now: datetime | None = None) -> None:
    """Send the run's task after commit and remember when, so the reaper can re-send lost ones."""
    run.params = {**run.params, "scheduled_at": (now or utcnow()).isoformat()}
    enqueue_after_commit(session, Job(KIND_TASKS[run.kind], (run.id,)))
