"""Export the data manager's current filter: CSV, JSONL, Label Studio JSON, Prodigy JSONL, and a
Hugging Face ``datasets`` folder (zipped for download).

Every format carries, per item: the text, the resolved label (the one training uses), the split,
the exclusion flag, every annotation (live, superseded and undone, with annotator and source) and
the current model prediction when the item is in the queue. Each file re-imports through the
normal import with the same labels: CSV/JSONL with ``label_column=label`` (and ``split``), Label
Studio and Prodigy through :mod:`app.domain.interop` (the resolved label is the Label Studio
ground truth and the Prodigy accepted option).

CSV is spreadsheet-safe: a cell that starts with ``= + - @``, a tab or a carriage return gets a
leading ``'`` so spreadsheet programs show it as text instead of running it as a formula.

A multi-label project exports label *sets*: the resolved set (a reviewer's adjudicated set, else
:func:`resolved_set`, the worker's rule) is a JSON list of names in JSONL and Hugging Face rows
(``[]``: none of these; ``null``: unlabelled), a cell joined by the label separator in CSV (default
``|``, chosen like the importer's; ``[]`` for none of these; see
:func:`app.domain.imports.label_cell`), several ``choices`` in Label Studio and the ``accept`` list
of a Prodigy choice task (run Prodigy with ``choice_style: multiple``). Each annotation carries its
own set, and a queued item the model's proposed set when the queue has one.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    SPLIT_DEV,
    SPLIT_POOL,
    SPLIT_TEST,
    Annotation,
    Label,
    Project,
    QueueEntry,
    User,
)
from app.domain import data_manager as dm
from app.domain.annotation.label_sets import is_multi_label, label_sets, majority_set
from app.domain.imports import (
    LABEL_SEPARATOR,
    check_label_cell_names,
    check_label_separator,
    label_cell,
)
from app.domain.review import adjudicated_set_names
from app.errors import InvalidInput
from app.security.spreadsheet import safe_cell

ExportFormat = Literal["csv", "jsonl", "label_studio", "prodigy", "hf"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl", "label_studio", "prodigy", "hf")
MEDIA_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv", "jsonl": "application/x-ndjson", "label_studio": "application/json",
    "prodigy": "application/x-ndjson", "hf": "application/zip",
}
EXTENSIONS: dict[ExportFormat, str] = {
    "csv": "csv", "jsonl": "jsonl", "label_studio": "json", "prodigy": "jsonl", "hf": "zip",
}
CSV_COLUMNS = ("item_id", "external_id", "text", "label", "split", "excluded", "predicted",
               "confidence", "annotation_count", "annotations")
HF_SPLITS = {SPLIT_POOL: "train", SPLIT_DEV: "validation", SPLIT_TEST: "test"}
SPOOL_BYTES = 4 * 1024 * 1024
CHUNK = 500  # items per read: the page size limit of browse


@dataclass(frozen=True)
class ExportAnnotation:
    id: int
    label: str | None
    """The label; ``None`` for a multi-label annotation, whose set is :attr:`labels`."""
    annotator: str | None
    source: str
    created_at: str
    status: str
    labels: tuple[str, ...] | None = None
    """A multi-label annotation's set in label order (``()``: none of these)."""

    def names(self) -> list[str]:
        """The labels this annotation gives, as a list (one name in a single-label project)."""
        if self.labels is not None:
            return list(self.labels)
        return [self.label] if self.label is not None else []

    def as_dict(self) -> dict[str, Any]:
        label = list(self.labels) if self.labels is not None else self.label
        return {"id": self.id, "label": label, "annotator": self.annotator,
                "source": self.source, "created_at": self.created_at, "status": self.status}


