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
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from random import Random
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    Table,
    bindparam,
    delete,
    exists,
    insert,
    select,
)
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    REVIEW_SEND_BACK,
    SPLIT_POOL,
    Annotation,
    GoldItem,
    Item,
    Lease,
    Project,
    QueueEntry,
    ReviewDecision,
    User,
)
from app.domain.annotation.common import (
    is_postgres,
    project_item,
    take_write_lock,
)
from app.domain.annotation.label_sets import set_text
from app.domain.annotation.overlap import (
    due,
    fresh_candidates,
    hidden_from,
    mark,
    open_candidates,
    still_available,
)
from app.domain.annotation.views import (
    ItemView,
    Neighbour,
    NoItem,
    Prediction,
    WhyThisItem,
    snippet,
)
from app.domain.policy import budget_plan, labels_used, live, open_item
from app.errors import NotFound

CANDIDATES_PER_TRY = 16


MAX_EXCLUDE = 50


_random = Random()


# The hand-out runs on every keystroke, so its statements are built once, with bind parameters,
# instead of per request: on a small CPU, building and cache-keying a statement with a few
# EXISTS clauses costs more than SQLite takes to answer it. Parameters: ``a_project``,
# ``a_user``, ``a_now``, ``per_item`` (shared items only) and ``exclude`` (a list, maybe empty).


def _available(shared: bool) -> ColumnElement[bool]:
    """SQL condition on ``Item``: this annotator may be handed the item now.

    The item is open (:func:`app.domain.policy.open_item`, the rule the worker's queue uses too),
    and this annotator neither holds a lease on it (live, or a skip) nor, on a shared project,
    labelled it already. Counting every unexpired lease in ``open_item`` equals counting the
    other annotators' ones here: an item this annotator leases is refused anyway.
    """
    user_id: BindParameter[int] = bindparam("a_user")
    mine_leased = exists().where(Lease.item_id == Item.id, Lease.annotator_id == user_id)
    if not shared:  # any live annotation takes the item, the annotator's own included
        return ~mine_leased & open_item(shared)
    mine_annotated = exists().where(
        Annotation.project_id == bindparam("a_project"), Annotation.item_id == Item.id, live(),
        Annotation.annotator_id == user_id,
    )
    return ~mine_annotated & ~mine_leased & open_item(shared)


@cache
def _queue_query(shared: bool) -> Select[int]:
    return (
        select(QueueEntry.item_id)
        .join(Item, Item.id == QueueEntry.item_id)
        .where(
            QueueEntry.project_id == bindparam("a_project"),
            QueueEntry.queue_version == bindparam("queue_version"),
            Item.split == SPLIT_POOL,
            QueueEntry.item_id.not_in(bindparam("exclude", expanding=True)),
            _available(shared),
        )
        .order_by(QueueEntry.rank)
        .limit(CANDIDATES_PER_TRY)
    )


@cache
def _returned_query(shared: bool) -> Select[int]:
    """Items a reviewer sent back (an open send-back decision) that this annotator may take."""
    return (
        select(ReviewDecision.item_id)
        .join(Item, Item.id == ReviewDecision.item_id)
        .where(
            ReviewDecision.project_id == bindparam("a_project"),
            ReviewDecision.action == REVIEW_SEND_BACK,
            ReviewDecision.active.is_(True),
            Item.split == SPLIT_POOL,
            ReviewDecision.item_id.not_in(bindparam("exclude", expanding=True)),
            _available(shared),
        )
        .order_by(ReviewDecision.id)
        .limit(CANDIDATES_PER_TRY)
    )


@cache
def _pool_query(shared: bool, from_pivot: bool) -> Select[int]:
    pivot: BindParameter[int] = bindparam("pivot")
    return (
        select(Item.id)
        .where(
            Item.project_id == bindparam("a_project"),
            Item.split == SPLIT_POOL,
            Item.id >= pivot if from_pivot else Item.id < pivot,
            Item.id.not_in(bindparam("exclude", expanding=True)),
            _available(shared),
        )
        .order_by(Item.id)
        .limit(bindparam("limit"))
    )


_IN_POOL = select(Item.id).where(Item.project_id == bindparam("a_project"),
                                 Item.split == SPLIT_POOL)
# Two ORDER BY ... LIMIT 1 seeks: SQLite answers min() and max() in one query with a scan.
_POOL_LOW = _IN_POOL.order_by(Item.id).limit(1)
_POOL_HIGH = _IN_POOL.order_by(Item.id.desc()).limit(1)
_LOCK_ITEM = (
    select(Item.id)
    .where(Item.id == bindparam("item"))
    .with_for_update(skip_locked=True, key_share=True)  # FOR NO KEY UPDATE
)
_INSERT_LEASE = insert(cast(Table, Lease.__table__))


