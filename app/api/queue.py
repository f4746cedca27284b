"""``/api/v1/projects/{id}/queue``: the next items for the token's user, leased, with the why.

The same hand-out as the annotator view (:func:`app.domain.annotation.next_item`): items the
caller already holds first, then the active-learning queue in rank order, then random pool items
on a cold start. Each item comes with its acquisition score, the strategy's reason, the model's
predictions and the nearest labelled neighbours, and a lease that keeps it from other annotators
until it expires or is labelled (``POST …/annotations``), skipped or released.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.api.common import StrictInput, write_api_router
from app.deps import ProjectAnnotator, ProjectReader, SessionDep, SettingsDep
from app.domain import annotation
from app.domain.annotation.leases import MAX_EXCLUDE

router = write_api_router(tags=["queue"])

MAX_ITEMS = 50
ItemId = Annotated[int, Field(ge=1, le=2_147_483_647)]


class LeaseIn(StrictInput):
    n: int = Field(default=1, ge=1, le=MAX_ITEMS, description="How many items to lease.")


class PredictionOut(BaseModel):
    label: str
    prob: float


class NeighbourOut(BaseModel):
    item_id: int
    label: str
    similarity: float
    snippet: str


class LeasedItemOut(BaseModel):
    item_id: int
    text: str
    external_id: str | None
    lease_expires_at: datetime
    source: str = Field(description="queue, resumed (an older queue) or random (cold start)")
    strategy: str
    score: float | None
    reason: str
    rank: int | None
    queue_version: int
    predicted: list[PredictionOut]
    neighbours: list[NeighbourOut]
    review_note: str | None = Field(
        default=None, description="A reviewer sent the item back with this note."
    )


class NoItemOut(BaseModel):
    code: str
    message: str


class LeaseOut(BaseModel):
    items: list[LeasedItemOut]
    exhausted: NoItemOut | None = Field(
        description="Why fewer than n items came back (budget spent, stopped, nothing left)."
    )


class ReleaseIn(StrictInput):
    item_ids: list[ItemId] = Field(min_length=1, max_length=MAX_EXCLUDE)


class ReleaseOut(BaseModel):
    released: int


class SkipIn(StrictInput):
    item_id: ItemId


class ReadingOut(BaseModel):
    done: int
    total: int
    fraction: float
    seconds_left: float | None
    text: str


class QueueStatusOut(BaseModel):
    queue_version: int
    retrain_status: str | None
    retrain_fraction: float | None
    retrain_phase: str
    live_reading: ReadingOut | None = Field(
        default=None,
        description="While the live head reads (embeds) texts no refit has read yet, e.g. after "
                    "a large import: how far it is and an estimate of the time left.",
    )


def _leased(view: annotation.ItemView) -> LeasedItemOut:
    why = view.why
    return LeasedItemOut(
        item_id=view.item_id,
        text=view.text,
        external_id=view.external_id,
        lease_expires_at=view.lease_expires_at,
        source=why.source,
        strategy=why.strategy,
        score=why.score,
        reason=why.reason,
        rank=why.rank,
        queue_version=why.queue_version,
        predicted=[PredictionOut(label=p.label, prob=p.prob) for p in why.predicted],
        neighbours=[
            NeighbourOut(item_id=n.item_id, label=n.label, similarity=n.similarity,
                         snippet=n.snippet)
            for n in why.neighbours
        ],
        review_note=view.review_note,
    )


@router.post("/projects/{project_id}/queue/lease", response_model=LeaseOut)
def lease_items(
    body: LeaseIn, db: SessionDep, access: ProjectAnnotator, settings: SettingsDep
) -> LeaseOut:
    """Lease up to ``n`` items for the token's user (held items come back first)."""
    items: list[LeasedItemOut] = []
    exhausted: NoItemOut | None = None
    for _ in range(body.n):
        result = annotation.next_item(
            db, access.project, access.user, lease_seconds=settings.lease_seconds,
            exclude=[item.item_id for item in items],
        )  # fmt: skip
        if isinstance(result, annotation.NoItem):
            exhausted = NoItemOut(code=result.code, message=result.message)
            break
        items.append(_leased(result))
    db.commit()  # in this thread: the SQLite write lock is let go here (take_write_lock)
    return LeaseOut(items=items, exhausted=exhausted)


@router.post("/projects/{project_id}/queue/release", response_model=ReleaseOut)
def release_items(body: ReleaseIn, db: SessionDep, access: ProjectAnnotator) -> ReleaseOut:
    """Give back leased items you will not label (others can get them at once)."""
    released = annotation.release_leases(db, access.project, access.user, body.item_ids)
    db.commit()
    return ReleaseOut(released=released)


@router.post("/projects/{project_id}/queue/skip", response_model=ReleaseOut)
def skip_item(body: SkipIn, db: SessionDep, access: ProjectAnnotator) -> ReleaseOut:
    """Skip an item: released for others, never handed to you again."""
    annotation.skip_item(db, access.project, access.user, item_id=body.item_id)
    db.commit()
    return ReleaseOut(released=1)


@router.get("/projects/{project_id}/queue/status", response_model=QueueStatusOut)
def queue_status(db: SessionDep, access: ProjectReader) -> QueueStatusOut:
    status = annotation.queue_status(db, access.project)
    return QueueStatusOut(
        queue_version=status.queue_version,
        retrain_status=status.retrain_status,
        retrain_fraction=status.retrain_fraction,
        retrain_phase=status.retrain_phase,
        live_reading=(
            ReadingOut.model_validate(status.reading.as_dict()) if status.reading else None
        ),
    )
