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

In a multi-label project each row is one annotation's *set*: JSONL ``label`` is a list of names
(``[]``: none of these), CSV joins them with the label separator (default
:data:`~app.domain.imports.LABEL_SEPARATOR`, ``|``; the same rule as the importer's separator) and
writes :data:`~app.domain.imports.NONE_OF_THESE` for the empty set, which is exactly what the
importer reads (with that separator). A label name containing the separator is refused, with a
separator that works proposed in the message. ``agreed`` then means that the item's live
annotations all have the same set.

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
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import IO, Any, Literal

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.db.models import (
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    Item,
    Label,
    ModelVersion,
    Project,
    User,
)
from app.domain.annotation.label_sets import label_sets
from app.domain.imports import (
    LABEL_SEPARATOR,
    SEED_SOURCE,
    check_label_cell_names,
    check_label_separator,
    label_cell,
)
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
    label: str | None
    """The label; ``None`` for a multi-label annotation, whose set is :attr:`labels`."""
    split: str
    annotator_id: int | None
    annotator: str | None
    annotated_at: datetime
    model_version: int | None
    model_version_id: int | None
    source: str
    duration_ms: int | None
    labels: tuple[str, ...] | None = None
    """A multi-label annotation's set in label order (``()``: none of these); else ``None``."""

    def export_record(self) -> dict[str, object]:
        """The exported columns; ``label`` is a list of names for a multi-label annotation."""
        record = asdict(self)
        record["annotated_at"] = self.annotated_at.isoformat()
        if self.labels is not None:
            record["label"] = list(self.labels)
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
        .outerjoin(Label, Label.id == Annotation.label_id)  # none: a multi-label set
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
        query = query.where(or_(
            Annotation.item_id.in_(agreed_items),
            and_(Annotation.label_id.is_(None),
                 Annotation.item_id.not_in(_items_with_differing_sets(project_id))),
        ))
    elif only != "all":
        raise ValueError(f"unknown export filter {only!r}; use one of {FILTERS}")
    return query


def _items_with_differing_sets(project_id: int) -> Select[Any]:
    """Items with two live annotations whose label sets differ: one has a label the other
    lacks (every ordered pair is looked at, so both directions are covered)."""
    other = aliased(Annotation)
    mine = aliased(AnnotationLabel)
    theirs = aliased(AnnotationLabel)
    return (
        select(Annotation.item_id)
        .join(other, and_(other.item_id == Annotation.item_id, other.id != Annotation.id))
        .join(mine, mine.annotation_id == Annotation.id)
        .where(
            Annotation.project_id == project_id, _live(),  # type: ignore[arg-type]
            other.deleted.is_(False), other.superseded_by_id.is_(None),
            ~exists().where(theirs.annotation_id == other.id, theirs.label_id == mine.label_id),
        )
    )


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
    """Live annotations in id order (keyset pagination with ``after_id``), streamed in chunks;
    a multi-label annotation's set is read per chunk into :attr:`AnnotationRow.labels`."""
    query = _rows_query(project_id, only).order_by(Annotation.id)
    if after_id is not None:
        query = query.where(Annotation.id > after_id)
    if item_id is not None:
        query = query.where(Annotation.item_id == item_id)
    if annotator_id is not None:
        query = query.where(Annotation.annotator_id == annotator_id)
    if limit is not None:
        query = query.limit(limit)
    result = db.execute(query.execution_options(yield_per=CHUNK_ROWS))
    names: dict[int, str] | None = None
    for chunk in result.partitions():
        rows = [AnnotationRow(*row) for row in chunk]
        with_sets = [row.annotation_id for row in rows if row.label is None]
        if not with_sets:
            yield from rows
            continue
        if names is None:
            names = dict(db.execute(select(Label.id, Label.name)
                                    .where(Label.project_id == project_id)).tuples().all())
        sets = label_sets(db, with_sets)
        for row in rows:
            if row.label is None:
                row = replace(row, labels=tuple(names[i] for i in sets[row.annotation_id]))
            yield row


def write_export(
    db: Session, project_id: int, *, fmt: ExportFormat, only: ExportFilter = "all",
    annotator_id: int | None = None, label_separator: str = LABEL_SEPARATOR,
) -> IO[bytes]:
    """The export as a rewound (spooled) binary file; the caller streams and closes it.
    ``label_separator`` joins a multi-label set in a CSV cell (checked like the importer's)."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown export format {fmt!r}; use one of {tuple(MEDIA_TYPES)}")
    check_label_separator(label_separator, "csv")
    if fmt == "csv":
        _check_csv_labels(db, project_id, label_separator)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
    writer = csv.DictWriter(text, fieldnames=COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in annotation_rows(db, project_id, only=only, annotator_id=annotator_id):
        record = row.export_record()
        if writer is not None:
            if row.labels is not None:
                record["label"] = label_cell(row.labels, label_separator)
            writer.writerow(safe_row({k: "" if v is None else v for k, v in record.items()}))
        else:
            text.write(json.dumps(record, ensure_ascii=False) + "\n")
    text.flush()
    text.detach()  # keep the spool open for the response
    spool.seek(0)
    return spool


def _check_csv_labels(db: Session, project_id: int, separator: str) -> None:
    """A multi-label project's CSV needs label names its label cell can tell apart."""
    if db.scalar(select(Project.task_type).where(Project.id == project_id)) == TASK_MULTI_LABEL:
        check_label_cell_names(db.scalars(select(Label.name).where(Label.project_id == project_id)
                                          .order_by(Label.position)), separator)


def export_filename(project_id: int, fmt: ExportFormat, only: ExportFilter) -> str:
    return f"tapestry-project{project_id}-labels-{only}.{fmt}"
