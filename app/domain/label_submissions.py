"""Labels pushed by REST clients: many at once, by item id or external id, safely retried.

Each label goes through the annotator flow's :func:`app.domain.annotation.record_label` (so it
supersedes the caller's earlier label of the item, releases their lease, counts toward the
current batch, and closing a full batch requests a retrain). What this module adds is what a
*client* needs:

* **Idempotency.** A key per label (``idempotency_key``) or one per request (the
  ``Idempotency-Key`` header; label ``i`` of a multi-label request uses ``<key>:<i>``). A replayed
  key returns the annotation it created the first time and writes nothing. Reusing a key for a
  different item or label is a 409, not a silent replay. Keys are the caller's own: scoped by
  user and token (:func:`~app.domain.annotation.labels.idempotency_scope`), so another user (or
  another token) sending the same key stores their own label. Two concurrent requests with one
  key race on the ``(project_id, idempotency_scope, idempotency_key)`` unique index; the loser
  replays the winner's row.
* **Whole-request validation first**: unknown labels or items are reported together, by field
  path, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import Annotation, Item, Project, TrainingRun, User
from app.domain.annotation import batch_progress, record_label, submit_batch
from app.domain.annotation.common import project_labels
from app.domain.annotation.labels import find_by_key, idempotency_scope
from app.errors import Conflict, InvalidInput

MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class LabelRequest:
    label: str
    item_id: int | None = None
    external_id: str | None = None
    idempotency_key: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class SubmittedLabel:
    annotation_id: int
    item_id: int
    label: str
    replayed: bool


@dataclass(frozen=True)
class Submission:
    labels: list[SubmittedLabel]
    run: TrainingRun | None
    """The retrain requested because a batch closed (automatically, or by ``submit``)."""


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


def label_key(request_key: str | None, own_key: str | None, index: int, count: int) -> str | None:
    """The idempotency key of label ``index`` of ``count``."""
    if own_key:
        return own_key
    if not request_key:
        return None
    return request_key if count == 1 else f"{request_key}:{index}"


def submit_labels(
    db: Session,
    project: Project,
    user: User,
    requests: Sequence[LabelRequest],
    *,
    request_key: str | None = None,
    token_id: int | None = None,
    close_batch: bool = False,
    lease_seconds: int = 900,
) -> Submission:
    """Record ``requests`` as ``user`` (through API token ``token_id``; None: a session)."""
    labels = {label.name: label.id for label in project_labels(db, project.id)}
    items = resolve_items(db, project, requests)
    _check_labels(requests, labels)
    results: list[SubmittedLabel] = []
    run: TrainingRun | None = None
    for index, request in enumerate(requests):
        key = label_key(request_key, request.idempotency_key, index, len(requests))
        item_id, label_id = items[index], labels[request.label]
        annotation, replayed, closed = record_once(
            db, project, user, token_id, item_id, key, request.duration_ms, lease_seconds,
            label_id=label_id,
        )
        if replayed and (annotation.item_id, annotation.label_id) != (item_id, label_id):
            raise IdempotencyKeyReused(
                f"Idempotency key {key!r} was already used for a different item or label.",
                details={"index": index, "idempotency_key": key,
                         "annotation_id": annotation.id},
            )
        run = closed or run
        results.append(SubmittedLabel(annotation.id, annotation.item_id, request.label, replayed))
    created = any(not result.replayed for result in results)
    if close_batch and created and run is None and batch_progress(db, project, user).done:
        run = submit_batch(db, project, user, reason="batch submitted through the API")
    return Submission(results, run)


def record_once(
    db: Session,
    project: Project,
    user: User,
    token_id: int | None,
    item_id: int,
    key: str | None,
    duration_ms: int | None,
    lease_seconds: int,
    *,
    label_id: int | None = None,
    label_ids: Sequence[int] | None = None,
) -> tuple[Annotation, bool, TrainingRun | None]:
    """Record one label (or, in a multi-label project, one set); the loser of a race on one
    idempotency key replays the winner's annotation."""
    try:
        with db.begin_nested():
            result = record_label(
                db, project, user, item_id=item_id, label_id=label_id, label_ids=label_ids,
                duration_ms=duration_ms, idempotency_key=key, token_id=token_id,
                lease_seconds=lease_seconds,
            )  # fmt: skip
        return result.annotation, result.replayed, result.submitted_run
    except IntegrityError:
        if key is None:
            raise
        winner = find_by_key(db, project.id, idempotency_scope(user.id, token_id), key)
        if winner is None:
            raise
        return winner, True, None


def resolve_items(
    db: Session, project: Project, requests: Sequence[LabelRequest]
) -> list[int]:
    """The item id of each request (by id or external id, in this project); every unknown one
    reported at once by its field path. Shared with :mod:`app.domain.label_answers`."""
    by_id = {r.item_id for r in requests if r.item_id is not None}
    by_external = {r.external_id for r in requests if r.external_id is not None}
    known_ids = set(db.scalars(
        select(Item.id).where(Item.project_id == project.id, Item.id.in_(by_id))
    )) if by_id else set()
    externals: dict[str, list[int]] = {}
    if by_external:
        for item_id, external in db.execute(
            select(Item.id, Item.external_id).where(
                Item.project_id == project.id, Item.external_id.in_(by_external)
            )
        ):
            externals.setdefault(str(external), []).append(item_id)
    problems: list[tuple[list[str], str]] = []
    resolved: list[int] = []
    for index, request in enumerate(requests):
        loc = ["body", "annotations", str(index)]
        if (request.item_id is None) == (request.external_id is None):
            problems.append((loc, "give exactly one of item_id, external_id"))
            resolved.append(0)
        elif request.item_id is not None:
            if request.item_id not in known_ids:
                problems.append(([*loc, "item_id"], "no such item in this project"))
            resolved.append(request.item_id)
        else:
            matches = externals.get(str(request.external_id), [])
            if len(matches) != 1:
                why = "no item has this external_id" if not matches else (
                    f"{len(matches)} items share this external_id; use item_id")
                problems.append(([*loc, "external_id"], why))
            resolved.append(matches[0] if matches else 0)
    if problems:
        first_loc, first_message = problems[0]
        raise InvalidInput(
            f"{len(problems)} label(s) name no item of this project "
            f"(first: {'.'.join(first_loc)}: {first_message}).",
            details={"errors": [{"loc": loc, "message": msg} for loc, msg in problems]},
        )
    return resolved


def _check_labels(requests: Sequence[LabelRequest], labels: dict[str, int]) -> None:
    problems = [
        {"loc": ["body", "annotations", str(i), "label"],
         "message": f"{request.label!r} is not a label of this project"}
        for i, request in enumerate(requests)
        if request.label not in labels
    ]
    if problems:
        unknown = list(dict.fromkeys(r.label for r in requests if r.label not in labels))
        raise InvalidInput(
            f"{len(problems)} label(s) are not in the project's label set: "
            f"{_names(unknown)} (the labels: {', '.join(list(labels)[:12])}).",
            details={"errors": problems, "labels": list(labels)},
        )


def _names(values: Sequence[str], most: int = 5) -> str:
    """The first few unknown names, quoted, and how many more."""
    shown = ", ".join(repr(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")