@cache
def _still_available_query(shared: bool) -> Select[int]:
    return select(Item.id).where(Item.id == bindparam("item"), _available(shared))


# A gold item goes to every annotator once: not to one who answered it or saw it (a lease row,
# live or skipped), whatever other annotators did.
_GOLD_QUERY = (
    select(GoldItem.item_id)
    .join(Item, Item.id == GoldItem.item_id)
    .where(
        GoldItem.project_id == bindparam("a_project"),
        Item.split == SPLIT_POOL,
        GoldItem.item_id.not_in(bindparam("exclude", expanding=True)),
        ~exists().where(
            Lease.item_id == GoldItem.item_id, Lease.annotator_id == bindparam("a_user")
        ),
        ~exists().where(
            Annotation.project_id == bindparam("a_project"),
            Annotation.item_id == GoldItem.item_id,
            Annotation.annotator_id == bindparam("a_user"),
            live(),
        ),
    )
    .order_by(GoldItem.id)
    .limit(CANDIDATES_PER_TRY * 4)
)
_GOLD_STILL_AVAILABLE = (
    select(Lease.id).where(Lease.item_id == bindparam("item"),
                           Lease.annotator_id == bindparam("a_user"))
)


def _gold_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    """Gold items this annotator has not seen, in random order, when the dice say gold.

    ``Project.gold_rate`` of the hand-outs (default 5 %) try gold first; nothing marks them on
    screen, and which hand-outs they are is random, so annotators cannot tell.
    """
    if project.gold_rate <= 0 or _random.random() >= project.gold_rate:
        return []
    params = {"a_project": project.id, "a_user": user_id, "exclude": list(exclude)}
    found = list(db.scalars(_GOLD_QUERY, params))
    _random.shuffle(found)
    return found[:CANDIDATES_PER_TRY]


def _try_gold_lease(
    db: Session, project: Project, user_id: int, item_id: int, now: datetime, ttl: timedelta
) -> bool:
    if is_postgres(db):
        if db.scalar(_LOCK_ITEM, {"item": item_id}) is None:
            return False
        if db.scalar(_GOLD_STILL_AVAILABLE, {"item": item_id, "a_user": user_id}) is not None:
            return False  # the same annotator's other tab took it meanwhile
    db.execute(
        _INSERT_LEASE,
        {"project_id": project.id, "item_id": item_id, "annotator_id": user_id,
         "expires_at": now + ttl, "created_at": now},
    )
    return True


