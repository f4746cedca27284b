"""REST clients' answers in the shape of the project's task: one label per item, or, in a
multi-label project, a set of labels (possibly empty: "none of these").

Single-label answers go to :func:`app.domain.label_submissions.submit_labels` unchanged. Label
sets get the same client guarantees here: the whole request is validated first (item lookup by
id or external id, label names or ids, each problem reported by field path), each set is stored
through :func:`app.domain.annotation.record_label`, and idempotency keys work the same way
(per label or per request; a replayed key returns the first annotation; reusing a key for
another item or another set is a 409).

Listings and exports read sets back through :func:`app.domain.exports.annotation_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.db.models import Label, Project, TrainingRun, User
from app.domain.annotation import batch_progress, submit_batch
from app.domain.annotation.common import project_labels
from app.domain.annotation.label_sets import (
    check_answer,
    is_multi_label,
    label_sets,
)
from app.domain.label_submissions import (  # one item lookup and error report for both
    IdempotencyKeyReused,
    LabelRequest,
    label_key,
    record_once,
    resolve_items,
    submit_labels,
)
from app.errors import InvalidInput


@dataclass(frozen=True)
class AnswerRequest:
    """One item's answer: ``label`` (single-label project) or ``labels``/``label_ids``
    (multi-label project; an empty list means none of them applies)."""

    item_id: int | None = None
    external_id: str | None = None
    label: str | None = None
    labels: tuple[str, ...] | None = None
    label_ids: tuple[int, ...] | None = None
    idempotency_key: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class SubmittedAnswer:
    annotation_id: int
    item_id: int
    replayed: bool
    label: str | None = None
    """Single-label projects."""
    labels: list[str] | None = None
    """Multi-label projects: the stored set, in the project's label order."""


@dataclass(frozen=True)
class AnswerSubmission:
    answers: list[SubmittedAnswer]
    run: TrainingRun | None
    """The retrain requested because a batch closed (automatically, or by ``close_batch``)."""


def submit_answers(
    db: Session,
    project: Project,
    user: User,
    requests: Sequence[AnswerRequest],
    *,
    request_key: str | None = None,
    token_id: int | None = None,
    close_batch: bool = False,
    lease_seconds: int = 900,
) -> AnswerSubmission:
    """Record ``requests`` as ``user`` (through API token ``token_id``); see the module doc."""
    _check_shapes(project, requests)
    if not is_multi_label(project):
        submission = submit_labels(
            db, project, user,
            [LabelRequest(label=r.label or "", item_id=r.item_id, external_id=r.external_id,
                          idempotency_key=r.idempotency_key, duration_ms=r.duration_ms)
             for r in requests],
            request_key=request_key, token_id=token_id, close_batch=close_batch,
            lease_seconds=lease_seconds,
        )  # fmt: skip
        return AnswerSubmission(
            [SubmittedAnswer(s.annotation_id, s.item_id, s.replayed, label=s.label)
             for s in submission.labels],
            submission.run,
        )
    labels = project_labels(db, project.id)
    items = resolve_items(db, project, [
        LabelRequest(label="", item_id=r.item_id, external_id=r.external_id) for r in requests
    ])
    sets = _wanted_sets(requests, labels)
    name_of = {label.id: label.name for label in labels}
    answers: list[SubmittedAnswer] = []
    run: TrainingRun | None = None
    for index, request in enumerate(requests):
        key = label_key(request_key, request.idempotency_key, index, len(requests))
        item_id, wanted = items[index], sets[index]
        annotation, replayed, closed = record_once(
            db, project, user, token_id, item_id, key, request.duration_ms, lease_seconds,
            label_ids=wanted,
        )
        if replayed and (annotation.item_id != item_id
                         or label_sets(db, [annotation.id])[annotation.id] != wanted):
            raise IdempotencyKeyReused(
                f"Idempotency key {key!r} was already used for a different item or label set.",
                details={"index": index, "idempotency_key": key,
                         "annotation_id": annotation.id},
            )
        run = closed or run
        answers.append(SubmittedAnswer(annotation.id, annotation.item_id, replayed,
                                       labels=[name_of[label_id] for label_id in wanted]))
    created = any(not answer.replayed for answer in answers)
    if close_batch and created and run is None and batch_progress(db, project, user).done:
        run = submit_batch(db, project, user, reason="batch submitted through the API")
    return AnswerSubmission(answers, run)


def _check_shapes(project: Project, requests: Sequence[AnswerRequest]) -> None:
    """Every answer must have the project's shape (:func:`check_answer`), reported by field."""
    multi = is_multi_label(project)
    problems: list[dict[str, Any]] = []
    for index, request in enumerate(requests):
        loc: list[str] = ["body", "annotations", str(index)]
        has_set = request.labels is not None or request.label_ids is not None
        if request.labels is not None and request.label_ids is not None:
            problems.append({"loc": loc, "message": "give one of labels, label_ids"})
            continue
        try:
            # The shape only (which fields are there): names and ids are checked afterwards.
            check_answer(project, 0 if request.label is not None else None,
                         () if has_set else None)
        except InvalidInput as error:
            if multi:
                field = ["label"] if request.label is not None else []
                message = f"{error.message} Label names work too, as labels (a list of names)."
            else:
                field = ["labels" if request.labels is not None else "label_ids"] if has_set \
                    else ["label"]
                message = error.message
            problems.append({"loc": [*loc, *field], "message": message})
    if problems:
        first = problems[0]
        raise InvalidInput(
            f"{len(problems)} answer(s) do not fit this {project.task_type.replace('_', '-')} "
            f"project (first: {'.'.join(first['loc'])}: {first['message']})",
            details={"errors": problems, "task_type": project.task_type},
        )


def _wanted_sets(requests: Sequence[AnswerRequest], labels: Sequence[Label]) -> list[list[int]]:
    """Each request's label ids, distinct and in the project's label order; every unknown name
    or id (another project's included) is reported, by field path, before anything is written."""
    by_name = {label.name: label.id for label in labels}
    position = {label.id: index for index, label in enumerate(labels)}
    problems: list[dict[str, Any]] = []
    sets: list[list[int]] = []
    for index, request in enumerate(requests):
        loc = ["body", "annotations", str(index)]
        wanted: set[int] = set()
        for j, name in enumerate(request.labels or ()):
            if name in by_name:
                wanted.add(by_name[name])
            else:
                problems.append({"loc": [*loc, "labels", str(j)],
                                 "message": f"{name!r} is not a label of this project"})
        for j, label_id in enumerate(request.label_ids or ()):
            if label_id in position:
                wanted.add(label_id)
            else:
                problems.append({"loc": [*loc, "label_ids", str(j)],
                                 "message": f"{label_id} is not a label of this project"})
        sets.append(sorted(wanted, key=position.__getitem__))
    if problems:
        raise InvalidInput(
            f"{len(problems)} label(s) are not in the project's label set (first: "
            f"{problems[0]['message']}; the labels: {', '.join(list(by_name)[:12])}).",
            details={"errors": problems, "labels": list(by_name)},
        )
    return sets