@dataclass(frozen=True)
class ExportRecord:
    item_id: int
    external_id: str | None
    text: str
    split: str
    excluded: bool
    label: str | None
    annotations: tuple[ExportAnnotation, ...]
    prediction: dm.Prediction | None
    labels: tuple[str, ...] | None = None
    """Multi-label: the resolved set (``()``: none of these); ``None`` when unlabelled (and in
    single-label projects, which use :attr:`label`)."""
    proposed: tuple[str, ...] | None = None
    """Multi-label: the current model's proposed set for a queued item."""
    reviewed: bool = False
    """The answer is a reviewer's accept/change decision (it overrides the annotations)."""

    def names(self) -> list[str] | None:
        """The resolved answer as a list of names; ``None`` when unlabelled."""
        if self.labels is not None:
            return list(self.labels)
        return [self.label] if self.label is not None else None

    def as_dict(self) -> dict[str, Any]:
        prediction: dict[str, Any] | None = None
        if self.prediction:
            prediction = {"label": self.prediction.label,
                          "confidence": self.prediction.confidence}
            if self.proposed is not None:
                prediction["labels"] = list(self.proposed)
        return {
            "item_id": self.item_id, "external_id": self.external_id, "text": self.text,
            "label": list(self.labels) if self.labels is not None else self.label,
            "split": self.split, "excluded": self.excluded, "prediction": prediction,
            "annotations": [a.as_dict() for a in self.annotations],
        }


def resolved_set(sets: Sequence[tuple[str, ...]], order: Sequence[str]
                 ) -> tuple[str, ...] | None:
    """The item's resolved set (:func:`~app.domain.annotation.label_sets.majority_set`, the
    rule the worker trains on) in label order; ``None`` without a set."""
    if not sets:
        return None
    chosen = majority_set(sets)
    return tuple(name for name in order if name in chosen)


def export_records(db: Session, project: Project, filters: dm.Filters) -> Iterator[ExportRecord]:
    """Every matching item in id order, read a chunk at a time (keyset, full texts)."""
    multi_label = is_multi_label(project)
    order = _label_names(db, project) if multi_label else []
    after = 0
    while True:
        page = dm.browse(db, project, filters, after_id=after, limit=CHUNK, snippet_chars=None)
        ids = [row.id for row in page.rows]
        history = _all_annotations(db, project.id, ids)
        proposed = _proposed_sets(db, project, ids, order) if multi_label else {}
        decided = adjudicated_set_names(db, project.id, ids) if multi_label else {}
        for row in page.rows:
            annotations = tuple(history.get(row.id, ()))
            reviewed = row.id in decided if multi_label else row.adjudicated is not None
            labels = decided[row.id] if row.id in decided else resolved_set(
                [a.labels for a in annotations if a.status == "live" and a.labels is not None],
                order,
            ) if multi_label else None
            yield ExportRecord(
                item_id=row.id, external_id=row.external_id, text=row.text, split=row.split,
                excluded=row.excluded, label=None if multi_label else row.label,
                annotations=annotations, prediction=row.prediction, labels=labels,
                proposed=proposed.get(row.id), reviewed=reviewed,
            )
        if page.next_after is None:
            return
        after = page.next_after


def _all_annotations(db: Session, project_id: int, ids: Sequence[int]
                     ) -> dict[int, list[ExportAnnotation]]:
    if not ids:
        return {}
    rows = db.execute(
        select(Annotation.item_id, Annotation.id, Label.name, User.email, Annotation.source,
               Annotation.created_at, Annotation.deleted, Annotation.superseded_by_id)
        .outerjoin(Label, Label.id == Annotation.label_id)  # none: a multi-label set
        .outerjoin(User, User.id == Annotation.annotator_id)
        .where(Annotation.project_id == project_id, Annotation.item_id.in_(ids))
        .order_by(Annotation.item_id, Annotation.id)
    ).all()
    sets = label_sets(db, [row[1] for row in rows if row[2] is None])
    names: dict[int, str] = {}
    if sets:
        names = dict(db.execute(select(Label.id, Label.name)
                                .where(Label.project_id == project_id)).tuples().all())
    found: dict[int, list[ExportAnnotation]] = {}
    for item_id, a_id, name, email, source, created, deleted, superseded in rows:
        status = "undone" if deleted else "superseded" if superseded else "live"
        labels = tuple(names[i] for i in sets[a_id]) if name is None else None
        found.setdefault(item_id, []).append(
            ExportAnnotation(a_id, name, email, source, created.isoformat(), status, labels)
        )
    return found


