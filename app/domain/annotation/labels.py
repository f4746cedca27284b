"""Recording labels, undo and edits. History is never destroyed: undo marks an annotation
``deleted``, an edit supersedes it (``superseded_by_id``); a repeated idempotency key (a browser
retry) stores nothing new."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    Annotation,
    Item,
    Label,
    Lease,
    Project,
    User,
)
from app.domain.annotation.batches import close_batch_if_full
from app.domain.annotation.common import batch_id_for, take_write_lock
from app.domain.annotation.label_sets import (
    check_answer,
    is_multi_label,
    label_sets,
    project_label_set,
    store_label_set,
)
from app.domain.annotation.leases import item_view
from app.domain.annotation.views import (
    UI_SOURCE,
    ItemView,
    LabelResult,
    RecentLabel,
    clamp_duration,
    snippet,
)
from app.domain.live_head import request_live_refit
from app.domain.policy import live
from app.errors import Conflict, InvalidInput, NotFound


def _project_label(db: Session, project: Project, label_id: int) -> Label:
    label = db.get(Label, label_id)
    if label is None or label.project_id != project.id:
        raise InvalidInput(
            f"Label {label_id} is not one of this project's labels.", details={"label_id": label_id}
        )
    return label


# Built once with bind parameters: labelling is the other half of every keystroke (see .leases).
_BY_KEY = select(Annotation).where(
    Annotation.project_id == bindparam("a_project"),
    Annotation.idempotency_scope == bindparam("scope"),
    Annotation.idempotency_key == bindparam("key"),
)
_ITEM_IN_PROJECT = select(Item.id).where(
    Item.id == bindparam("item"), Item.project_id == bindparam("a_project")
)
_MY_LEASE = select(Lease.id, Lease.expires_at, Lease.created_at).where(
    Lease.item_id == bindparam("item"), Lease.annotator_id == bindparam("a_user")
)
_DELETE_LEASE = delete(Lease).where(Lease.id == bindparam("lease")).execution_options(
    synchronize_session=False
)
_MY_LIVE = (
    select(Annotation)
    .where(
        Annotation.project_id == bindparam("a_project"),
        Annotation.item_id == bindparam("item"),
        Annotation.annotator_id == bindparam("a_user"),
        live(),
    )
    .order_by(Annotation.id.desc())
    .limit(1)
)
_RENEW = (
    update(Lease)
    .where(
        Lease.project_id == bindparam("a_project"),
        Lease.annotator_id == bindparam("a_user"),
        Lease.expires_at > bindparam("a_now"),
    )
    .values(expires_at=bindparam("until"))
    .execution_options(synchronize_session=False)
)
RECENT_TEXT_CHARS = 600
"""How much of each recent label's text the annotator view gets: two lines are shown, the rest on
hover or focus, enough to recognise the item to correct."""

_RECENT = (
    select(Annotation.id, Annotation.item_id, Annotation.label_id, Item.text, Annotation.created_at)
    .join(Item, Item.id == Annotation.item_id)
    .where(
        Annotation.project_id == bindparam("a_project"),
        Annotation.annotator_id == bindparam("a_user"),
        Annotation.source == UI_SOURCE,
        live(),
    )
    .order_by(Annotation.id.desc())
    .limit(bindparam("limit"))
)


def idempotency_scope(user_id: int, token_id: int | None) -> str:
    """Whose idempotency keys these are: one user through one token, or through the browser.

    Keys are chosen by clients (``nightly-<date>``), so two people, or one person's two
    tokens, can pick the same key; each must get their own label stored, never another's replayed.
    """
    return f"u{user_id}" if token_id is None else f"u{user_id}.t{token_id}"


def find_by_key(db: Session, project_id: int, scope: str, key: str) -> Annotation | None:
    """The annotation a caller's idempotency key created in this project, if any."""
    params = {"a_project": project_id, "scope": scope, "key": key}
    return db.scalars(_BY_KEY, params).first()


def _my_live_annotation(
    db: Session, project_id: int, user_id: int, item_id: int
) -> Annotation | None:
    params = {"a_project": project_id, "item": item_id, "a_user": user_id}
    return db.scalars(_MY_LIVE, params).first()


def record_label(
    db: Session,
    project: Project,
    user: User,
    *,
    item_id: int,
    label_id: int | None = None,
    label_ids: Sequence[int] | None = None,
    duration_ms: int | None = None,
    idempotency_key: str | None = None,
    token_id: int | None = None,
    lease_seconds: int = 900,
    now: datetime | None = None,
) -> LabelResult:
    """Store a label (``label_id``), or in a multi-label project a set of labels (``label_ids``;
    empty: none of them applies). The same ``idempotency_key`` twice stores it once (browser
    retries).

    Keys belong to the caller: ``user`` through ``token_id`` (None: a browser session).

    Labelling an item the annotator already labelled supersedes their earlier annotation. The
    label is stored even when the lease has expired meanwhile: the person did the work.
    """
    check_answer(project, label_id, label_ids)
    now = now or utcnow()
    key = (idempotency_key or "").strip()[:200] or None
    scope = idempotency_scope(user.id, token_id) if key is not None else None
    take_write_lock(db, project.id)
    if key is not None and scope is not None:
        seen = find_by_key(db, project.id, scope, key)
        if seen is not None:
            return LabelResult(annotation=seen, replayed=True)
    if db.scalar(_ITEM_IN_PROJECT, {"item": item_id, "a_project": project.id}) is None:
        raise NotFound(f"Item {item_id} is not in this project.", details={"item_id": item_id})
    if label_id is not None:
        _project_label(db, project, label_id)
    label_set = project_label_set(db, project, label_ids or ())
    lease = db.execute(_MY_LEASE, {"item": item_id, "a_user": user.id}).first()
    duration = clamp_duration(duration_ms)
    if duration is None and lease is not None and lease.expires_at > now:
        duration = clamp_duration(int((now - lease.created_at).total_seconds() * 1000))
    previous = _my_live_annotation(db, project.id, user.id, item_id)
    annotation = Annotation(
        project_id=project.id,
        item_id=item_id,
        annotator_id=user.id,
        label_id=label_id,
        duration_ms=duration,
        source=UI_SOURCE,
        model_version_id=project.current_model_version_id,
        queue_version=project.queue_version,
        guideline_version=project.guidelines_version,
        batch_id=batch_id_for(project.data_version),
        idempotency_key=key,
        idempotency_scope=scope,
        created_at=now,
    )
    db.add(annotation)
    db.flush()
    if label_ids is not None:
        store_label_set(db, annotation.id, label_set)
    if previous is not None:
        previous.superseded_by_id = annotation.id
    if lease is not None:
        db.execute(_DELETE_LEASE, {"lease": lease.id})
    _renew_leases(db, project.id, user.id, now, timedelta(seconds=lease_seconds))
    db.flush()
    request_live_refit(db, project.id)
    run = close_batch_if_full(db, project, user)
    return LabelResult(annotation=annotation, replayed=False, submitted_run=run)


