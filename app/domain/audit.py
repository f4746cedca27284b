"""The audit log of a project: who changed what, and when (issue 16).

Written by the domain functions that change labels or their meaning: adjudications in the review
queue, relabels in the data manager, gold answers, project roles and guidelines. Rows are only
ever added. Leads read them newest first, a page at a time (keyset on the id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, User

MAX_PAGE = 200

# Actions (stable strings: API clients filter on them).
ADJUDICATE = "review.adjudicate"
SEND_BACK = "review.send_back"
RELABEL = "data.relabel"
GOLD_SET = "gold.set"
GOLD_REMOVE = "gold.remove"
ROLE_SET = "member.role"
MEMBER_REMOVE = "member.remove"
GUIDELINES = "guidelines.edit"


def record(
    db: Session,
    project_id: int,
    action: str,
    *,
    actor: User | None,
    item_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one row (flushed with the change it records, in the same transaction)."""
    event = AuditEvent(
        project_id=project_id,
        actor_id=actor.id if actor is not None else None,
        action=action,
        item_id=item_id,
        detail=detail or {},
    )
    db.add(event)
    return event


@dataclass(frozen=True)
class AuditRow:
    id: int
    created_at: datetime
    actor: str
    action: str
    item_id: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    next_before: int | None
    """Pass back as ``before`` for the next (older) page; None on the last page."""


def audit_page(
    db: Session, project_id: int, *, before: int | None = None, limit: int = 50
) -> AuditPage:
    """Newest first; ``before``: only rows with a smaller id (the previous page's last one)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = (
        select(AuditEvent, User.email)
        .outerjoin(User, User.id == AuditEvent.actor_id)
        .where(AuditEvent.project_id == project_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(AuditEvent.id < before)
    found = db.execute(query).all()
    rows = [
        AuditRow(
            e.id,
            e.created_at,
            (email or "(deleted user)") if e.actor_id else "system",
            e.action,
            e.item_id,
            dict(e.detail or {}),
        )
        for e, email in found[:limit]
    ]
    more = len(found) > limit
    return AuditPage(rows, rows[-1].id if more and rows else None)
