"""``/api/v1/projects/{id}/items``: import data (leads) and page through items (members).

Import accepts either ``multipart/form-data`` (field ``file`` plus the mapping fields) or the raw
file as the request body (``Content-Type: text/csv``, ``text/tab-separated-values`` or
``application/x-ndjson``) with the mapping in the query string. Either way the body is spooled to a
temporary file while it streams in, never held in memory, and the import is all-or-nothing.

A multi-label project's label column holds a set: a JSON list in JSONL, names joined by
``label_separator`` (default ``|``) in CSV/TSV, ``[]`` for none of these (see
:mod:`app.domain.imports`).
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from typing import IO, Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.common import write_api_router
from app.api.router import NOT_SUPPORTED
from app.db.models import SPLITS, Item
from app.deps import MAX_DB_INT, ProjectLead, ProjectReader, SessionDep, SettingsDep
from app.domain.imports import (
    ColumnMapping,
    ImportOptions,
    ImportReport,
    detect_format,
    import_items,
)
from app.errors import InvalidInput

router = write_api_router(tags=["items"])
router.responses.update(NOT_SUPPORTED)

SPOOL_IN_MEMORY_BYTES = 1024 * 1024


class ImportReportOut(BaseModel):
    rows: int
    created: int
    duplicates_in_file: int
    duplicates_in_project: int
    annotations: int
    carved_dev: int
    by_split: dict[str, int]
    per_label: dict[str, int]
    existing_labelled: int = Field(description="Rows already in the project that the file labels.")
    existing_label_differs: int = Field(
        description="... whose label is not one the item already carries."
    )
    existing_label_differs_lines: list[int] = Field(
        description="Their line numbers (the first 100)."
    )
    existing_labels_applied: int = Field(
        description="Labels applied to existing rows as seed annotations (on_existing=apply)."
    )
    none_of_these: int = Field(
        default=0, description="Multi-label: new rows labelled with the empty set ([])."
    )
    gold: int = Field(default=0, description="Rows made gold items from the gold column.")
    on_existing: str
    batch_id: str


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    external_id: str | None
    text: str
    split: str
    meta: dict[str, Any]
    created_at: datetime


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_after_id: int | None


async def _spool_body(request: Request) -> IO[bytes]:
    # Closed by the caller once the import has read it (twice).
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)
    return spool


@router.post("/projects/{project_id}/items", response_model=ImportReportOut, status_code=201)
async def import_project_items(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    settings: SettingsDep,
    text_column: Annotated[str, Query(max_length=200)] = "text",
    label_column: Annotated[str, Query(max_length=200)] = "",
    id_column: Annotated[str, Query(max_length=200)] = "",
    split_column: Annotated[str, Query(max_length=200)] = "",
    gold_column: Annotated[
        str, Query(max_length=200, description="Column with the answer of gold rows.")
    ] = "",
    format: Annotated[str, Query(max_length=10)] = "auto",
    dev_fraction: Annotated[float, Query(ge=0, lt=1)] = 0.0,
    seed: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    on_existing: Annotated[
        Literal["keep", "apply"],
        Query(description="Rows already in the project: keep their labels (default) or apply "
                          "the file's label as a seed annotation by you."),
    ] = "keep",
    label_separator: Annotated[
        str,
        Query(max_length=20, description="Multi-label projects: what separates label names in "
                                         "one label cell (default '|' in CSV/TSV; JSONL strings "
                                         "are split only when it is given)."),
    ] = "",
) -> ImportReportOut:
    """Import CSV/TSV/JSONL rows; 422 with line-numbered errors when any row is invalid."""
    fields: dict[str, Any] = {
        "text_column": text_column, "label_column": label_column, "id_column": id_column,
        "split_column": split_column, "format": format, "dev_fraction": dev_fraction,
        "seed": seed, "on_existing": on_existing, "gold_column": gold_column,
        "label_separator": label_separator,
    }
    content_type = request.headers.get("content-type", "")
    filename: str | None = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("Send the data as a multipart field named 'file'.",
                               details={"field": "file"})
        for key in fields:
            value = form.get(key)
            if isinstance(value, str) and value != "":
                fields[key] = value
        source: IO[bytes] = upload.file
        filename, content_type = upload.filename, upload.content_type or ""
    else:
        source = await _spool_body(request)
    try:
        options = ImportOptions(
            format=detect_format(filename, content_type, str(fields["format"])),
            mapping=ColumnMapping(
                text=str(fields["text_column"]), label=str(fields["label_column"]),
                id=str(fields["id_column"]), split=str(fields["split_column"]),
                gold=str(fields["gold_column"]),
            ),
            dev_fraction=_float(fields["dev_fraction"], "dev_fraction"),
            seed=_int(fields["seed"], "seed"),
            max_text_chars=settings.max_text_chars,
            on_existing=str(fields["on_existing"]),  # type: ignore[arg-type]  # checked there
            label_separator=str(fields["label_separator"]) or None,
        )
        report: ImportReport = await run_in_threadpool(
            import_items, db, project=access.project, user=access.user, source=source,
            options=options,
        )
    finally:
        source.close()
    return ImportReportOut(**report.as_dict())


def _float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number.", details={"field": name}) from None


def _int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a whole number.", details={"field": name}) from None
    if not 0 <= number <= MAX_DB_INT:
        raise InvalidInput(f"{name} must be between 0 and {MAX_DB_INT}.", details={"field": name})
    return number


@router.get("/projects/{project_id}/items", response_model=ItemPage)
def list_project_items(
    db: SessionDep,
    access: ProjectReader,
    after_id: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    split: Annotated[str | None, Query(max_length=10)] = None,
) -> ItemPage:
    """Items in id order, keyset-paginated: pass ``next_after_id`` back as ``after_id``."""
    if split is not None and split not in SPLITS:
        raise InvalidInput(f"split must be one of {', '.join(SPLITS)}.", details={"field": "split"})
    query = (
        select(Item)
        .where(Item.project_id == access.project.id, Item.id > after_id)
        .order_by(Item.id)
        .limit(limit + 1)
    )
    if split is not None:
        query = query.where(Item.split == split)
    rows = list(db.scalars(query))
    has_more = len(rows) > limit
    rows = rows[:limit]
    return ItemPage(
        items=[ItemOut.model_validate(item) for item in rows],
        next_after_id=rows[-1].id if has_more and rows else None,
    )
