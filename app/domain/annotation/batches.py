"""Batches are project rounds: every UI label made while ``project.data_version`` had one value
(``batch_id = "round-<data_version>"``). Closing a batch, automatically when it is full or by hand,
bumps ``data_version`` and requests a retrain; the worker trains on whatever is labelled when it
starts, while annotators keep labelling from the current queue."""

from __future__ import annotations

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.orm import Session

from app.db.models import (
    RUN_ACTIVE,
    RUN_QUEUE,
    RUN_RETRAIN,
    Annotation,
    Project,
    TrainingRun,
    User,
)
from app.domain.annotation.common import batch_id_for
from app.domain.annotation.views import UI_SOURCE, BatchProgress, QueueStatus
from app.domain.policy import budget_plan, labels_used, live
from app.domain.runs import lock_project, request_retrain
from app.errors import Conflict

# Built once with bind parameters: the progress bar is re-read after every label (see .leases).
_IN_BATCH = (
    select(
        func.count(),
        func.coalesce(
            func.sum(case((Annotation.annotator_id == bindparam("a_user"), 1), else_=0)), 0
        ),
    )
    .select_from(Annotation)
    .where(
        Annotation.project_id == bindparam("a_project"),
        Annotation.batch_id == bindparam("batch"),
        Annotation.source == UI_SOURCE,
        live(),
    )
)
_RETRAINING = (
    select(TrainingRun.id)
    .where(
        TrainingRun.project_id == bindparam("a_project"),
        TrainingRun.kind.in_((RUN_RETRAIN, RUN_QUEUE)),
        TrainingRun.status.in_(RUN_ACTIVE),
    )
    .limit(1)
)


def _in_batch(db: Session, project_id: int, batch_id: str, user_id: int = 0) -> tuple[int, int]:
    """Live UI labels in the batch: all of them, and ``user_id``'s."""
    row = db.execute(_IN_BATCH, {"a_project": project_id, "batch": batch_id, "a_user": user_id})
    done, mine = row.one()
    return int(done), int(mine)


def batch_target(project: Project, used: int, done: int) -> int:
    """How many labels close the current batch: the batch size, cut short by the budget.

    Mirrors the worker's budget plan, computed from the labels that existed when the batch
    started, so the last batch before the polish reserve (and the very last one) is smaller.
    """
    start = max(0, used - done)
    return budget_plan(project).next_batch(start).size


def batch_progress(db: Session, project: Project, user: User) -> BatchProgress:
    batch = batch_id_for(project.data_version)
    done, mine = _in_batch(db, project.id, batch, user.id)
    used = labels_used(db, project.id)
    retraining = db.scalar(_RETRAINING, {"a_project": project.id}) is not None
    return BatchProgress(
        batch_id=batch,
        done=done,
        size=max(batch_target(project, used, done), done),
        mine=mine,
        labels_used=used,
        label_budget=project.label_budget,
        queue_version=project.queue_version,
        retraining=retraining,
    )


def close_batch_if_full(db: Session, project: Project, user: User) -> TrainingRun | None:
    batch = batch_id_for(project.data_version)
    done, _ = _in_batch(db, project.id, batch)
    if done == 0 or done < batch_target(project, labels_used(db, project.id), done):
        return None
    return submit_batch(
        db,
        project,
        user,
        reason=f"batch {project.data_version} complete ({done} labels)",
        expected_data_version=project.data_version,
    )


def submit_batch(
    db: Session,
    project: Project,
    user: User,
    *,
    reason: str = "batch submitted",
    expected_data_version: int | None = None,
) -> TrainingRun | None:
    """Close the current batch: a new labelled-data version, and a retrain request for it (in a
    multi-label project too: its round trains a multi-label adapter, and the live head, which
    refits after every label, keeps building the queue).

    With ``expected_data_version`` (the automatic close) nothing happens when another request
    closed this batch first. A manual submit of an empty batch is refused.
    """
    locked = lock_project(db, project.id)
    if expected_data_version is not None and locked.data_version != expected_data_version:
        return None
    done, _ = _in_batch(db, locked.id, batch_id_for(locked.data_version))
    if done == 0:
        raise Conflict("This batch has no labels yet; label some items first.")
    locked.data_version += 1
    db.flush()
    return request_retrain(db, locked, requested_by=user, reason=reason)


def queue_status(db: Session, project: Project) -> QueueStatus:
    run = db.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.project_id == project.id,
            TrainingRun.kind.in_((RUN_RETRAIN, RUN_QUEUE)),
            TrainingRun.status.in_(RUN_ACTIVE),
        )
        .order_by(TrainingRun.id)
        .limit(1)
    ).first()
    from app.domain.live_head import reading

    read = reading(db, project.id)
    if run is None:
        return QueueStatus(project.queue_version, None, None, reading=read)
    fraction = min(1.0, run.step / run.total) if run.total > 0 else None
    phase = "rebuilding the queue" if run.kind == RUN_QUEUE else "retraining the model"
    return QueueStatus(project.queue_version, run.status, fraction, phase, reading=read)