def _proposed_sets(db: Session, project: Project, ids: Sequence[int], order: Sequence[str]
                   ) -> dict[int, tuple[str, ...]]:
    """Item id -> the labels the current queue proposes (entries flag each label ``proposed``);
    entries without the flags (single-label predictions) give nothing."""
    if not ids:
        return {}
    found: dict[int, tuple[str, ...]] = {}
    for item_id, predicted in db.execute(
        select(QueueEntry.item_id, QueueEntry.predicted).where(
            QueueEntry.project_id == project.id,
            QueueEntry.queue_version == project.queue_version,
            QueueEntry.item_id.in_(ids),
        )
    ):
        entries = [e for e in predicted or [] if isinstance(e, dict) and "proposed" in e]
        if entries:
            chosen = {str(e.get("label")) for e in entries if e.get("proposed") is True}
            found[item_id] = tuple(name for name in order if name in chosen)
    return found


# --------------------------------------------------------------------------- writers


def write_export(db: Session, project: Project, filters: dm.Filters, fmt: str,
                 label_separator: str = LABEL_SEPARATOR) -> IO[bytes]:
    """The export as a rewound spooled file; the caller streams and closes it.
    ``label_separator`` joins a multi-label set in a CSV cell (checked like the importer's)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.",
                              details={"field": "format"})
    check_label_separator(label_separator, "csv")
    if fmt == "csv" and is_multi_label(project):
        check_label_cell_names(_label_names(db, project), label_separator)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    records = export_records(db, project, filters)
    if fmt == "hf":
        with tempfile.TemporaryDirectory(prefix="tapestry-hf-") as folder:
            write_hf_folder(db, project, records, Path(folder))
            _zip_folder(Path(folder), spool, f"tapestry-project{project.id}")
    else:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
        if fmt == "csv":
            _write_csv(records, text, label_separator)
        elif fmt == "jsonl":
            for record in records:
                text.write(json.dumps(record.as_dict(), ensure_ascii=False) + "\n")
        elif fmt == "label_studio":
            _write_label_studio(records, text)
        else:
            _write_prodigy(records, _label_names(db, project), text)
        text.flush()
        text.detach()
    spool.seek(0)
    return spool


def export_filename(project: Project, fmt: str) -> str:
    return f"tapestry-project{project.id}-items-{fmt}.{EXTENSIONS[fmt]}"  # type: ignore[index]


def _label_names(db: Session, project: Project) -> list[str]:
    return list(db.scalars(
        select(Label.name).where(Label.project_id == project.id).order_by(Label.position)
    ))


def _write_csv(records: Iterator[ExportRecord], out: IO[str], separator: str) -> None:
    """One row per item; a multi-label set is one cell joined by ``separator`` (``[]``: none
    of these)."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        label = label_cell(r.labels, separator) if r.labels is not None else r.label or ""
        predicted = (label_cell(r.proposed, separator) if r.proposed is not None
                     else r.prediction.label if r.prediction else "")
        cells: list[object] = [
            r.item_id, r.external_id or "", r.text, label, r.split,
            "yes" if r.excluded else "no", predicted,
            r.prediction.confidence if r.prediction else "", len(r.annotations),
            json.dumps([a.as_dict() for a in r.annotations], ensure_ascii=False),
        ]
        writer.writerow([safe_cell(c) for c in cells])


def _choices(names: Sequence[str]) -> list[dict[str, Any]]:
    """A Label Studio result with these choices; none (a multi-label "none of these") is an
    empty result, as Label Studio itself writes an answer with nothing ticked."""
    if not names:
        return []
    return [{"from_name": "label", "to_name": "text", "type": "choices",
             "value": {"choices": list(names)}}]