def _renew_leases(
    db: Session, project_id: int, user_id: int, now: datetime, ttl: timedelta
) -> None:
    """An annotator who keeps labelling keeps the items on their screen (current + prefetched)."""
    db.execute(
        _RENEW, {"a_project": project_id, "a_user": user_id, "a_now": now, "until": now + ttl}
    )


def undo_last(
    db: Session,
    project: Project,
    user: User,
    *,
    lease_seconds: int,
    now: datetime | None = None,
) -> ItemView:
    """Take back the annotator's most recent label and hand that item back to them.

    In a multi-label project the item comes back with the undone set, so the annotator sees
    what they had chosen and Enter puts it back.

    The annotation is marked ``deleted`` (kept for the record). If it had superseded an earlier
    annotation (an edit), that one becomes live again. Repeated undos walk back in time.
    """
    now = now or utcnow()
    take_write_lock(db, project.id)
    last = db.scalars(
        select(Annotation)
        .where(
            Annotation.project_id == project.id,
            Annotation.annotator_id == user.id,
            Annotation.source == UI_SOURCE,
            live(),
        )
        .order_by(Annotation.id.desc())
        .limit(1)
    ).first()
    if last is None:
        raise Conflict("There is no label of yours to undo.")
    last.deleted = True
    db.execute(
        update(Annotation)
        .where(Annotation.superseded_by_id == last.id)
        .values(superseded_by_id=None)
        .execution_options(synchronize_session=False)
    )
    expires = now + timedelta(seconds=lease_seconds)
    lease = db.scalars(
        select(Lease).where(Lease.item_id == last.item_id, Lease.annotator_id == user.id)
    ).first()
    if lease is None:
        db.add(
            Lease(
                project_id=project.id,
                item_id=last.item_id,
                annotator_id=user.id,
                expires_at=expires,
                created_at=now,
            )
        )
    else:
        lease.expires_at = expires
        lease.created_at = now
    db.flush()
    request_live_refit(db, project.id)
    previous_set = (
        tuple(label_sets(db, [last.id])[last.id]) if is_multi_label(project) else None
    )
    return item_view(db, project, last.item_id, expires, previous_label_id=last.label_id,
                     previous_label_ids=previous_set)


def edit_annotation(
    db: Session,
    project: Project,
    user: User,
    *,
    annotation_id: int,
    label_id: int | None = None,
    label_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> Annotation:
    """Change one of the annotator's own live labels (or label set, in a multi-label project): a
    new annotation supersedes the old one."""
    check_answer(project, label_id, label_ids)
    now = now or utcnow()
    take_write_lock(db, project.id)
    old = db.get(Annotation, annotation_id)
    if (
        old is None
        or old.project_id != project.id
        or old.annotator_id != user.id
        or old.deleted
        or old.superseded_by_id is not None
    ):
        raise NotFound(
            "That label is not one of your current labels.",
            details={"annotation_id": annotation_id},
        )
    if label_ids is not None:
        label_set = project_label_set(db, project, label_ids)
        if label_sets(db, [old.id])[old.id] == label_set:
            return old
    else:
        assert label_id is not None
        _project_label(db, project, label_id)
        if old.label_id == label_id:
            return old
    new = Annotation(
        project_id=project.id,
        item_id=old.item_id,
        annotator_id=user.id,
        label_id=label_id,
        source=UI_SOURCE,
        model_version_id=project.current_model_version_id,
        queue_version=project.queue_version,
        guideline_version=project.guidelines_version,
        batch_id=batch_id_for(project.data_version),
        created_at=now,
    )
    db.add(new)
    db.flush()
    if label_ids is not None:
        store_label_set(db, new.id, label_set)
    old.superseded_by_id = new.id
    db.flush()
    request_live_refit(db, project.id)
    return new


def recent_labels(
    db: Session, project: Project, user: User, *, limit: int = 8
) -> list[RecentLabel]:
    rows = db.execute(
        _RECENT, {"a_project": project.id, "a_user": user.id, "limit": limit}
    ).tuples()
    listed = list(rows)
    sets = label_sets(db, [a for a, _i, lab, _t, _c in listed if lab is None])
    return [
        RecentLabel(
            annotation_id=a, item_id=i, label_id=lab, snippet=snippet(text, RECENT_TEXT_CHARS),
            created_at=created, label_ids=sets.get(a),
        )
        for a, i, lab, text, created in listed
    ]