def _hand_out_params(
    project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> dict[str, Any]:
    return {"a_project": project.id, "a_user": user_id, "a_now": now,
            "per_item": max(1, project.annotations_per_item), "exclude": list(exclude)}


def _is_shared(project: Project) -> bool:
    return project.annotations_per_item > 1


def _queue_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    params = _hand_out_params(project, user_id, exclude, now)
    params["queue_version"] = project.queue_version
    return list(db.scalars(_queue_query(_is_shared(project)), params))


def _returned_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    params = _hand_out_params(project, user_id, exclude, now)
    return list(dict.fromkeys(db.scalars(_returned_query(_is_shared(project)), params)))


def _pool_candidates(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> list[int]:
    """Unlabelled pool items from a random starting id onwards (then wrapping around).

    ``ORDER BY random()`` would sort the whole pool on every request; a random pivot on the
    ``(project_id, split, id)`` index costs one index seek.
    """
    low = db.scalar(_POOL_LOW, {"a_project": project.id})
    high = db.scalar(_POOL_HIGH, {"a_project": project.id})
    if low is None or high is None:
        return []
    params = _hand_out_params(project, user_id, exclude, now)
    params["pivot"] = _random.randint(low, high)
    found: list[int] = []
    for from_pivot in (True, False):
        params["limit"] = CANDIDATES_PER_TRY - len(found)
        found.extend(db.scalars(_pool_query(_is_shared(project), from_pivot), params))
        if len(found) >= CANDIDATES_PER_TRY:
            break
    return found


def _still_available(
    db: Session, project: Project, user_id: int, item_id: int, now: datetime
) -> bool:
    """Fresh re-check after taking the row lock (sees leases committed meanwhile)."""
    params = _hand_out_params(project, user_id, (), now)
    params["item"] = item_id
    return db.scalar(_still_available_query(_is_shared(project)), params) is not None


def _try_lease(
    db: Session, project: Project, user_id: int, item_id: int, now: datetime, ttl: timedelta
) -> bool:
    if is_postgres(db):
        if db.scalar(_LOCK_ITEM, {"item": item_id}) is None:
            return False  # another annotator is taking it right now
        if not _still_available(db, project, user_id, item_id, now):
            return False
    # On SQLite the candidate query ran in this same write-locked transaction: still true.
    db.execute(
        _INSERT_LEASE,
        {"project_id": project.id, "item_id": item_id, "annotator_id": user_id,
         "expires_at": now + ttl, "created_at": now},
    )
    return True


def _lease_overlap(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime,
    ttl: timedelta,
) -> Leased | None:
    """An overlap item for this annotator (:mod:`.overlap`): one that still needs annotators,
    else, when the share calls for one, a new one from across the queue's score range."""
    if project.overlap_rate <= 0:
        return None
    for fresh in (False, True):
        if fresh and not due(db, project):
            return None
        find = fresh_candidates if fresh else open_candidates
        for item_id in find(db, project, user_id, exclude, now):
            if is_postgres(db) and (
                db.scalar(_LOCK_ITEM, {"item": item_id}) is None
                or not still_available(db, project, user_id, item_id, now, fresh=fresh)
            ):
                continue
            db.execute(
                _INSERT_LEASE,
                {"project_id": project.id, "item_id": item_id, "annotator_id": user_id,
                 "expires_at": now + ttl, "created_at": now},
            )
            if fresh:
                mark(db, project, item_id)
            return Leased(item_id, now + ttl)
    return None


def _stop_reason(db: Session, project: Project) -> NoItem | None:
    if project.stopped:
        return NoItem("stopped", "The project lead has stopped labelling for this project.")
    if budget_plan(project).spent(labels_used(db, project.id)):
        return NoItem(
            "budget_spent",
            f"The label budget of {project.label_budget} is spent. Ask the project lead to "
            "raise it if more labels would help.",
        )
    return None


@dataclass(frozen=True)
class Leased:
    """An item now leased to the annotator (or already held by them) and when the lease ends."""

    item_id: int
    expires_at: datetime


def lease_next(
    db: Session,
    project: Project,
    user: User,
    *,
    lease_seconds: int,
    exclude: Collection[int] = (),
    now: datetime | None = None,
) -> Leased | NoItem:
    """Lease the item this annotator should label next; the writes only, nothing to show yet.

    First an item they already hold (a reload must not lose it) that the page does not show yet
    (``exclude``: the items on screen or prefetched), else now and then a gold item they have not
    seen (:func:`_gold_candidates`), else an item a reviewer sent back, else an overlap item
    short of annotators or due to be marked (:func:`_lease_overlap`), else the best queue entry
    nobody holds, else
    a random unlabelled pool item (labelling can start before any queue exists). A caller that
    commits right after this (the annotator view does) holds the SQLite write lock only for the
    lease itself, not while the item card is read and rendered.
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
    for item_id in _gold_candidates(db, project, user.id, exclude, now):
        if _try_gold_lease(db, project, user.id, item_id, now, ttl):
            return Leased(item_id, now + ttl)
    for item_id in _returned_candidates(db, project, user.id, exclude, now):
        if _try_lease(db, project, user.id, item_id, now, ttl):
            return Leased(item_id, now + ttl)
    overlap_lease = _lease_overlap(db, project, user.id, exclude, now, ttl)
    if overlap_lease is not None:
        return overlap_lease
    for source in (_queue_candidates, _pool_candidates):
        for item_id in source(db, project, user.id, exclude, now):
            if _try_lease(db, project, user.id, item_id, now, ttl):
                return Leased(item_id, now + ttl)
    return NoItem(
        "exhausted",
        "Every pool item is labelled or being labelled by someone else. New items appear when "
        "data is imported or a teammate's lease expires.",
    )


def show(db: Session, project: Project, leased: Leased | NoItem) -> ItemView | NoItem:
    """What the item card shows for the outcome of :func:`lease_next`."""
    if isinstance(leased, NoItem):
        return leased
    return item_view(db, project, leased.item_id, leased.expires_at)


def next_item(
    db: Session,
    project: Project,
    user: User,
    *,
    lease_seconds: int,
    exclude: Collection[int] = (),
    now: datetime | None = None,
) -> ItemView | NoItem:
    """:func:`lease_next`, then the item card (in the same transaction)."""
    leased = lease_next(db, project, user, lease_seconds=lease_seconds, exclude=exclude, now=now)
    return show(db, project, leased)


_HELD = (
    select(Lease.item_id, Lease.expires_at)
    .where(
        Lease.project_id == bindparam("a_project"),
        Lease.annotator_id == bindparam("a_user"),
        Lease.expires_at > bindparam("a_now"),
        Lease.item_id.not_in(bindparam("exclude", expanding=True)),
        ~exists().where(
            Annotation.project_id == bindparam("a_project"),
            Annotation.item_id == Lease.item_id,
            Annotation.annotator_id == bindparam("a_user"),
            live(),
        ),
    )
    .order_by(Lease.id)
    .limit(1)
)


def _held_item(
    db: Session, project: Project, user_id: int, exclude: Collection[int], now: datetime
) -> Leased | None:
    params = {"a_project": project.id, "a_user": user_id, "a_now": now, "exclude": list(exclude)}
    row = db.execute(_HELD, params).first()
    return None if row is None else Leased(row.item_id, row.expires_at)


_ITEM = select(Item.id, Item.text, Item.external_id).where(Item.id == bindparam("item"))
_LATEST_ENTRY = (
    select(
        QueueEntry.queue_version,
        QueueEntry.strategy,
        QueueEntry.score,
        QueueEntry.reason,
        QueueEntry.rank,
        QueueEntry.predicted,
        QueueEntry.neighbours,
    )
    .where(QueueEntry.project_id == bindparam("a_project"), QueueEntry.item_id == bindparam("item"))
    .order_by(QueueEntry.queue_version.desc())
    .limit(1)
)
_TEXTS = select(Item.id, Item.text).where(
    Item.project_id == bindparam("a_project"), Item.id.in_(bindparam("ids", expanding=True))
)


def item_view(
    db: Session,
    project: Project,
    item_id: int,
    expires_at: datetime,
    previous_label_id: int | None = None,
    previous_label_ids: tuple[int, ...] | None = None,
) -> ItemView:
    item = db.execute(_ITEM, {"item": item_id}).first()
    if item is None:
        raise NotFound(f"Item {item_id} no longer exists.")
    return ItemView(
        item_id=item.id,
        text=item.text,
        external_id=item.external_id,
        lease_expires_at=expires_at,
        why=_why(db, project, item.id),
        previous_label_id=previous_label_id,
        previous_label_ids=previous_label_ids,
        review_note=db.scalar(_REVIEW_NOTE, {"a_project": project.id, "item": item.id}) or None,
    )


_REVIEW_NOTE = (
    select(ReviewDecision.note)
    .where(
        ReviewDecision.project_id == bindparam("a_project"),
        ReviewDecision.item_id == bindparam("item"),
        ReviewDecision.active.is_(True),
        ReviewDecision.action == REVIEW_SEND_BACK,
    )
    .order_by(ReviewDecision.id.desc())
    .limit(1)
)


def _why(db: Session, project: Project, item_id: int) -> WhyThisItem:
    entry = db.execute(_LATEST_ENTRY, {"a_project": project.id, "item": item_id}).first()
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
        neighbours=tuple(_neighbours(db, project, entry.neighbours)),
    )


def _predictions(raw: list[Any]) -> list[Prediction]:
    """The worker's guesses; a multi-label queue entry adds each label's ``threshold`` and
    whether the label is ``proposed`` (reaching the threshold, when the entry does not say)."""
    out = []
    for entry in raw or []:
        if isinstance(entry, dict) and "label" in entry and "prob" in entry:
            try:
                prob = float(entry["prob"])
                threshold = _optional_float(entry.get("threshold"))
            except (TypeError, ValueError):
                continue
            proposed = entry.get("proposed")
            if not isinstance(proposed, bool):
                proposed = None if threshold is None else prob >= threshold
            out.append(Prediction(str(entry["label"]), prob, threshold, proposed))
    return out


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _label_names(value: Any) -> tuple[str, ...] | None:
    """A multi-label neighbour's set (``None`` when the entry carries none: a single label)."""
    if not isinstance(value, list | tuple):
        return None
    return tuple(str(name) for name in value)


def _neighbours(db: Session, project: Project, raw: list[Any]) -> list[Neighbour]:
    """The labelled exemplars the worker stored, less any overlap item still short of annotators
    (its label must not reach an annotator who may yet be handed it)."""
    rows = [n for n in raw or [] if isinstance(n, dict) and isinstance(n.get("item_id"), int)]
    if not rows:
        return []
    ids = [n["item_id"] for n in rows]
    blind = hidden_from(db, project, None, ids)
    rows = [n for n in rows if n["item_id"] not in blind]
    ids = [n["item_id"] for n in rows]
    texts = dict(db.execute(_TEXTS, {"a_project": project.id, "ids": ids}).tuples().all())
    return [_neighbour(n, texts.get(n["item_id"], "")) for n in rows[:5] if n["item_id"] in texts]


def _neighbour(raw: dict[str, Any], text: str) -> Neighbour:
    labels = _label_names(raw.get("labels"))
    label = str(raw.get("label") or "")
    if not label and labels is not None:  # a set the worker did not spell out
        label = set_text(labels)
    return Neighbour(
        item_id=raw["item_id"],
        label=label,
        similarity=float(raw.get("similarity", 0.0)),
        snippet=snippet(text),
        labels=labels,
    )


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