def _write_label_studio(records: Iterator[ExportRecord], out: IO[str]) -> None:
    """A JSON array of tasks; the resolved label's (or set's) latest live annotation is the
    ground truth, superseded and undone annotations are marked cancelled (Label Studio then
    ignores them). When no live annotation gives the resolved answer (a reviewer changed it, or
    a majority set nobody gave as such), one more annotation carries it as the ground truth
    (``meta.source``: ``review`` or ``resolved``), so a re-import gets the resolved answer."""
    out.write("[")
    for n, r in enumerate(records):
        resolved = r.names()
        live_with_label = [a for a in r.annotations
                           if a.status == "live" and a.names() == resolved]
        truth = live_with_label[-1].id if live_with_label else None
        annotations: list[dict[str, Any]] = [
            {"id": a.id, "completed_by": a.annotator, "created_at": a.created_at,
             "result": _choices(a.names()), "ground_truth": a.id == truth,
             "was_cancelled": a.status != "live",
             "meta": {"source": a.source, "status": a.status}}
            for a in r.annotations
        ]
        if resolved is not None and truth is None:
            annotations.append(
                {"result": _choices(resolved), "ground_truth": True, "was_cancelled": False,
                 "meta": {"source": "review" if r.reviewed else "resolved", "status": "live"}}
            )
        task = {
            "id": r.item_id,
            "data": {"text": r.text, "external_id": r.external_id, "split": r.split,
                     "excluded": r.excluded},
            "annotations": annotations,
            "predictions": (
                [{"model_version": "tapestry", "score": r.prediction.confidence,
                  "result": _choices(r.proposed if r.proposed is not None
                                     else [r.prediction.label])}] if r.prediction else []
            ),
        }
        out.write(("," if n else "") + "\n" + json.dumps(task, ensure_ascii=False))
    out.write("\n]\n")


def _write_prodigy(records: Iterator[ExportRecord], labels: list[str], out: IO[str]) -> None:
    """Prodigy ``choice`` tasks: the resolved label (multi-label: every label of the set, none
    for none of these) accepted; unlabelled items have no answer."""
    options = [{"id": name, "text": name} for name in labels]
    for r in records:
        task: dict[str, Any] = {
            "text": r.text,
            "options": options,
            "meta": {"id": r.external_id or str(r.item_id), "item_id": r.item_id,
                     "split": r.split, "excluded": r.excluded},
            "tapestry": {"annotations": [a.as_dict() for a in r.annotations],
                         "prediction": r.as_dict()["prediction"]},
        }
        accepted = r.names()
        if accepted is not None:
            task["accept"] = accepted
            task["answer"] = "accept"
        out.write(json.dumps(task, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- Hugging Face


def write_hf_folder(db: Session, project: Project, records: Iterator[ExportRecord],
                    folder: Path) -> dict[str, int]:
    """``data/{train,validation,test}.jsonl`` + a ``README.md`` card whose YAML names the
    splits, so ``datasets.load_dataset(folder)`` loads it. Returns rows per split."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    handles: dict[str, IO[str]] = {}
    counts: dict[str, int] = {}
    try:
        for record in records:
            split = HF_SPLITS.get(record.split, "train")
            if split not in handles:
                handles[split] = (data / f"{split}.jsonl").open("w", encoding="utf-8")
            row = record.as_dict()
            handles[split].write(json.dumps(row, ensure_ascii=False) + "\n")
            counts[split] = counts.get(split, 0) + 1
    finally:
        for handle in handles.values():
            handle.close()
    (folder / "README.md").write_text(_card(project, _label_names(db, project), counts),
                                      encoding="utf-8")
    return counts


def _card(project: Project, labels: list[str], counts: dict[str, int]) -> str:
    files = "".join(
        f"    - split: {split}\n      path: data/{split}.jsonl\n"
        for split in ("train", "validation", "test") if split in counts
    )
    names = "".join(f"- {json.dumps(name)}\n" for name in labels)
    rows = "".join(f"| {split} | {counts[split]} |\n" for split in counts)
    return (
        "---\n"
        "configs:\n"
        "  - config_name: default\n"
        "    data_files:\n"
        f"{files}"
        "---\n\n"
        f"# {project.name}\n\n"
        "Exported from Tapestry's data manager. One JSON object per item: `text`, `label` "
        f"({_label_kind(project)}), `split`, `excluded` (a lead "
        "excluded it from training), `prediction` (the current model's top label and "
        "confidence, for queued items) and `annotations` (every annotation: live, superseded "
        "or undone).\n\n"
        "Tapestry splits map to `train` (pool), `validation` (dev) and `test`.\n\n"
        f"## Labels\n\n{names}\n"
        f"## Rows\n\n| split | rows |\n|---|---|\n{rows}"
    )


def _label_kind(project: Project) -> str:
    if is_multi_label(project):
        return ("the resolved label set training uses, a list of label names: `[]` when none "
                "of them applies, null when unlabelled")
    return "the resolved label training uses; null when unlabelled"


def _zip_folder(folder: Path, out: IO[bytes], root: str) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{root}/{path.relative_to(folder).as_posix()}")
