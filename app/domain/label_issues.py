"""Likely label errors as the worker stored them (``label_issues``, see
``worker.tasks.label_errors``): read the ranked list, ask for a recomputation."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from app.db.models import Item, Label, LabelIssue, Project
from app.jobs import Job, enqueue_after_commit
from contract.tasks import TASK_LABEL_ISSUES

MAX_LIST = 500


@dataclass(frozen=True)
class LikelyError:
    item_id: int
    text: str
    given: str
    suggested: str
    score: float
    flagged: bool


def likely_errors(db: Session, project: Project, *, limit: int = 50,
                  flagged_only: bool = True) -> list[LikelyError]:
    """The project's labelled items, most likely mislabelled first."""
    given = aliased(Label)
    suggested = aliased(Label)
    query = (
        select(LabelIssue.item_id, Item.text, given.name, suggested.name, LabelIssue.score,
               LabelIssue.flagged)
        .join(Item, Item.id == LabelIssue.item_id)
        .join(given, given.id == LabelIssue.given_label_id)
        .join(suggested, suggested.id == LabelIssue.suggested_label_id)
        .where(LabelIssue.project_id == project.id)
        .order_by(LabelIssue.score.desc(), LabelIssue.item_id)
        .limit(max(1, min(limit, MAX_LIST)))
    )
    if flagged_only:
        query = query.where(LabelIssue.flagged.is_(True))
    return [LikelyError(*row) for row in db.execute(query)]


def request_recompute(db: Session, project: Project) -> None:
    """Recompute after this transaction commits (a worker task)."""
    enqueue_after_commit(db, Job(TASK_LABEL_ISSUES, (project.id,)))
