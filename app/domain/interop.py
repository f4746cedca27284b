"""Move over from Label Studio or Prodigy: convert their exports, then import them as usual.

Both converters turn the source into JSONL rows ``{"text", "label", "id"}`` and hand them to the
one import pipeline (:func:`app.domain.imports.import_items`), so validation, de-duplication,
batching and all-or-nothing behave exactly like a CSV import. Rejected rows are reported with the
*source's* numbering: the task number for Label Studio (1 = first task in the array), the line
number for Prodigy.

Label Studio (JSON export, a list of tasks): the text is ``data[text_key]`` (or the only string
in ``data``); the label comes from a ``choices`` result of the task's ground-truth annotation,
else its most recent non-cancelled one. Prodigy (JSONL from ``db-out``): ``answer: accept``
with one ``accept`` option (choice interface) or with a ``label`` (binary/classification) gives
that label; reject, ignore and answer-less lines import the text unlabelled. Several lines with the
same text (Prodigy's binary passes) collapse to the first labelled one. Multi-label answers are
refused: Tapestry projects are single-label.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Label, Project, User
from app.domain.imports import (
    ColumnMapping,
    ImportOptions,
    ImportReport,
    content_hash,
    import_items,
)
from app.domain.json_input import JsonInputError, line_of, parse_json
from app.errors import ImportRejected

Source = Literal["label_studio", "prodigy"]
MAX_LISTED_ERRORS = 100


@dataclass(frozen=True)
class ConvertedRow:
    source_line: int
    text: Any
    label: str | None
    external_id: str | None


@dataclass
class InteropReport:
    """What the conversion saw, next to what the import then did."""

    source: Source
    source_rows: int = 0
    labelled: int = 0
    unlabelled: int = 0
    collapsed: int = 0
    import_report: ImportReport = field(default_factory=ImportReport)


@dataclass(frozen=True)
class _Problem:
    line: int
    message: str


# --------------------------------------------------------------------------- Label Studio


def parse_label_studio(raw: bytes) -> Any:
    """The parsed Label Studio export; a line-numbered 422 for anything that is not usable JSON
    (bad UTF-8, malformed, nested deeper than :data:`~app.domain.json_input.MAX_JSON_DEPTH`)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _rejected([_Problem(line, "is not valid UTF-8; save the export as UTF-8")]) from None
    try:
        return parse_json(text)
    except JsonInputError as exc:
        line = line_of(text, exc.offset) if exc.offset >= 0 else 1
        message = (f"{exc.message}. Export the project from Label Studio as JSON")
        raise _rejected([_Problem(line, message)]) from None


def label_studio_rows(tasks: Any, *, text_key: str = "text") -> Iterator[ConvertedRow]:
    """Rows of a Label Studio JSON export (already parsed); raises on a structural problem."""
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise _rejected([_Problem(1, "must be a JSON array of tasks (Label Studio JSON export)")])
    problems: list[_Problem] = []
    rows: list[ConvertedRow] = []
    for number, task in enumerate(tasks, start=1):
        try:
            rows.append(_label_studio_task(number, task, text_key))
        except _RowProblem as problem:
            problems.append(_Problem(number, str(problem)))
    if problems:
        raise _rejected(problems, unit="task")
    yield from rows


class _RowProblem(Exception):
    pass


def _label_studio_task(number: int, task: Any, text_key: str) -> ConvertedRow:
    if not isinstance(task, dict):
        raise _RowProblem("is not a JSON object")
    data = task.get("data")
    if not isinstance(data, dict):
        raise _RowProblem("has no 'data' object")
    text = data.get(text_key)
    if text is None:
        strings = [value for value in data.values() if isinstance(value, str)]
        if len(strings) != 1:
            raise _RowProblem(
                f"has no data.{text_key!r}; name the text field with text_key "
                f"(fields: {', '.join(sorted(map(str, data))[:10])})"
            )
        text = strings[0]
    annotation = _chosen_annotation(task)
    label = _choice(annotation) if annotation is not None else None
    task_id = task.get("id")
    external = str(task_id) if isinstance(task_id, int | str) and task_id != "" else None
    return ConvertedRow(number, text, label, external)


def _chosen_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    raw = task.get("annotations")
    if raw is None:
        raw = task.get("completions")  # exports of Label Studio before 1.0
    if not isinstance(raw, list):
        return None
    usable = [a for a in raw if isinstance(a, dict) and not a.get("was_cancelled")]
    truth = [a for a in usable if a.get("ground_truth")]
    chosen = truth or usable
    return chosen[-1] if chosen else None


def _choice(annotation: dict[str, Any]) -> str | None:
    choices: list[Any] = []
    for result in annotation.get("result") or []:
        if isinstance(result, dict) and result.get("type") == "choices":
            value = result.get("value")
            if isinstance(value, dict) and isinstance(value.get("choices"), list):
                choices.extend(value["choices"])
    if not choices:
        return None
    if len(choices) > 1:
        raise _RowProblem(
            f"has {len(choices)} choices ({', '.join(map(str, choices[:5]))}); Tapestry projects "
            "are single-label"
        )
    return str(choices[0])


# --------------------------------------------------------------------------- Prodigy


