"""Overlap routing: a share of the items goes to several annotators, so that their agreement is
measured all the time (:mod:`app.domain.agreement`).

* **Which items.** ``Project.overlap_rate`` of the items people labelled here (imported seed
  labels do not count: a large seed set must not make the next hundred hand-outs all overlap) are
  overlap items: a new one is marked whenever ``marked + 1 <= rate * (labelled + 1)`` (every
  tenth item at 10 %), so the
  share holds at any count and does not depend on chance. The item is taken from the current
  queue *across its score range*, not from its head: the n-th overlap item sits at the score
  quantile given by the van der Corput sequence (0.5, 0.25, 0.75, 0.125, ...), which spreads the
  overlap items evenly over the uncertainty range whatever their number. Without a queue (cold
  start) it is a random unlabelled pool item.
* **Who gets them.** An overlap item still short of ``Project.overlap_k`` annotators is handed,
  before queue items, to an annotator who has neither labelled it nor been handed it (a skip or
  an expired lease counts as handed): up to ``k`` distinct annotators, never one twice. Labelled
  by ``k`` annotators, it is done.
* **Blind.** Nothing an annotator reads shows another annotator's label on an overlap item they
  have not labelled (see :func:`hidden_from`).
* **Any task.** Routing counts annotations and leases, never their labels, so a multi-label
  project's overlap items work the same way; their agreement is on label sets (alpha-MASI).

Every other item is handed out exactly as before (:mod:`.leases`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from functools import cache
from random import Random
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, exists, func, select
from sqlalchemy.orm import Session

from app.db.models import (
    SPLIT_POOL,
    Annotation,
    GoldItem,
    Item,
    Lease,
    OverlapItem,
    Project,
    QueueEntry,
)
from app.domain.annotation.common import live

CANDIDATES = 16
_random = Random()


def target_annotators(project: Project) -> int:
    """How many distinct annotators an overlap item goes to."""
    return max(2, project.overlap_k, project.annotations_per_item)


def quantile(n: int) -> float:
    """The n-th (1-based) point of the base-2 van der Corput sequence: 0.5, 0.25, 0.75, 0.125..."""
    if n < 1:
        raise ValueError("n starts at 1")
    q, denominator = 0.0, 1.0
    while n:
        denominator *= 2
        n, bit = divmod(n, 2)
        q += bit / denominator
    return q


def _of_item() -> tuple[ColumnElement[bool], ...]:
    return (Annotation.project_id == bindparam("a_project"), Annotation.item_id == Item.id, live())


def _open_to_user() -> ColumnElement[bool]:
    """SQL condition on ``Item``: an overlap item this annotator may be handed now."""
    user_id: BindParameter[int] = bindparam("a_user")
    annotations = select(func.count()).where(*_of_item()).scalar_subquery()
    leases = (
        select(func.count())
        .where(
            Lease.item_id == Item.id,
            Lease.expires_at > bindparam("a_now"),
            Lease.annotator_id != user_id,
        )
        .scalar_subquery()
    )
    return (
        ~exists().where(*_of_item(), Annotation.annotator_id == user_id)
        & ~exists().where(Lease.item_id == Item.id, Lease.annotator_id == user_id)
        & ~exists().where(GoldItem.item_id == Item.id)
        & ((annotations + leases) < bindparam("per_item"))
    )


def _fresh() -> ColumnElement[bool]:
    """SQL condition on ``Item``: nobody labelled or holds it, this annotator never had it, and
    it is neither gold nor already an overlap item."""
    return (
        ~exists().where(*_of_item())
        & ~exists().where(Lease.item_id == Item.id, Lease.expires_at > bindparam("a_now"))
        & ~exists().where(Lease.item_id == Item.id, Lease.annotator_id == bindparam("a_user"))
        & ~exists().where(GoldItem.item_id == Item.id)
        & ~exists().where(OverlapItem.item_id == Item.id)
    )


_OPEN = (
    select(OverlapItem.item_id)
    .join(Item, Item.id == OverlapItem.item_id)
    .where(
        OverlapItem.project_id == bindparam("a_project"),
        Item.split == SPLIT_POOL,
        OverlapItem.item_id.not_in(bindparam("exclude", expanding=True)),
        _open_to_user(),
    )
    .order_by(OverlapItem.id)
    .limit(CANDIDATES)
)
_STILL_OPEN = (
    select(OverlapItem.item_id)
    .join(Item, Item.id == OverlapItem.item_id)
    .where(OverlapItem.item_id == bindparam("item"), _open_to_user())
)
_STILL_FRESH = select(Item.id).where(Item.id == bindparam("item"), _fresh())
_MARKED = select(func.count()).where(OverlapItem.project_id == bindparam("a_project"))
_QUEUE_FRESH = (
    QueueEntry.project_id == bindparam("a_project"),
    QueueEntry.queue_version == bindparam("queue_version"),
    Item.split == SPLIT_POOL,
    QueueEntry.item_id.not_in(bindparam("exclude", expanding=True)),
    _fresh(),
)
_QUEUE_FRESH_COUNT = (
    select(func.count())
    .select_from(QueueEntry)
    .join(Item, Item.id == QueueEntry.item_id)
    .where(*_QUEUE_FRESH)
)
_QUEUE_FRESH_AT = (
    select(QueueEntry.item_id)
    .join(Item, Item.id == QueueEntry.item_id)
    .where(*_QUEUE_FRESH)
    .order_by(QueueEntry.score.desc(), QueueEntry.rank)
    .offset(bindparam("offset"))
    .limit(CANDIDATES)
)


@cache
def _pool_fresh(from_pivot: bool) -> Select[int]:
    pivot: BindParameter[int] = bindparam("pivot")
    return (
        select(Item.id)
        .where(
            Item.project_id == bindparam("a_project"),
            Item.split == SPLIT_POOL,
            Item.id >= pivot if from_pivot else Item.id < pivot,
            Item.id.not_in(bindparam("exclude", expanding=True)),
            _fresh(),
        )
        .order_by(Item.id)
        .limit(CANDIDATES)
    )


def _params(
    project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> dict[str, Any]:
    return {
        "a_project": project.id,
        "a_user": user_id,
        "a_now": now,
        "per_item": target_annotators(project),
        "exclude": list(exclude),
    }


def marked_count(db: Session, project_id: int) -> int:
    return int(db.scalar(_MARKED, {"a_project": project_id}) or 0)


SEED_SOURCE = "seed"  # app.domain.imports.SEED_SOURCE: labels that came with an import
_LABELLED_HERE = (
    select(func.count(func.distinct(Annotation.item_id)))
    .join(Item, Item.id == Annotation.item_id)
    .where(
        Annotation.project_id == bindparam("a_project"),
        Item.split == SPLIT_POOL,
        Annotation.source != SEED_SOURCE,
        live(),
        ~exists().where(GoldItem.item_id == Item.id),
    )
)


def labelled_here(db: Session, project_id: int) -> int:
    """Pool items people labelled in Tapestry (in the browser or through the API), gold and
    imported seed labels left out: what the overlap share is a share of."""
    return int(db.scalar(_LABELLED_HERE, {"a_project": project_id}) or 0)


def due(db: Session, project: Project) -> bool:
    """A new overlap item is due: marking one keeps the share at or below ``overlap_rate``."""
    if project.overlap_rate <= 0:
        return False
    marked = marked_count(db, project.id)
    return marked + 1 <= project.overlap_rate * (labelled_here(db, project.id) + 1)


def open_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    """Overlap items short of ``k`` annotators that this annotator may take, oldest first."""
    return list(db.scalars(_OPEN, _params(project, user_id, exclude, now)))


def fresh_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    """Items to mark as the next overlap item: queue entries around the next score quantile."""
    params = _params(project, user_id, exclude, now)
    params["queue_version"] = project.queue_version
    available = int(db.scalar(_QUEUE_FRESH_COUNT, params) or 0)
    if available:
        position = quantile(marked_count(db, project.id) + 1)
        params["offset"] = max(0, min(available - CANDIDATES, int(position * available)))
        return list(db.scalars(_QUEUE_FRESH_AT, params))
    low, high = db.execute(
        select(func.min(Item.id), func.max(Item.id)).where(
            Item.project_id == project.id, Item.split == SPLIT_POOL
        )
    ).one()
    if low is None:
        return []
    params["pivot"] = _random.randint(low, high)
    found = list(db.scalars(_pool_fresh(True), params))
    if len(found) < CANDIDATES:
        found.extend(db.scalars(_pool_fresh(False), params))
    return found[:CANDIDATES]


def still_available(
    db: Session, project: Project, user_id: int, item_id: int, now: datetime, *, fresh: bool
) -> bool:
    """The re-check after the row lock (Postgres): sees leases committed meanwhile."""
    params = _params(project, user_id, (), now)
    params["item"] = item_id
    return db.scalar(_STILL_FRESH if fresh else _STILL_OPEN, params) is not None


def mark(db: Session, project: Project, item_id: int) -> None:
    db.add(OverlapItem(project_id=project.id, item_id=item_id))
    db.flush()


def _hidden_items(project: Project, user_id: int | None) -> Select[int]:
    """Overlap items still short of ``k`` annotators that the user has not labelled (``None``:
    whoever asks): another annotator's label on them must not reach this user yet."""
    annotations = (
        select(func.count())
        .where(
            Annotation.project_id == project.id, Annotation.item_id == OverlapItem.item_id, live()
        )
        .scalar_subquery()
    )
    query = select(OverlapItem.item_id).where(
        OverlapItem.project_id == project.id, annotations < target_annotators(project)
    )
    if user_id is not None:
        query = query.where(
            ~exists().where(
                Annotation.project_id == project.id,
                Annotation.item_id == OverlapItem.item_id,
                Annotation.annotator_id == user_id,
                live(),
            )
        )
    return query


def hidden_from(
    db: Session, project: Project, user_id: int | None, item_ids: Collection[int]
) -> set[int]:
    """Of ``item_ids``, those whose labels this user may not see yet (:func:`_hidden_items`)."""
    if not item_ids:
        return set()
    query = _hidden_items(project, user_id).where(OverlapItem.item_id.in_(list(item_ids)))
    return set(db.scalars(query))


def visible_to(project: Project, user_id: int) -> ColumnElement[bool]:
    """SQL condition on ``Annotation``: a label this user may read (for callers below lead:
    nothing on an overlap item they still have to label blind)."""
    return Annotation.item_id.not_in(_hidden_items(project, user_id))
