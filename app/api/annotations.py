"""``/api/v1/projects/{id}/annotations``: push labels (idempotently), list them, export them.

Labels are recorded as the token's user; see :mod:`app.domain.label_submissions` for idempotency
(``Idempotency-Key`` header or per-label ``idempotency_key``) and batch semantics. A multi-label
project takes and lists label sets (``labels`` or ``label_ids``; see
:mod:`app.domain.label_answers`); responses carry ``label`` or ``labels``, whichever the
project's task has.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StringConstraints

from app.api.common import StrictInput, decode_cursor, encode_cursor, write_api_router
from app.deps import ProjectAnnotator, ProjectReader, SessionDep, SettingsDep
from app.domain import exports
from app.domain.imports import LABEL_SEPARATOR
from app.domain.label_answers import AnswerRequest, submit_answers
from app.domain.label_submissions import MAX_KEY_CHARS

router = write_api_router(tags=["annotations"])

MAX_LABELS_PER_REQUEST = 1000
MAX_LABELS_PER_SET = 200
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LabelId = Annotated[int, Field(ge=1, le=2_147_483_647)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_CHARS)]
IdempotencyHeader = Annotated[
    Key | None,
    Header(alias="Idempotency-Key", description="Makes a retried request create nothing new."),
]
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Live annotations, one per line (JSONL) or row (CSV).",
        "content": {
            media: {"schema": {"type": "string"}} for media in exports.MEDIA_TYPES.values()
        },
    }
}


class LabelIn(StrictInput):
    label: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="A label name of the project (single-label projects).",
    )
    labels: list[LabelName] | None = Field(
        default=None, max_length=MAX_LABELS_PER_SET,
        description="Multi-label projects: the label names that apply; [] means none of them.",
    )
    label_ids: list[LabelId] | None = Field(
        default=None, max_length=MAX_LABELS_PER_SET,
        description="Multi-label projects: the label ids that apply; [] means none of them.",
    )
    item_id: int | None = Field(default=None, ge=1, le=2_147_483_647)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    idempotency_key: Key | None = None
    duration_ms: int | None = Field(default=None, ge=0, le=24 * 3600 * 1000)


class SubmitIn(StrictInput):
    annotations: list[LabelIn] = Field(min_length=1, max_length=MAX_LABELS_PER_REQUEST)
    submit: bool = Field(
        default=False, description="Close the current batch now (requests a retrain)."
    )


class SubmittedOut(BaseModel):
    annotation_id: int
    item_id: int
    label: str | None = Field(default=None, description="Single-label projects only.")
    labels: list[str] | None = Field(
        default=None, description="Multi-label projects only: the stored set ([]: none of these)."
    )
    replayed: bool = Field(description="True when an idempotency key was seen before.")


class SubmitOut(BaseModel):
    annotations: list[SubmittedOut]
    created: int
    replayed: int
    retrain_run_id: int | None


class AnnotationOut(BaseModel):
    annotation_id: int
    item_id: int
    external_id: str | None
    text: str
    label: str | None = Field(default=None, description="Single-label projects only.")
    labels: list[str] | None = Field(
        default=None, description="Multi-label projects only: the set ([]: none of these)."
    )
    split: str
    annotator_id: int | None
    annotator: str | None
    annotated_at: datetime
    model_version: int | None
    source: str
    duration_ms: int | None


class AnnotationPage(BaseModel):
    annotations: list[AnnotationOut]
    next_cursor: str | None


@router.post(
    "/projects/{project_id}/annotations", response_model=SubmitOut,
    response_model_exclude_unset=True,
)
def submit_annotations(
    body: SubmitIn,
    db: SessionDep,
    access: ProjectAnnotator,
    settings: SettingsDep,
    idempotency_key: IdempotencyHeader = None,
) -> SubmitOut:
    """Label items as the token's user; the same key sent again creates nothing new.

    Single-label projects take ``label``; multi-label projects take ``labels`` (names) or
    ``label_ids``, a set that may be empty (none of these). The wrong one is a 422."""
    requests = [
        AnswerRequest(
            item_id=entry.item_id,
            external_id=entry.external_id,
            label=entry.label,
            labels=None if entry.labels is None else tuple(entry.labels),
            label_ids=None if entry.label_ids is None else tuple(entry.label_ids),
            idempotency_key=entry.idempotency_key,
            duration_ms=entry.duration_ms,
        )
        for entry in body.annotations
    ]
    submission = submit_answers(
        db,
        access.project,
        access.user,
        requests,
        request_key=idempotency_key,
        token_id=access.principal.token.id if access.principal.token is not None else None,
        close_batch=body.submit,
        lease_seconds=settings.lease_seconds,
    )
    db.commit()  # in this thread: the SQLite write lock is let go here (take_write_lock)
    out = [
        SubmittedOut(**{name: value for name, value in vars(answer).items()
                        if not (name in ("label", "labels") and value is None)})
        for answer in submission.answers
    ]
    replayed = sum(1 for answer in out if answer.replayed)
    return SubmitOut(
        annotations=out,
        created=len(out) - replayed,
        replayed=replayed,
        retrain_run_id=submission.run.id if submission.run is not None else None,
    )


@router.get(
    "/projects/{project_id}/annotations", response_model=AnnotationPage,
    response_model_exclude_unset=True,
)
def list_annotations(
    db: SessionDep,
    access: ProjectReader,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    only: Annotated[exports.ExportFilter, Query()] = "all",
    item_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    annotator_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> AnnotationPage:
    """Live annotations in id order; pass ``next_cursor`` back as ``cursor`` for the next page.

    An annotator (project role) gets only their own; reviewers, leads and admins get all.
    Each carries ``label``, or ``labels`` (a set) in a multi-label project."""
    if not access.sees_others_labels:
        annotator_id = access.user.id
    rows = list(
        exports.annotation_rows(
            db, access.project.id, only=only, after_id=decode_cursor(cursor), limit=limit + 1,
            item_id=item_id, annotator_id=annotator_id,
        )  # fmt: skip
    )
    page = rows[:limit]
    return AnnotationPage(
        annotations=[_listed(row) for row in page],
        next_cursor=encode_cursor(page[-1].annotation_id) if len(rows) > limit else None,
    )


def _listed(row: exports.AnnotationRow) -> AnnotationOut:
    """``label`` for one label, ``labels`` for a multi-label set; the other field stays out."""
    fields = {name: getattr(row, name) for name in AnnotationOut.model_fields
              if name not in ("label", "labels")}
    if row.labels is None:
        fields["label"] = row.label
    else:
        fields["labels"] = list(row.labels)
    return AnnotationOut(**fields)


@router.get(
    "/projects/{project_id}/annotations/export",
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
)
def export_annotations(
    db: SessionDep,
    access: ProjectReader,
    format: Annotated[exports.ExportFormat, Query()] = "jsonl",
    only: Annotated[exports.ExportFilter, Query()] = "all",
    label_separator: Annotated[str, Query(
        min_length=1, max_length=20,
        description="Multi-label CSV: what joins the label names of a set in one cell (1-3 "
                    "characters, not ','); import the file with the same label_separator.",
    )] = LABEL_SEPARATOR,
) -> StreamingResponse:
    """Labels as JSONL or CSV (text, label, annotator, time, model version); importable as is.

    An annotator (project role) exports only their own labels."""
    spool = exports.write_export(
        db, access.project.id, fmt=format, only=only,
        annotator_id=None if access.sees_others_labels else access.user.id,
        label_separator=label_separator,
    )
    name = exports.export_filename(access.project.id, format, only)

    def chunks() -> Any:
        try:
            while chunk := spool.read(64 * 1024):
                yield chunk
        finally:
            spool.close()

    return StreamingResponse(
        chunks(),
        media_type=exports.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