def prodigy_rows(lines: Iterable[bytes], label_names: Iterable[str]) -> Iterator[ConvertedRow]:
    """Rows of a Prodigy JSONL export; duplicates of one text keep the first labelled line."""
    known = set(label_names)
    problems: list[_Problem] = []
    rows: list[ConvertedRow] = []
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            problems.append(_Problem(number, "is not valid UTF-8"))
            continue
        if not line:
            continue
        try:
            rows.append(_prodigy_line(number, parse_json(line), known))
        except JsonInputError as exc:
            problems.append(_Problem(number, exc.message))
        except _RowProblem as problem:
            problems.append(_Problem(number, str(problem)))
    if problems:
        raise _rejected(problems)
    yield from rows


def _prodigy_line(number: int, record: Any, known: set[str]) -> ConvertedRow:
    if not isinstance(record, dict):
        raise _RowProblem("must be a JSON object")
    label: str | None = None
    if record.get("answer") == "accept":
        accepted = record.get("accept")
        if isinstance(accepted, list) and accepted:
            if len(accepted) > 1:
                raise _RowProblem(
                    f"accepts {len(accepted)} options; Tapestry projects are single-label"
                )
            label = _option_label(accepted[0], record.get("options"), known)
        elif isinstance(record.get("label"), str):
            label = record["label"]
    meta = record.get("meta")
    external = None
    if isinstance(meta, dict) and isinstance(meta.get("id"), int | str):
        external = str(meta["id"])
    return ConvertedRow(number, record.get("text"), label, external)


def _option_label(option_id: Any, options: Any, known: set[str]) -> str:
    """An accepted option's id if it is a project label, else its display text, else its id."""
    if str(option_id) in known or not isinstance(options, list):
        return str(option_id)
    for option in options:
        if isinstance(option, dict) and option.get("id") == option_id:
            text = option.get("text")
            if isinstance(text, str) and text in known:
                return text
    return str(option_id)


# --------------------------------------------------------------------------- import


def collapse_duplicates(rows: Iterable[ConvertedRow]) -> tuple[list[ConvertedRow], int]:
    """One row per text: the first labelled occurrence, else the first one."""
    chosen: dict[str, int] = {}
    result: list[ConvertedRow] = []
    collapsed = 0
    for row in rows:
        key = content_hash(row.text) if isinstance(row.text, str) else f"line-{row.source_line}"
        if key not in chosen:
            chosen[key] = len(result)
            result.append(row)
            continue
        collapsed += 1
        if result[chosen[key]].label is None and row.label is not None:
            result[chosen[key]] = row
    return result, collapsed


def import_converted(
    db: Session,
    *,
    project: Project,
    user: User,
    source: Source,
    rows: Iterable[ConvertedRow],
    max_text_chars: int,
) -> InteropReport:
    """Feed converted rows to the import pipeline; errors name the source's rows."""
    unique, collapsed = collapse_duplicates(rows)
    report = InteropReport(source=source, source_rows=len(unique) + collapsed, collapsed=collapsed)
    report.labelled = sum(1 for row in unique if row.label is not None)
    report.unlabelled = len(unique) - report.labelled
    spool = _as_jsonl(unique)
    options = ImportOptions(
        format="jsonl",
        mapping=ColumnMapping(text="text", label="label", id="id"),
        max_text_chars=max_text_chars,
        max_listed_errors=MAX_LISTED_ERRORS,
    )
    try:
        report.import_report = import_items(
            db, project=project, user=user, source=spool, options=options
        )
    except ImportRejected as exc:
        raise _renumbered(exc, [row.source_line for row in unique], source) from None
    finally:
        spool.close()
    return report


def project_label_names(db: Session, project_id: int) -> list[str]:
    return list(db.scalars(select(Label.name).where(Label.project_id == project_id)))


def _as_jsonl(rows: list[ConvertedRow]) -> IO[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115
    for row in rows:
        record = {"text": row.text, "label": row.label, "id": row.external_id}
        spool.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    spool.seek(0)
    return spool


def _renumbered(exc: ImportRejected, source_lines: list[int], source: Source) -> ImportRejected:
    """The import's error, with line numbers of the converted file mapped to the source's."""
    unit = "task" if source == "label_studio" else "line"
    errors = []
    for error in exc.details.get("errors", []):
        line = error.get("line")
        if isinstance(line, int) and 1 <= line <= len(source_lines):
            error = {**error, "line": source_lines[line - 1]}
        errors.append(error)
    problems = [_Problem(int(e.get("line", 0)), str(e.get("message", ""))) for e in errors]
    if not problems:
        return exc
    total = int(exc.details.get("error_count", len(problems)))
    return _rejected(problems, unit=unit, total=total)


def _rejected(problems: list[_Problem], *, unit: str = "line", total: int | None = None
              ) -> ImportRejected:
    total = total if total is not None else len(problems)
    listed = problems[:MAX_LISTED_ERRORS]
    first = listed[0]
    summary = (
        f"{unit.capitalize()} {first.line} {first.message}."
        if total == 1
        else f"{total} problems found (first: {unit} {first.line} {first.message})."
    )
    return ImportRejected(
        f"{summary} Nothing was imported.",
        details={
            "errors": [{"line": p.line, "message": p.message} for p in listed],
            "error_count": total,
            "numbering": unit,
        },
    )
