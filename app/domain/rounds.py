"""The project's training rounds (``RoundMetric``: one row per promoted model), read one way.

The dashboard's learning curve, evaluation and stop advice and the worker's stop rules all read
rounds through these two queries, in the order the rounds happened.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import RoundMetric


def round_history(session: Session, project_id: int) -> list[RoundMetric]:
    """Every round of the project, oldest first."""
    return list(
        session.scalars(
            select(RoundMetric)
            .where(RoundMetric.project_id == project_id)
            .order_by(RoundMetric.created_at, RoundMetric.id)
        )
    )


def latest_round(session: Session, project_id: int) -> RoundMetric | None:
    """The project's newest round (None before the first)."""
    return session.scalars(
        select(RoundMetric)
        .where(RoundMetric.project_id == project_id)
        .order_by(RoundMetric.created_at.desc(), RoundMetric.id.desc())
        .limit(1)
    ).first()
