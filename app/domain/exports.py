"""Labels out: page through annotations, and export them as JSONL or CSV.

Only *live* annotations count (not undone, not superseded by an edit). Filters:

* ``all`` — every live annotation;
* ``agreed`` — annotations of items whose live annotations all carry the same label (an item
  labelled once agrees with itself);
* ``gold`` — seed labels that came in with an import (``source = "seed"``).

Each row names the text, label, annotator, time and the model version that was current when the
item was labelled (the one whose queue handed it out). The columns match what the importer reads
(``text``, ``label``, ``split``, ``external_id``), so an export imports into a new project as is.
CSV cells that a spreadsheet would run as a formula (a text or label starting with ``=``, ``+``,
``-``, ``@``, tab or CR) get a leading ``'`` (:mod:`app.security.spreadsheet`); JSONL is exact.

Exports are written to a spooled temporary file while the request's session is open (rows are
streamed from the database in chunks), then streamed to the client: memory stays flat for large
projects and no second database session is needed.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import IO, Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from app.db.models import Annotation, Item, Label, ModelVersion, User
from app.domain.imports import SEED_SOURCE
from app.domain.policy import live
from app.security.spreadsheet import safe_row

ExportFilter = Literal["all", "agreed", "gold"]
ExportFormat = Literal["jsonl", "csv"]
FILTERS: tuple[ExportFilter, ...] = ("all", "agreed", "gold")
COLUMNS = (
    "annotation_id", "item_id", "external_id", "text", "label", "split", "annotator",
    "annotated_at", "model_version", "source",
)  # fmt: skip
MEDIA_TYPES: dict[ExportFormat, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
CHUNK_ROWS = 1000
SPOOL_IN_MEMORY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class AnnotationRow:
    annotation_id: int
    item_id: int
    external_id: str | None
    text: str
    label: str
    split: str
    annotator_id: int | None
    annotator: str | None
    annotated_at: datetime
    model_version: int | None
    model_version_id: int | None
    source: str
    duration_ms: int | None

    def export_record(self) -> dict[str, object]:
        record = asdict(self)
        record["annotated_at"] = self.annotated_at.isoformat()
        return {column: record[column] for column in COLUMNS}


def _live() -> object:
    return live()


def _rows_query(project_id: int, only: ExportFilter) -> Select[*tuple[Any, ...]]:
    version = aliased(ModelVersion)
    query = (
        select(
            Annotation.id, Annotation.item_id, Item.external_id, Item.text, Label.name,
            Item.split, Annotation.annotator_id, User.email, Annotation.created_at,
            version.version, Annotation.model_version_id, Annotation.source,
            Annotation.duration_ms,
        )  # fmt: skip
        .join(Item, Item.id == Annotation.item_id)
        .join(Label, Label.id == Annotation.label_id)
        .outerjoin(User, User.id == Annotation.annotator_id)
        .outerjoin(version, version.id == Annotation.model_version_id)
        .where(Annotation.project_id == project_id, _live())  # type: ignore[arg-type]
    )
    if only == "gold":
        query = query.where(Annotation.source == SEED_SOURCE)
    elif only == "agreed":
        agreed_items = (
            select(Annotation.item_id)
            .where(Annotation.project_id == project_id, _live())  # type: ignore[arg-type]
            .group_by(Annotation.item_id)
            .having(func.count(func.distinct(Annotation.label_id)) == 1)
        )
        query = query.where(Annotation.item_id.in_(agreed_items))
    elif only != "all":
        raise ValueError(f"unknown export filter {only!r}; use one of {FILTERS}")
    return query


def annotation_rows(
    db: Session,
    project_id: int,
    *,
    only: ExportFilter = "all",
    after_id: int | None = None,
    limit: int | None = None,
    item_id: int | None = None,
    annotator_id: int | None = None,
) -> Iterator[AnnotationRow]:
    """Live annotations in id order (keyset pagination with ``after_id``), streamed in chunks."""
    query = _rows_query(project_id, only).order_by(Annotation.id)
    if after_id is not None:
        query = query.where(Annotation.id > after_id)
    if item_id is not None:
        query = query.where(Annotation.item_id == item_id)
    if annotator_id is not None:
        query = query.where(Annotation.annotator_id == annotator_id)
    if limit is not None:
        query = query.limit(limit)
    for row in db.execute(query.execution_options(yield_per=CHUNK_ROWS)):
        yield AnnotationRow(*row)


def write_export(
    db: Session, project_id: int, *, fmt: ExportFormat, only: ExportFilter = "all",
    annotator_id: int | None = None,
) -> IO[bytes]:
    """The export as a rewound (spooled) binary file; the caller streams and closes it."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown export format {fmt!r}; use one of {tuple(MEDIA_TYPES)}")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
    writer = csv.DictWriter(text, fieldnames=COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in annotation_rows(db, project_id, only=only, annotator_id=annotator_id):
        record = row.export_record()
        if writer is not None:
            writer.writerow(safe_row({k: "" if v is None else v for k, v in record.items()}))
        else:
            text.write(json.dumps(record, ensure_ascii=False) + "\n")
    text.flush()
    text.detach()  # keep the spool open for the response
    spool.seek(0)
    return spool


def export_filename(project_id: int, fmt: ExportFormat, only: ExportFilter) -> str:
    return f"tapestry-project{project_id}-labels-{only}.{fmt}"
