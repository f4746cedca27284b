"""``/api/v1/projects/{id}/data/...``: the data manager for REST clients (leads and admins).

Filters are query parameters named as in the browser (``q``, ``label``, ``annotator``, ``split``,
``labelled``, ``disagreement``, ``excluded``, ``predicted``, ``min_confidence``,
``max_confidence``); an unknown name is a 422, so a misspelt filter never widens a bulk action.
Every route needs a project lead (or an admin): with a token, the ``admin`` scope, because the
access layer's levels cannot tell "a lead reading" from "an annotator" (both read); a
``read``-scope token of a lead is refused (403).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Annotated, Any, Literal

from fastapi import Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.api.common import StrictInput, decode_cursor, encode_cursor, write_api_router
from app.api.router import NOT_SUPPORTED
from app.deps import MAX_DB_INT, ProjectLead, SessionDep
from app.domain import data_export
from app.domain import data_manager as dm
from app.domain.imports import LABEL_SEPARATOR

router = write_api_router(tags=["data manager"])
router.responses.update(NOT_SUPPORTED)
OWN_PARAMS = ("cursor", "limit", "count", "exact", "format")
EXPORT_PARAMS = (*OWN_PARAMS, "label_separator")


class VoteOut(BaseModel):
    annotation_id: int
    label: str
    annotator_id: int | None
    annotator: str | None
    source: str
    created_at: datetime


class PredictionOut(BaseModel):
    label: str
    confidence: float


class ItemRowOut(BaseModel):
    id: int
    external_id: str | None
    text: str
    split: str
    excluded: bool
    label: str | None
    disagreement: bool
    votes: list[VoteOut]
    prediction: PredictionOut | None


class ItemRowsPage(BaseModel):
    items: list[ItemRowOut]
    next_cursor: str | None
    total: int | None = Field(
        None,
        description=f"Matching items (only with count=true), counted up to {dm.COUNT_CAP:,} "
        "unless exact=true.",
    )
    total_capped: bool | None = Field(
        None, description="True when more items match than ``total`` (counting stopped there)."
    )


def _row(row: dm.Row) -> ItemRowOut:
    return ItemRowOut(
        id=row.id, external_id=row.external_id, text=row.text, split=row.split,
        excluded=row.excluded, label=row.label, disagreement=row.disagreement,
        votes=[VoteOut(**vars(v)) for v in row.votes],
        prediction=PredictionOut(**vars(row.prediction)) if row.prediction else None,
    )


def filters_from(request: Request) -> dict[str, Any]:
    return dm.parse_filters(request.query_params, strict=True, ignore=OWN_PARAMS)


@router.get("/projects/{project_id}/data/items", response_model=ItemRowsPage)
def browse_items(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=dm.MAX_PAGE_SIZE)] = dm.PAGE_SIZE,
    count: bool = False,
    exact: bool = False,
) -> ItemRowsPage:
    """Matching items in id order (keyset: pass ``next_cursor`` back as ``cursor``)."""
    filters = filters_from(request)
    page = dm.browse(db, access.project, filters, after_id=decode_cursor(cursor) or 0,
                     limit=limit, snippet_chars=None)
    total = (
        dm.count_matching(db, access.project, filters, cap=None if exact else dm.COUNT_CAP)
        if count else None
    )
    return ItemRowsPage(
        items=[_row(r) for r in page.rows],
        next_cursor=encode_cursor(page.next_after) if page.next_after is not None else None,
        total=total.value if total is not None else None,
        total_capped=total.capped if total is not None else None,
    )


class AnnotationHistoryOut(BaseModel):
    id: int
    label: str
    annotator: str | None
    source: str
    created_at: datetime
    status: str
    batch_id: str | None


class PredictionHistoryOut(BaseModel):
    queue_version: int
    model_version: int | None
    rank: int
    score: float
    strategy: str
    reason: str
    predicted: list[Any]
    current: bool


class EventOut(BaseModel):
    action: str
    actor: str | None
    detail: dict[str, Any]
    created_at: datetime


class ItemDetailOut(BaseModel):
    id: int
    external_id: str | None
    text: str
    split: str
    excluded: bool
    label: str | None
    annotations: list[AnnotationHistoryOut]
    predictions: list[PredictionHistoryOut]
    events: list[EventOut]


@router.get("/projects/{project_id}/data/items/{item_id}", response_model=ItemDetailOut)
def item_history(
    db: SessionDep, access: ProjectLead,
    item_id: Annotated[int, Path(ge=1, le=2_147_483_647)],
) -> ItemDetailOut:
    """One item with every annotation (live, superseded, undone), prediction and change."""
    detail = dm.item_detail(db, access.project, item_id)
    item = detail.item
    return ItemDetailOut(
        id=item.id, external_id=item.external_id, text=item.text, split=item.split,
        excluded=item.excluded, label=detail.label,
        annotations=[AnnotationHistoryOut(**vars(a)) for a in detail.annotations],
        predictions=[PredictionHistoryOut(**vars(p)) for p in detail.predictions],
        events=[EventOut(**vars(e)) for e in detail.events],
    )


class BulkIn(StrictInput):
    action: Literal["relabel", "move", "exclude", "include", "delete"]
    item_ids: list[Annotated[int, Field(ge=1, le=MAX_DB_INT)]] | None = Field(
        None, max_length=dm.MAX_SELECTION,
        description="The selection; omit to act on every item matching `filters`.",
    )
    filters: dict[str, str] = Field(default_factory=dict)
    label: str | None = Field(None, max_length=200,
                              description="For relabel in a single-label project.")
    label_ids: list[Annotated[int, Field(ge=1, le=MAX_DB_INT)]] | None = Field(
        None, max_length=200,
        description="For relabel in a multi-label project: the new label set (replaces each "
                    "item's set); [] means none of these.")
    labels: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=200,
        description="For relabel in a multi-label project: the new set by label name.")
    split: str | None = Field(None, max_length=10, description="For move: pool, dev or test.")
    confirm: bool = Field(False, description="Delete even when annotations would be lost.")


class BulkOut(BaseModel):
    action: str
    items: int
    changed: int
    annotations_added: int
    annotations_superseded: int
    annotations_deleted: int
    message: str


@router.post("/projects/{project_id}/data/bulk", response_model=BulkOut)
def bulk_action(body: BulkIn, db: SessionDep, access: ProjectLead) -> BulkOut:
    """Relabel, move, exclude/include or delete a selection or a whole filter; 409
    ``confirmation_required`` (nothing changed) when a delete would lose annotations."""
    target = dm.Target(
        filters=dm.parse_filters(body.filters, strict=True),
        item_ids=tuple(body.item_ids) if body.item_ids is not None else None,
    )
    result = dm.run_bulk_action(db, access.project, access.user, target, body.action,
                                label=body.label, split=body.split, confirm=body.confirm,
                                label_ids=body.label_ids, labels=body.labels)
    return BulkOut(**vars(result), message=result.summary())


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {media: {} for media in set(data_export.MEDIA_TYPES.values())}}
}


def stream_file(spool: IO[bytes], media_type: str, filename: str) -> StreamingResponse:
    def chunks() -> Iterator[bytes]:
        try:
            while chunk := spool.read(64 * 1024):
                yield chunk
        finally:
            spool.close()

    return StreamingResponse(
        chunks(), media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/projects/{project_id}/data/export", response_class=StreamingResponse,
            responses=EXPORT_RESPONSES)
def export_items(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    format: Annotated[Literal["csv", "jsonl", "label_studio", "prodigy", "hf"], Query()] = "jsonl",
    label_separator: Annotated[str, Query(
        min_length=1, max_length=20,
        description="Multi-label CSV: what joins the label names of a set in one cell (1-3 "
                    "characters, not ','); import the file with the same label_separator.",
    )] = LABEL_SEPARATOR,
) -> StreamingResponse:
    """The matching items with labels, every annotation, flags and predictions; ``hf`` is a zip
    of a Hugging Face ``datasets`` folder."""
    filters = dm.parse_filters(request.query_params, strict=True, ignore=EXPORT_PARAMS)
    spool = data_export.write_export(db, access.project, filters, format, label_separator)
    return stream_file(spool, data_export.MEDIA_TYPES[format],
                       data_export.export_filename(access.project, format))
