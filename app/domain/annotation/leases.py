"""Handing out the next item under a lease, and letting go of items (skip, release).

On Postgres the candidate item row is taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` and its
availability is re-checked after the lock: a statement started before a competing commit could
otherwise miss that commit's lease. On SQLite the whole decision runs as one single-writer
transaction (:func:`~app.domain.annotation.common.take_write_lock`).

A lease row outlives its lease. Labelling deletes it; skipping releases it (``expires_at``
becomes now) and keeps the row, so a skipped item is never handed to the same annotator again
while others still get it. An expired lease means the same: the annotator saw the item and moved
on.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from random import Random
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    SPLIT_POOL,
    Annotation,
    Item,
    Lease,
    Project,
    QueueEntry,
    User,
)
from app.domain.annotation.common import (
    is_postgres,
    labels_used,
    live,
    project_item,
    take_write_lock,
)
from app.domain.annotation.views import (
    ItemView,
    Neighbour,
    NoItem,
    Prediction,
    WhyThisItem,
    snippet,
)
from app.errors import NotFound

CANDIDATES_PER_TRY = 16


MAX_EXCLUDE = 50


_random = Random()


def _available_condition(project: Project, user_id: int, now: datetime) -> ColumnElement[bool]:
    """SQL condition on ``Item``: this annotator may be handed the item now."""
    mine_annotated = exists().where(
        Annotation.item_id == Item.id,
        Annotation.annotator_id == user_id,
        live(),
    )
    mine_leased = exists().where(Lease.item_id == Item.id, Lease.annotator_id == user_id)
    per_item = max(1, project.annotations_per_item)
    if per_item == 1:
        taken = exists().where(Annotation.item_id == Item.id, live()) | exists().where(
            Lease.item_id == Item.id, Lease.expires_at > now
        )
        return ~mine_annotated & ~mine_leased & ~taken
    annotations = (
        select(func.count()).where(Annotation.item_id == Item.id, live()).scalar_subquery()
    )
    leases = (
        select(func.count())
        .where(Lease.item_id == Item.id, Lease.expires_at > now, Lease.annotator_id != user_id)
        .scalar_subquery()
    )
    return ~mine_annotated & ~mine_leased & ((annotations + leases) < per_item)


def _queue_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    query = (
        select(QueueEntry.item_id)
        .join(Item, Item.id == QueueEntry.item_id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.queue_version == project.queue_version,
            Item.split == SPLIT_POOL,
            _available_condition(project, user_id, now),
        )
        .order_by(QueueEntry.rank)
        .limit(CANDIDATES_PER_TRY)
    )
    if exclude:
        query = query.where(QueueEntry.item_id.not_in(list(exclude)))
    return list(db.scalars(query))


def _pool_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    """Unlabelled pool items from a random starting id onwards (then wrapping around).

    ``ORDER BY random()`` would sort the whole pool on every request; a random pivot on the
    ``(project_id, split, id)`` index costs one index seek.
    """
    in_pool = select(Item.id).where(Item.project_id == project.id, Item.split == SPLIT_POOL)
    # Two ORDER BY ... LIMIT 1 seeks: SQLite answers min() and max() in one query with a scan.
    low = db.scalar(in_pool.order_by(Item.id).limit(1))
    high = db.scalar(in_pool.order_by(Item.id.desc()).limit(1))
    if low is None or high is None:
        return []
    pivot = _random.randint(low, high)
    found: list[int] = []
    for side in (Item.id >= pivot, Item.id < pivot):
        query = (
            select(Item.id)
            .where(
                Item.project_id == project.id,
                Item.split == SPLIT_POOL,
                side,
                _available_condition(project, user_id, now),
            )
            .order_by(Item.id)
            .limit(CANDIDATES_PER_TRY - len(found))
        )
        if exclude:
            query = query.where(Item.id.not_in(list(exclude)))
        found.extend(db.scalars(query))
        if len(found) >= CANDIDATES_PER_TRY:
            break
    return found


def _still_available(
    db: Session, project: Project, user_id: int, item_id: int, now: datetime
) -> bool:
    """Fresh re-check after taking the row lock (sees leases committed meanwhile)."""
    query = select(Item.id).where(Item.id == item_id, _available_condition(project, user_id, now))
    return db.scalar(query) is not None


def _try_lease(
    db: Session, project: Project, user_id: int, item_id: int, now: datetime, ttl: timedelta
) -> bool:
    if is_postgres(db):
        locked = db.scalar(
            select(Item.id)
            .where(Item.id == item_id)
            .with_for_update(skip_locked=True, key_share=True)  # FOR NO KEY UPDATE
        )
        if locked is None:
            return False  # another annotator is taking it right now
    if not _still_available(db, project, user_id, item_id, now):
        return False
    db.add(
        Lease(
            project_id=project.id,
            item_id=item_id,
            annotator_id=user_id,
            expires_at=now + ttl,
            created_at=now,
        )
    )
    db.flush()
    return True


def _stop_reason(db: Session, project: Project) -> NoItem | None:
    if project.stopped:
        return NoItem("stopped", "The project lead has stopped labelling for this project.")
    if labels_used(db, project.id) >= project.label_budget:
        return NoItem(
            "budget_spent",
            f"The label budget of {project.label_budget} is spent. Ask the project lead to "
            "raise it if more labels would help.",
        )
    return None


def next_item(
    db: Session,
    project: Project,
    user: User,
    *,
    lease_seconds: int,
    exclude: Collection[int] = (),
    now: datetime | None = None,
) -> ItemView | NoItem:
    """The item this annotator should label next, leased to them.

    First an item they already hold (a reload must not lose it) that the page does not show yet
    (``exclude``: the items on screen or prefetched), else the best queue entry nobody holds, else
    a random unlabelled pool item (labelling can start before any queue exists).
    """
    now = now or utcnow()
    exclude = set(list(exclude)[:MAX_EXCLUDE])
    take_write_lock(db, project.id)
    held = _held_item(db, project, user.id, exclude, now)
    if held is not None:
        return held
    stop = _stop_reason(db, project)
    if stop is not None:
        return stop
    ttl = timedelta(seconds=lease_seconds)
    for source in (_queue_candidates, _pool_candidates):
        for item_id in source(db, project, user.id, exclude, now):
            if _try_lease(db, project, user.id, item_id, now, ttl):
                return item_view(db, project, item_id, now + ttl)
    return NoItem(
        "exhausted",
        "Every pool item is labelled or being labelled by someone else. New items appear when "
        "data is imported or a teammate's lease expires.",
    )


def _held_item(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> ItemView | None:
    query = (
        select(Lease)
        .where(
            Lease.project_id == project.id,
            Lease.annotator_id == user_id,
            Lease.expires_at > now,
            ~exists().where(
                Annotation.item_id == Lease.item_id,
                Annotation.annotator_id == user_id,
                live(),
            ),
        )
        .order_by(Lease.id)
        .limit(1)
    )
    if exclude:
        query = query.where(Lease.item_id.not_in(list(exclude)))
    lease = db.scalars(query).first()
    if lease is None:
        return None
    return item_view(db, project, lease.item_id, lease.expires_at)


def item_view(
    db: Session,
    project: Project,
    item_id: int,
    expires_at: datetime,
    previous_label_id: int | None = None,
) -> ItemView:
    item = db.get(Item, item_id)
    if item is None:
        raise NotFound(f"Item {item_id} no longer exists.")
    return ItemView(
        item_id=item.id,
        text=item.text,
        external_id=item.external_id,
        lease_expires_at=expires_at,
        why=_why(db, project, item.id),
        previous_label_id=previous_label_id,
    )


def _why(db: Session, project: Project, item_id: int) -> WhyThisItem:
    entry = db.scalars(
        select(QueueEntry)
        .where(QueueEntry.project_id == project.id, QueueEntry.item_id == item_id)
        .order_by(QueueEntry.queue_version.desc())
        .limit(1)
    ).first()
    if entry is None:
        reason = (
            "Picked at random from the unlabelled pool: the queue is empty (cold start) or "
            "every queued item is taken."
        )
        return WhyThisItem(
            source="random", strategy="random", reason=reason, queue_version=project.queue_version
        )
    return WhyThisItem(
        source="queue" if entry.queue_version == project.queue_version else "resumed",
        strategy=entry.strategy,
        score=entry.score,
        reason=entry.reason,
        rank=entry.rank,
        queue_version=entry.queue_version,
        predicted=tuple(_predictions(entry.predicted)),
        neighbours=tuple(_neighbours(db, project.id, entry.neighbours)),
    )


def _predictions(raw: list[Any]) -> list[Prediction]:
    out = []
    for entry in raw or []:
        if isinstance(entry, dict) and "label" in entry and "prob" in entry:
            try:
                out.append(Prediction(str(entry["label"]), float(entry["prob"])))
            except (TypeError, ValueError):
                continue
    return out


def _neighbours(db: Session, project_id: int, raw: list[Any]) -> list[Neighbour]:
    rows = [n for n in raw or [] if isinstance(n, dict) and isinstance(n.get("item_id"), int)]
    if not rows:
        return []
    ids = [n["item_id"] for n in rows]
    texts = dict(
        db.execute(
            select(Item.id, Item.text).where(Item.project_id == project_id, Item.id.in_(ids))
        )
        .tuples()
        .all()
    )
    return [
        Neighbour(
            item_id=n["item_id"],
            label=str(n.get("label", "")),
            similarity=float(n.get("similarity", 0.0)),
            snippet=snippet(texts.get(n["item_id"], "")),
        )
        for n in rows[:5]
        if n["item_id"] in texts
    ]


def skip_item(
    db: Session, project: Project, user: User, *, item_id: int, now: datetime | None = None
) -> None:
    """Release the item for others; this annotator will not be handed it again."""
    now = now or utcnow()
    take_write_lock(db, project.id)
    item = project_item(db, project, item_id)
    lease = db.scalars(
        select(Lease).where(Lease.item_id == item.id, Lease.annotator_id == user.id)
    ).first()
    if lease is None:
        db.add(
            Lease(
                project_id=project.id,
                item_id=item.id,
                annotator_id=user.id,
                expires_at=now,
                created_at=now,
            )
        )
    elif lease.expires_at > now:
        lease.expires_at = now
    db.flush()


def release_leases(
    db: Session,
    project: Project,
    user: User,
    item_ids: Collection[int],
    *,
    now: datetime | None = None,
) -> int:
    """Give back items the annotator held but did not get to (e.g. a discarded prefetch)."""
    now = now or utcnow()
    if not item_ids:
        return 0
    result = db.execute(
        delete(Lease)
        .where(
            Lease.project_id == project.id,
            Lease.annotator_id == user.id,
            Lease.item_id.in_(list(item_ids)[:MAX_EXCLUDE]),
            Lease.expires_at > now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
