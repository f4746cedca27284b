"""Asking for live-head refits, coalesced: at most one pending refit per project.

A label submission calls :func:`request_live_refit` in its transaction. The refit job is sent
(after the commit) only when this call flips ``refit_pending`` from false to true; the worker
clears the flag before it reads the labels, so every label is seen by a refit that starts after
it was committed, and a burst of labels during one refit causes exactly one more.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.base import utcnow
from app.db.models import LiveHeadState
from app.jobs import TASK_LIVE_REFIT, Job, enqueue_after_commit


def request_live_refit(db: Session, project_id: int) -> bool:
    """Record that labels changed; returns whether a refit job was enqueued."""
    if not get_settings().live_head:
        return False
    now = utcnow()
    result = db.execute(
        update(LiveHeadState)
        .where(LiveHeadState.project_id == project_id, LiveHeadState.refit_pending.is_(False))
        .values(refit_pending=True, requested_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        exists = db.scalar(
            select(LiveHeadState.id).where(LiveHeadState.project_id == project_id)
        )
        if exists is not None:
            return False  # a refit is already pending; it will read this label
        with db.begin_nested():
            db.add(LiveHeadState(project_id=project_id, refit_pending=True, requested_at=now))
    enqueue_after_commit(db, Job(TASK_LIVE_REFIT, (project_id,)))
    return True


def live_head_state(db: Session, project_id: int) -> LiveHeadState | None:
    return db.scalars(
        select(LiveHeadState).where(LiveHeadState.project_id == project_id)
    ).first()
