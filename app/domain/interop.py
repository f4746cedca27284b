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
same text (Prodigy's binary passes) collapse to the first labelled one. Several choices or
accepted options are refused in a single-label project.

**Multi-label projects** take the whole answer as a set:

* Label Studio: every choice of the chosen annotation (``"choices": ["a", "b"]``, from one or
  several ``choices`` results); a chosen annotation with no choice at all is "none of these",
  which is how Label Studio stores a submitted multi-choice answer with nothing ticked. A task
  without a usable annotation is unlabelled.
* Prodigy: ``answer: accept`` with an ``accept`` list (``textcat.manual`` with several options,
  ``choice_style: multiple``) gives that set, ``"accept": []`` "none of these"; a binary line
  (``label`` + accept) gives its one label. Lines with the same text merge: the set is every
  label accepted on any of them, because each binary pass asks about one label only.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Label, Project, User
from app.domain.annotation.label_sets import is_multi_label
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
    labels: tuple[str, ...] | None = None
    """Multi-label projects: the answer as a set of names (``()``: none of these); ``label`` is
    then ``None``. ``None``: unlabelled (or a single-label row)."""

    @property
    def labelled(self) -> bool:
        return self.label is not None or self.labels is not None


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


def label_studio_rows(tasks: Any, *, text_key: str = "text", multi_label: bool = False
                      ) -> Iterator[ConvertedRow]:
    """Rows of a Label Studio JSON export (already parsed); raises on a structural problem.
    ``multi_label``: read each answer as a set of choices (see the module's docstring)."""
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise _rejected([_Problem(1, "must be a JSON array of tasks (Label Studio JSON export)")])
    problems: list[_Problem] = []
    rows: list[ConvertedRow] = []
    for number, task in enumerate(tasks, start=1):
        try:
            rows.append(_label_studio_task(number, task, text_key, multi_label))
        except _RowProblem as problem:
            problems.append(_Problem(number, str(problem)))
    if problems:
        raise _rejected(problems, unit="task")
    yield from rows


class _RowProblem(Exception):
    pass


def _label_studio_task(number: int, task: Any, text_key: str, multi_label: bool
                       ) -> ConvertedRow:
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
    task_id = task.get("id")
    external = str(task_id) if isinstance(task_id, int | str) and task_id != "" else None
    if multi_label:
        labels = tuple(_choices(annotation)) if annotation is not None else None
        return ConvertedRow(number, text, None, external, labels)
    label = _choice(annotation) if annotation is not None else None
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


def _choices(annotation: dict[str, Any]) -> list[str]:
    """Every choice of the annotation's ``choices`` results, as names, in order."""
    choices: list[Any] = []
    for result in annotation.get("result") or []:
        if isinstance(result, dict) and result.get("type") == "choices":
            value = result.get("value")
            if isinstance(value, dict) and isinstance(value.get("choices"), list):
                choices.extend(value["choices"])
    return [str(choice) for choice in choices]


def _choice(annotation: dict[str, Any]) -> str | None:
    choices = _choices(annotation)
    if not choices:
        return None
    if len(choices) > 1:
        raise _RowProblem(
            f"has {len(choices)} choices ({', '.join(choices[:5])}); this project is "
            "single-label (one label per item)"
        )
    return choices[0]


# --------------------------------------------------------------------------- Prodigy


def prodigy_rows(lines: Iterable[bytes], label_names: Iterable[str], *,
                 multi_label: bool = False) -> Iterator[ConvertedRow]:
    """Rows of a Prodigy JSONL export, line by line (duplicates are collapsed on import).
    ``multi_label``: an ``accept`` list is a set (see the module's docstring)."""
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
            rows.append(_prodigy_line(number, parse_json(line), known, multi_label))
        except JsonInputError as exc:
            problems.append(_Problem(number, exc.message))
        except _RowProblem as problem:
            problems.append(_Problem(number, str(problem)))
    if problems:
        raise _rejected(problems)
    yield from rows


def _prodigy_line(number: int, record: Any, known: set[str], multi_label: bool
                  ) -> ConvertedRow:
    if not isinstance(record, dict):
        raise _RowProblem("must be a JSON object")
    meta = record.get("meta")
    external = None
    if isinstance(meta, dict) and isinstance(meta.get("id"), int | str):
        external = str(meta["id"])
    if multi_label:
        labels = _prodigy_set(record, known)
        return ConvertedRow(number, record.get("text"), None, external, labels)
    label: str | None = None
    if record.get("answer") == "accept":
        accepted = record.get("accept")
        if isinstance(accepted, list) and accepted:
            if len(accepted) > 1:
                raise _RowProblem(
                    f"accepts {len(accepted)} options; this project is single-label (one "
                    "label per item)"
                )
            label = _option_label(accepted[0], record.get("options"), known)
        elif isinstance(record.get("label"), str):
            label = record["label"]
    return ConvertedRow(number, record.get("text"), label, external)


def _prodigy_set(record: dict[str, Any], known: set[str]) -> tuple[str, ...] | None:
    """An accepted line's set: its ``accept`` list (possibly empty), else its binary ``label``."""
    if record.get("answer") != "accept":
        return None
    accepted = record.get("accept")
    if isinstance(accepted, list):
        options = record.get("options")
        return tuple(_option_label(option, options, known) for option in accepted)
    if isinstance(record.get("label"), str):
        return (record["label"],)
    return None


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


def collapse_duplicates(rows: Iterable[ConvertedRow], *, merge_sets: bool = False
                        ) -> tuple[list[ConvertedRow], int]:
    """One row per text: the first labelled occurrence, else the first one. ``merge_sets``
    (Prodigy, multi-label): the kept row's set takes every label of the later ones too."""
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
        kept = result[chosen[key]]
        if not kept.labelled and row.labelled:
            result[chosen[key]] = row
        elif merge_sets and kept.labels is not None and row.labels is not None:
            merged = tuple(dict.fromkeys(kept.labels + row.labels))
            result[chosen[key]] = replace(kept, labels=merged)
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
    merge = source == "prodigy" and is_multi_label(project)
    unique, collapsed = collapse_duplicates(rows, merge_sets=merge)
    report = InteropReport(source=source, source_rows=len(unique) + collapsed, collapsed=collapsed)
    report.labelled = sum(1 for row in unique if row.labelled)
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
        label = list(row.labels) if row.labels is not None else row.label
        record = {"text": row.text, "label": label, "id": row.external_id}
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
