"""Request a run (coalescing per project and kind) and cancel one.

A *run* is a row in ``training_runs``; the database, not Celery, holds its state. Requests
coalesce per (project, kind): while a run of that kind is queued it absorbs every further request,
so twenty batch submissions during one training produce exactly one follow-up run, which trains on
whatever data is newest when it starts. A run is only sent to the broker when no sibling of the
same kind is running; otherwise the running one sends its follow-up when it finishes
(see :mod:`app.domain.runs.lifecycle`).

Domain functions only flush. The caller (request dependency, task wrapper, CLI) commits, and jobs
are sent after that commit (``app.jobs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    RUN_CANCELLED,
    RUN_KINDS,
    RUN_QUEUE,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_RUNNING,
    RUN_SCORE,
    RUN_TAPT,
    TASK_MULTI_LABEL,
    Project,
    TrainingRun,
    User,
)
from app.domain.runs.locks import lock_project, schedule_send
from app.domain.runs.progress import get_run
from app.domain.tapt import check_tapt_overrides
from app.errors import Conflict, NotSupported


class RunAlreadyFinished(Conflict):
    code = "run_finished"

    def __init__(self, run: TrainingRun) -> None:
        super().__init__(
            f"Training run {run.id} already {run.status}; there is nothing to cancel.",
            details={"run_id": run.id, "status": run.status},
        )


MAX_REASONS = 10
"""How many request reasons a coalesced run remembers (the count is kept separately)."""


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
    """Ask for task-adaptive pretraining on the pool; ``config`` overrides TaptConfig fields
    (its budget fields are checked here: ``app.domain.tapt.check_tapt_overrides``)."""
    check_tapt_overrides(config)
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


def request_pool_scoring(
    session: Session, project: Project | int, model_version_id: int, *, reason: str
) -> TrainingRun:
    """Ask for model version ``model_version_id`` to score the pool items its queue rebuild left
    out (a large pool's round scores a bounded candidate set; this fills in the rest in the
    background). A queued request takes the newest version."""
    params = {"model_version_id": int(model_version_id)}
    return _request(session, _id_of(project), RUN_SCORE, None, reason, params)


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
    if kind in (RUN_QUEUE, RUN_SCORE) and project.task_type == TASK_MULTI_LABEL:
        # Adapter rounds train multi-label adapters (sigmoid outputs, thresholds tuned on dev),
        # but the queue always comes from the live head's multi-label acquisition.
        raise NotSupported(
            "Adapter queue rebuilds and pool scoring are not supported for multi-label "
            "projects: their queue is always built by the live head's multi-label acquisition "
            "(one-vs-rest logistic regression on sentence embeddings, a threshold per label), "
            "which refits after every label and after every adapter round.",
            details={"task_type": project.task_type, "kind": kind})
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


def cancel_run(session: Session, project_id: int, run_id: int) -> TrainingRun:
    """Cancel a queued run at once; ask a running one to stop at its next step.

    The worker's reporter reads ``cancel_requested``; the training loop then raises ``Cancelled``
    and the run ends ``cancelled`` with the previous model version still current.
    """
    run = get_run(session, project_id, run_id)
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


def _id_of(value: Project | User | int) -> int:
    return value if isinstance(value, int) else value.id
