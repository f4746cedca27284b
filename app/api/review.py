"""``/api/v1/projects/{id}/review``: the review queue and adjudication (reviewers, leads,
admins); ``/audit`` and ``/guidelines``: the audit log and guideline versions (leads).

Annotators get 403 here: the review queue shows every annotator's labels and gold answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Query
from pydantic import BaseModel, Field

from app.api.common import StrictInput, write_api_router
from app.api.router import NOT_SUPPORTED
from app.deps import MAX_DB_INT, IdPath, Level, ProjectLead, ProjectReviewer, SessionDep
from app.domain import audit, guidelines, review
from app.domain.annotation.common import project_item
from app.errors import InvalidInput

router = write_api_router(tags=["review"])
router.responses.update(NOT_SUPPORTED)


class VoteOut(BaseModel):
    annotator: str
    label: str


class ReviewEntryOut(BaseModel):
    item_id: int
    text: str
    reason: str = Field(description="disagreement, gold_miss or likely_error")
    label: str | None = Field(
        description="The label the item has now (for a gold miss: the "
        "gold answer; for a likely error: the given label)."
    )
    votes: list[VoteOut]
    suggested: str | None = None
    score: float | None = None


class ReviewQueueOut(BaseModel):
    disagreements: list[ReviewEntryOut]
    gold_misses: list[ReviewEntryOut]
    likely_errors: list[ReviewEntryOut]


class DecisionIn(StrictInput):
    action: Literal["accept", "change", "send_back"]
    label_id: int | None = Field(
        default=None, ge=1, le=MAX_DB_INT,
        description="The new label (change only; single-label projects)."
    )
    label_ids: list[Annotated[int, Field(ge=1, le=MAX_DB_INT)]] | None = Field(
        default=None, max_length=200,
        description="The new label set (change only; multi-label projects): the project's "
                    "label ids that apply, [] for none of them.",
    )
    note: str = Field(
        default="",
        max_length=review.MAX_NOTE_CHARS,
        description="Why the item goes back (send_back: required); shown to annotators.",
    )
    reason: Literal["", "disagreement", "gold_miss", "likely_error"] = ""


class DecisionOut(BaseModel):
    id: int
    item_id: int
    action: str
    label: str | None = Field(description="The label decided on; multi-label: the set as one "
                                          "text.")
    note: str
    labels: list[str] | None = Field(
        default=None, description="Multi-label projects only (accept, change): the set "
                                  "decided on ([]: none of these).")


class AuditRowOut(BaseModel):
    id: int
    created_at: datetime
    actor: str
    action: str
    item_id: int | None
    detail: dict[str, Any]


class AuditPageOut(BaseModel):
    events: list[AuditRowOut]
    next_before: int | None = Field(description="Pass back as `before` for older events.")


class GuidelineVersionOut(BaseModel):
    version: int
    created_at: datetime
    author: str
    text: str
    current: bool


def _entry(entry: review.ReviewEntry) -> ReviewEntryOut:
    return ReviewEntryOut(
        item_id=entry.item_id,
        text=entry.text,
        reason=entry.reason,
        label=entry.label,
        votes=[VoteOut(annotator=v.annotator, label=v.label) for v in entry.votes],
        suggested=entry.suggested,
        score=entry.score,
    )


@router.get("/projects/{project_id}/review", response_model=ReviewQueueOut)
def review_queue(
    db: SessionDep,
    access: ProjectReviewer,
    limit: Annotated[int, Query(ge=1, le=review.MAX_LIST)] = 50,
) -> ReviewQueueOut:
    queue = review.review_queue(db, access.project, limit=limit)
    return ReviewQueueOut(
        disagreements=[_entry(e) for e in queue.disagreements],
        gold_misses=[_entry(e) for e in queue.gold_misses],
        likely_errors=[_entry(e) for e in queue.likely_errors],
    )


@router.post("/projects/{project_id}/review/items/{item_id}", response_model=DecisionOut,
             response_model_exclude_unset=True)
def decide(
    item_id: IdPath,
    db: SessionDep,
    access: ProjectReviewer,
    body: Annotated[DecisionIn | None, Body()] = None,
) -> DecisionOut:
    """Accept the item's label, change it, or send the item back to annotators with a note.

    The item is checked first (another project's item: 404), then the body (422)."""
    project_item(db, access.project, item_id)
    if body is None:
        raise InvalidInput(
            "Send a JSON body with an action: accept, change or send_back.",
            details={"field": "action"},
        )
    decision = review.decide(
        db,
        access.project,
        access.user,
        item_id=item_id,
        action=body.action,
        label_id=body.label_id,
        label_ids=body.label_ids,
        note=body.note,
        reason=body.reason,
        may_change_gold=access.can(Level.LEAD),
    )
    sets = {} if decision.labels is None else {"labels": list(decision.labels)}
    return DecisionOut(
        id=decision.id,
        item_id=decision.item_id,
        action=decision.action,
        label=decision.label,
        note=decision.note,
        **sets,
    )


@router.get("/projects/{project_id}/audit", response_model=AuditPageOut)
def audit_log(
    db: SessionDep,
    access: ProjectLead,
    before: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 50,
) -> AuditPageOut:
    """Who changed what, newest first; page with ``before``."""
    page = audit.audit_page(db, access.project.id, before=before, limit=limit)
    return AuditPageOut(
        events=[
            AuditRowOut(
                id=r.id,
                created_at=r.created_at,
                actor=r.actor,
                action=r.action,
                item_id=r.item_id,
                detail=r.detail,
            )
            for r in page.rows
        ],
        next_before=page.next_before,
    )


@router.get("/projects/{project_id}/guidelines", response_model=list[GuidelineVersionOut])
def guideline_versions(db: SessionDep, access: ProjectLead) -> list[GuidelineVersionOut]:
    """Every version of the project's guidelines, newest first."""
    return [
        GuidelineVersionOut(
            version=v.version,
            created_at=v.created_at,
            author=v.author,
            text=v.text,
            current=v.current,
        )
        for v in guidelines.guideline_history(db, access.project)
    ]
