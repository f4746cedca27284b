"""Data import: CSV, TSV and JSONL in UTF-8, streamed, validated as a whole, inserted in batches.

How it stays correct and small:

1. **Validate everything first.** Pass 1 streams the (spooled, seekable) file once and checks every
   row — encoding (with line numbers), structure, empty or over-long text, labels outside the label
   set, split values. Any problem rejects the import as a whole with one report (the first
   ``max_listed_errors`` problems listed, plus the total count); nothing is written.
2. **Insert in batches.** Pass 2 streams the file again and inserts ``batch_size`` rows at a time
   with one multi-row INSERT ... RETURNING (SQLAlchemy's insertmanyvalues, on SQLite and
   Postgres). Memory holds one batch, never the file.
3. **De-duplicate by content hash** — sha256 of the NFC-normalised, whitespace-collapsed text —
   within the file and against the project, through the ``(project_id, content_hash)`` unique index.
4. **All or nothing.** Everything happens inside the caller's transaction (the edge commits).
5. Labelled rows become annotations by the importing user (source ``seed``), tagged with one
   ``batch_id`` per import. A dev set comes from a split column, or is **carved out** of this
   import's labelled pool rows afterwards in SQL: per label ``round(fraction * n)`` rows, chosen by
   content hash rotated by a seed-derived pivot — stratified, exact and deterministic.

**Multi-label projects** read a *set* of label names from the label column (see
:meth:`_Validator._label_set`):

* JSONL: a JSON array of names (``["billing", "bug"]``); ``[]`` is an explicit "none of these";
  ``null``, ``""`` or a missing key leave the row unlabelled. A plain string is *one* label name
  (a name may contain any character), unless the lead chose a separator
  (:attr:`ImportOptions.label_separator`): then it is split like a CSV cell.
* CSV/TSV: one cell, names split by the separator (default :data:`LABEL_SEPARATOR`, ``|``); the
  cell :data:`NONE_OF_THESE` (``[]``) is the empty set, an empty cell leaves the row unlabelled.

A name given twice in one row counts once. Labelled rows become seed annotations with
``label_id = NULL`` plus one :class:`~app.db.models.AnnotationLabel` row per label (none for the
empty set). A gold column holds a gold *set* the same way (a JSON list, or names split by the
same separator; ``[]`` is a gold item whose answer is none of these, an empty value a row that is
not gold).
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from app.db import fulltext
from app.db.models import (
    SPLIT_DEV,
    SPLIT_POOL,
    SPLIT_TEST,
    Annotation,
    AnnotationLabel,
    GoldItem,
    GoldItemLabel,
    Item,
    Label,
    Project,
    User,
)
from app.domain.annotation.label_sets import is_multi_label, label_sets, store_label_set
from app.domain.json_input import JsonInputError, parse_json
from app.domain.policy import live
from app.errors import ImportRejected, InvalidInput

ImportFormat = Literal["csv", "tsv", "jsonl"]
OnExisting = Literal["keep", "apply"]
ON_EXISTING: tuple[OnExisting, ...] = ("keep", "apply")
MAX_LISTED_LINES = 100
"""How many line numbers the report lists for existing rows with a label (the count is exact)."""
FORMATS: tuple[ImportFormat, ...] = ("csv", "tsv", "jsonl")
EXTENSIONS: dict[str, ImportFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
CONTENT_TYPES: dict[str, ImportFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}
SPLIT_ALIASES = {
    "": None,
    "pool": SPLIT_POOL,
    "train": SPLIT_POOL,
    "training": SPLIT_POOL,
    "unlabeled": SPLIT_POOL,
    "unlabelled": SPLIT_POOL,
    "dev": SPLIT_DEV,
    "val": SPLIT_DEV,
    "valid": SPLIT_DEV,
    "validation": SPLIT_DEV,
    "test": SPLIT_TEST,
}
COLUMN_CANDIDATES: dict[str, tuple[str, ...]] = {
    "text": ("text", "content", "body", "sentence", "message", "document", "comment", "review"),
    "label": ("label", "category", "class", "topic", "target", "tag", "intent"),
    "id": ("id", "external_id", "uid", "uuid", "key", "ref", "reference"),
    "split": ("split", "set", "subset", "fold"),
}
"""Column names (lower-cased) that :func:`propose_mapping` proposes for each role."""
_ID_SUFFIX = re.compile(r"[_\-\s]id$")
SEED_SOURCE = "seed"
MAX_EXTERNAL_ID = 200
_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_UTF8_BOM = b"\xef\xbb\xbf"
ITEMS = cast(Table, Item.__table__)
ANNOTATIONS = cast(Table, Annotation.__table__)
ANNOTATION_LABELS = cast(Table, AnnotationLabel.__table__)
GOLD_ITEMS = cast(Table, GoldItem.__table__)
GOLD_ITEM_LABELS = cast(Table, GoldItemLabel.__table__)
LABEL_SEPARATOR = "|"
"""Between label names in a multi-label project's CSV/TSV label cell, unless the lead chooses
another; exports write it too."""
NONE_OF_THESE = "[]"
"""The CSV/TSV label cell of a multi-label row labelled "none of these" (the empty set); an empty
cell means unlabelled, so the empty answer needs a token of its own. It reads like JSON's empty
list, which is how JSONL says it."""
MAX_SEPARATOR_CHARS = 3
DELIMITERS: dict[ImportFormat, str] = {"csv": ",", "tsv": "\t"}
csv.field_size_limit(64 * 1024 * 1024)  # our own length check reports over-long texts properly


@dataclass(frozen=True)
class ColumnMapping:
    """Which source columns (CSV/TSV header names, JSONL keys) hold what; only text is required."""

    text: str = "text"
    label: str | None = None
    id: str | None = None
    split: str | None = None
    gold: str | None = None
    """A column with the answer of gold rows (empty for others); see :mod:`app.domain.gold`."""

    def __post_init__(self) -> None:
        for name in ("text", "label", "id", "split", "gold"):
            value = getattr(self, name)
            cleaned = value.strip() if isinstance(value, str) else None
            object.__setattr__(self, name, cleaned or None)
        if not self.text:
            raise InvalidInput("Name the column that holds the text.", details={"field": "text"})
        mapped = [c for c in (self.text, self.label, self.id, self.split, self.gold) if c]
        if len(mapped) != len(set(mapped)):
            raise InvalidInput("Each mapped column must be different.", details={"mapping": mapped})

    def columns(self) -> list[str]:
        return [c for c in (self.text, self.label, self.id, self.split, self.gold) if c]

    def roles(self) -> dict[str, str]:
        """role -> column, for the columns this mapping names."""
        named = {"text": self.text, "label": self.label, "id": self.id, "split": self.split,
                 "gold": self.gold}
        return {role: column for role, column in named.items() if column}


@dataclass(frozen=True)
class ImportOptions:
    format: ImportFormat
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    dev_fraction: float = 0.0
    seed: int = 0
    max_text_chars: int = 20_000
    batch_size: int = 2_000
    max_listed_errors: int = 100
    on_existing: OnExisting = "keep"
    """Rows whose text is already in the project: ``keep`` their labels (and report any label
    the file gives them), or ``apply`` the file's label as a seed annotation by the importer."""
    label_separator: str | None = None
    """Multi-label projects only: what separates label names in one label value. ``None`` (or
    ``""``): :data:`LABEL_SEPARATOR` in CSV/TSV, and no splitting of JSONL strings (each is one
    name). 1-3 characters, not whitespace only, and never the file's own delimiter."""

    def __post_init__(self) -> None:
        if self.label_separator == "":
            object.__setattr__(self, "label_separator", None)
        if self.label_separator is not None:
            self._check_separator(self.label_separator)
        if self.on_existing not in ON_EXISTING:
            raise InvalidInput(
                f"on_existing must be one of {', '.join(ON_EXISTING)}, not {self.on_existing!r}.",
                details={"field": "on_existing"},
            )
        if self.format not in FORMATS:
            raise InvalidInput(
                f"Unknown format {self.format!r}; use one of {', '.join(FORMATS)}.",
                details={"field": "format"},
            )
        if not 0.0 <= self.dev_fraction < 1.0:
            raise InvalidInput(
                "The dev fraction must be at least 0 and below 1 (e.g. 0.2 keeps 20% of "
                "the labelled rows of each label for evaluation).",
                details={"field": "dev_fraction"},
            )
        if self.max_text_chars < 1:
            raise InvalidInput("max_text_chars must be positive.")
        if not 1 <= self.batch_size <= 10_000:
            raise InvalidInput("batch_size must be between 1 and 10000.")
        if self.max_listed_errors < 1:
            raise InvalidInput("max_listed_errors must be positive.")

    def _check_separator(self, separator: str) -> None:
        check_label_separator(separator, self.format)

    def separator(self) -> str | None:
        """The separator that splits a label value, or ``None``: JSONL strings are one name."""
        if self.label_separator is not None:
            return self.label_separator
        return None if self.format == "jsonl" else LABEL_SEPARATOR


@dataclass(frozen=True)
class RowError:
    line: int
    message: str
    column: str | None = None


@dataclass
class ImportReport:
    """What an import did; shown on the report page and returned by the API."""

    rows: int = 0
    created: int = 0
    duplicates_in_file: int = 0
    duplicates_in_project: int = 0
    annotations: int = 0
    carved_dev: int = 0
    by_split: dict[str, int] = field(
        default_factory=lambda: {SPLIT_POOL: 0, SPLIT_DEV: 0, SPLIT_TEST: 0}
    )
    per_label: dict[str, int] = field(default_factory=dict)
    existing_labelled: int = 0
    """Rows already in the project for which the file gives a label."""
    existing_label_differs: int = 0
    """... of which the label (multi-label: the set) is not one the item already carries."""
    existing_label_differs_lines: list[int] = field(default_factory=list)
    """Their line numbers (the first :data:`MAX_LISTED_LINES`)."""
    existing_labels_applied: int = 0
    """Seed annotations added to existing rows (``on_existing="apply"``)."""
    none_of_these: int = 0
    """Multi-label: new rows labelled with the empty set ("none of these")."""
    gold: int = 0
    """Rows made gold items (new or already in the project) from the gold column."""
    on_existing: str = "keep"
    batch_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_format(
    filename: str | None, content_type: str | None, requested: str | None
) -> ImportFormat:
    """The explicit choice, else the file extension, else the content type."""
    if requested and requested != "auto":
        if requested not in FORMATS:
            raise InvalidInput(f"Unknown format {requested!r}; use one of {', '.join(FORMATS)}.")
        return requested  # type: ignore[return-value]
    if filename:
        lowered = filename.lower()
        for extension, fmt in EXTENSIONS.items():
            if lowered.endswith(extension):
                return fmt
    if content_type:
        by_type = CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if by_type:
            return by_type
    raise InvalidInput(
        "Cannot tell the file format; name the file .csv, .tsv or .jsonl, or choose the format.",
        details={"field": "format"},
    )


def _separator_problem(separator: str, fmt: str) -> str | None:
    if not 1 <= len(separator) <= MAX_SEPARATOR_CHARS:
        return f"must be 1 to {MAX_SEPARATOR_CHARS} characters long"
    if not separator.strip() or "\n" in separator or "\r" in separator:
        return "must contain a visible character and no line break"
    if fmt in DELIMITERS and DELIMITERS[fmt] in separator:  # type: ignore[index]
        return f"cannot contain the {fmt.upper()} delimiter {DELIMITERS[fmt]!r}"  # type: ignore[index]
    return None


def check_label_separator(separator: str, fmt: str) -> None:
    """The rule for a multi-label label separator, on import and export alike: 1 to
    :data:`MAX_SEPARATOR_CHARS` characters, a visible one among them, no line break, and never
    the file's own delimiter (``fmt``: csv or tsv; jsonl has none)."""
    problem = _separator_problem(separator, fmt)
    if problem:
        raise InvalidInput(
            f"The label separator {separator!r} {problem} (e.g. {LABEL_SEPARATOR!r} or ';').",
            details={"field": "label_separator"},
        )


SEPARATOR_CANDIDATES = ("|", ";", "/", "+", "#", "~", "^", "||", ";;", "|;|", "#|#")
"""What :func:`check_label_cell_names` proposes, in order, when names clash with a separator."""


def proposed_separator(names: Iterable[str], fmt: str = "csv") -> str | None:
    """A separator that no label name contains and the importer accepts for ``fmt``; ``None``
    when every candidate clashes."""
    listed = list(names)
    for candidate in SEPARATOR_CANDIDATES:
        if _separator_problem(candidate, fmt) is None and not any(
            candidate in name for name in listed
        ):
            return candidate
    return None


def label_cell(names: Sequence[str], separator: str = LABEL_SEPARATOR) -> str:
    """A multi-label set as the CSV/TSV label cell this importer reads back."""
    return separator.join(names) if names else NONE_OF_THESE


def check_label_cell_names(names: Iterable[str], separator: str = LABEL_SEPARATOR,
                           fmt: str = "csv") -> None:
    """Refuse label names that a joined label cell could not tell apart: a name containing the
    separator, or the name ``[]`` (the cell of the empty set). When only the separator is in
    the way, the message names one that works (:func:`proposed_separator`); exporting and
    importing with it gives the same sets back."""
    listed = list(names)
    clashing = [name for name in listed if separator in name or name == NONE_OF_THESE]
    if not clashing:
        return
    what = (f"{'Label' if len(clashing) == 1 else 'Labels'} "
            f"{', '.join(repr(n) for n in clashing[:5])} cannot be written in a CSV label "
            f"cell, where {separator!r} separates label names and {NONE_OF_THESE} means none of "
            "these.")
    details: dict[str, Any] = {"labels": clashing, "field": "label_separator"}
    proposal = (None if NONE_OF_THESE in clashing
                else proposed_separator(listed, fmt))
    if proposal is not None:
        details["proposed_separator"] = proposal
        raise InvalidInput(
            f"{what} Export with the label separator {proposal!r} instead (and import the file "
            f"with the same label separator), export as JSONL (labels as a list), or rename "
            "the label.", details=details)
    raise InvalidInput(f"{what} Export as JSONL (labels as a list), or rename the label.",
                       details=details)


def normalise_text(text: str) -> str:
    """The form used for de-duplication: NFC, whitespace runs collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- reading


@dataclass
class _Record:
    """One source row: its first physical line, fields by column, and problems found so far."""

    line: int
    fields: dict[str, Any]
    errors: list[RowError] = field(default_factory=list)


class _Lines:
    """Decode a binary file line by line as strict UTF-8, remembering bad lines by number.

    Undecodable lines are still yielded (with replacement characters) so a CSV reader keeps its
    place; their errors are collected in :attr:`pending` for the record that consumes them.
    """

    def __init__(self, binary: IO[bytes]) -> None:
        self._binary = binary
        self.line = 0
        self.pending: list[RowError] = []

    def __iter__(self) -> Iterator[str]:
        for raw in self._binary:
            self.line += 1
            if self.line == 1:
                raw = _strip_bom(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.pending.append(RowError(
                    self.line,
                    f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start + 1});"
                    " save the file as UTF-8",
                ))
                text = raw.decode("utf-8", errors="replace")
            if "\x00" in text:
                self.pending.append(RowError(
                    self.line, "contains NUL bytes; is the file UTF-16? Save it as UTF-8"
                ))
                text = text.replace("\x00", "")
            yield text

    def take_errors(self) -> list[RowError]:
        errors, self.pending = self.pending, []
        return errors


def _strip_bom(first_line: bytes) -> bytes:
    for bom, encoding in _BOMS:
        if first_line.startswith(bom):
            raise ImportRejected(
                f"The file is encoded as {encoding}; Tapestry reads UTF-8 only. Re-save it as "
                "UTF-8 (in Excel: 'CSV UTF-8'; in an editor: encoding UTF-8).",
                details={"errors": [asdict(RowError(1, f"{encoding} byte order mark"))],
                         "error_count": 1},
            )
    return first_line.removeprefix(_UTF8_BOM)


def _read_records(binary: IO[bytes], fmt: ImportFormat, mapping: ColumnMapping
                  ) -> Iterator[_Record]:
    binary.seek(0)
    lines = _Lines(binary)
    if fmt == "jsonl":
        yield from _jsonl_records(lines)
    else:
        yield from _delimited_records(lines, fmt, mapping)


def _jsonl_records(lines: _Lines) -> Iterator[_Record]:
    for text in lines:
        errors = lines.take_errors()
        if not text.strip():
            if errors:
                yield _Record(lines.line, {}, errors)
            continue
        if errors:
            yield _Record(lines.line, {}, errors)
            continue
        try:
            value = parse_json(text)
        except JsonInputError as exc:
            yield _Record(lines.line, {}, [RowError(lines.line, exc.message)])
            continue
        if not isinstance(value, dict):
            yield _Record(lines.line, {}, [RowError(lines.line, "must be a JSON object")])
            continue
        yield _Record(lines.line, value)


def _delimited_records(lines: _Lines, fmt: ImportFormat, mapping: ColumnMapping
                       ) -> Iterator[_Record]:
    if fmt == "csv":
        reader = csv.reader(iter(lines), delimiter=",", quoting=csv.QUOTE_MINIMAL, strict=True)
    else:  # TSV has no quoting: a field is everything between tabs
        reader = csv.reader(iter(lines), delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _structure_error(lines.line, f"has a malformed header ({exc})") from None
    header_errors = lines.take_errors()
    if header_errors:
        raise _rejected(header_errors, len(header_errors))
    if header is None or not any(h.strip() for h in header):
        raise _structure_error(1, "is empty; the first line must name the columns")
    names = [h.strip() for h in header]
    _check_header(names, mapping)
    previous_end = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _structure_error(
                previous_end + 1,
                f"cannot be parsed ({exc}); check for an unclosed quote",
            ) from None
        start = previous_end + 1
        previous_end = reader.line_num
        errors = lines.take_errors()
        if not errors and (not row or all(not cell.strip() for cell in row)):
            continue  # blank line
        if len(row) != len(names):
            errors.append(RowError(start, f"has {len(row)} fields; the header has {len(names)}"))
            yield _Record(start, {}, errors)
            continue
        yield _Record(start, dict(zip(names, row, strict=True)), errors)


def _check_header(names: list[str], mapping: ColumnMapping) -> None:
    """Every column the mapping names must exist: a named column is never swapped for another."""
    duplicated = sorted(name for name, n in Counter(names).items() if n > 1 and name)
    if duplicated:
        raise _structure_error(1, f"names columns more than once: {', '.join(duplicated)}")
    missing = {
        role: column for role, column in mapping.roles().items() if column not in names
    }
    if missing:
        proposed = propose_mapping(names)
        hints = [
            f"{role} column {proposed[role]!r}?" for role in missing
            if proposed.get(role) and proposed[role] not in mapping.columns()
        ]
        hint = f"; did you mean the {' / '.join(hints)}" if hints else ""
        raise _structure_error(
            1,
            f"has no column {', '.join(repr(m) for m in missing.values())} (columns found: "
            f"{', '.join(repr(n) for n in names[:20])}){hint}",
        )


def propose_mapping(columns: list[str]) -> dict[str, str]:
    """Which of ``columns`` look like the text, label, id and split columns (a proposal only).

    Shown in previews and error messages; an import uses exactly the columns it was given. Id
    columns are ``id`` or names ending in ``_id``/``-id`` (``msg_id``, ``ticket-id``), besides
    the usual names.
    """
    proposal: dict[str, str] = {}
    taken: set[str] = set()
    for role in ("text", "label", "id", "split"):
        for column in columns:
            if column in taken:
                continue
            if _looks_like(role, column.strip().lower()):
                proposal[role] = column
                taken.add(column)
                break
    return proposal


def _looks_like(role: str, name: str) -> bool:
    if name in COLUMN_CANDIDATES[role]:
        return True
    if role == "id":
        stem = _ID_SUFFIX.sub("", name)
        return stem != name and stem not in COLUMN_CANDIDATES["label"]
    return False


def _json_type(value: Any) -> str:
    """A JSON value's kind, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def _structure_error(line: int, message: str) -> ImportRejected:
    return _rejected([RowError(line, message)], 1)


def _rejected(errors: list[RowError], total: int, rows: int | None = None) -> ImportRejected:
    details: dict[str, Any] = {
        "errors": [asdict(e) for e in errors],
        "error_count": total,
    }
    if rows is not None:
        details["rows"] = rows
    first = errors[0]
    summary = (
        f"Line {first.line} {first.message}."
        if total == 1
        else f"{total} problems found (first: line {first.line} {first.message})."
    )
    return ImportRejected(f"{summary} Nothing was imported.", details=details)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Row:
    line: int
    text: str
    content_hash: str
    label_id: int | None
    external_id: str | None
    split: str
    meta: dict[str, Any]
    gold_label_id: int | None = None
    """The answer when the row is a gold item (then it gets no seed annotation)."""
    label_ids: tuple[int, ...] | None = None
    """Multi-label projects: the row's label set in label order (``()``: none of these;
    ``None``: unlabelled). ``label_id`` is then always ``None``."""
    gold_label_ids: tuple[int, ...] | None = None
    """Multi-label projects: the gold set when the row is a gold item (``()``: none of these)."""

    @property
    def labelled(self) -> bool:
        return self.label_id is not None or self.label_ids is not None

    @property
    def gold(self) -> bool:
        return self.gold_label_id is not None or self.gold_label_ids is not None


class _Validator:
    def __init__(self, options: ImportOptions, labels: dict[str, int],
                 *, multi_label: bool = False) -> None:
        self.options = options
        self.mapping = options.mapping
        self.labels = labels
        self.multi_label = multi_label
        self.separator = options.separator()
        self._order = {label_id: n for n, label_id in enumerate(labels.values())}
        self._mapped = frozenset(options.mapping.columns())

    def row(self, record: _Record) -> tuple[_Row | None, list[RowError]]:
        errors = list(record.errors)
        if errors:
            return None, errors
        fields, line = record.fields, record.line
        text = self._text(fields, line, errors)
        label_id: int | None = None
        label_ids: tuple[int, ...] | None = None
        gold_label_id: int | None = None
        gold_label_ids: tuple[int, ...] | None = None
        if self.multi_label:
            label_ids = self._label_set(fields, line, errors, self.mapping.label)
            gold_label_ids = self._label_set(fields, line, errors, self.mapping.gold)
        else:
            label_id = self._label(fields, line, errors)
            gold_label_id = self._label(fields, line, errors, self.mapping.gold)
        external_id = self._external_id(fields, line, errors)
        split = self._split(fields, line, errors)
        if (split in (SPLIT_DEV, SPLIT_TEST) and label_id is None and label_ids is None
                and not errors):
            need = ("a label set ([] for none of these)" if self.multi_label else "one")
            errors.append(RowError(line, f"is in the {split} split but has no label; evaluation "
                                         f"rows need {need}", self.mapping.label))
        if (gold_label_id is not None or gold_label_ids is not None) and split != SPLIT_POOL \
                and not errors:
            errors.append(RowError(line, f"is gold but in the {split} split; only pool rows can "
                                         "be gold", self.mapping.gold))
        if errors or text is None:
            return None, errors
        meta = {
            key: value for key, value in fields.items()
            if key not in self._mapped and value not in ("", None)
        }
        return _Row(line, text, content_hash(text), label_id, external_id, split, meta,
                    gold_label_id, label_ids, gold_label_ids), []

    def _text(self, fields: dict[str, Any], line: int, errors: list[RowError]) -> str | None:
        column = self.mapping.text
        value = fields.get(column)
        if value is None and column not in fields:
            errors.append(RowError(line, f"has no {column!r} field", column))
            return None
        if not isinstance(value, str):
            errors.append(RowError(line, f"{column!r} must be a string", column))
            return None
        text = value.replace("\r\n", "\n").strip()
        if not text:
            errors.append(RowError(line, "has an empty text", column))
            return None
        if len(text) > self.options.max_text_chars:
            errors.append(RowError(
                line,
                f"has a text of {len(text)} characters; the limit is {self.options.max_text_chars}",
                column,
            ))
            return None
        return text

    def _label(self, fields: dict[str, Any], line: int, errors: list[RowError],
               column: str | None | bool = False) -> int | None:
        """The label id named in ``column`` (default: the label column)."""
        if column is False:
            column = self.mapping.label
        if not isinstance(column, str):
            return None
        value = fields.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, list):
            errors.append(RowError(line, f"has a list of labels in {column!r}, but this project "
                                         "is single-label: give one label name", column))
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            errors.append(RowError(line, f"{column!r} must be a string", column))
            return None
        name = str(value).strip()
        label_id = self.labels.get(name)
        if label_id is None:
            errors.append(RowError(line, f"has label {name!r}, which is not in the label set "
                                         f"({self._known()})", column))
        return label_id

    def _known(self) -> str:
        known = ", ".join(repr(n) for n in list(self.labels)[:12])
        return f"known labels: {known}" if self.labels else "the project has no labels yet"

    def _label_set(self, fields: dict[str, Any], line: int, errors: list[RowError],
                   column: str | None) -> tuple[int, ...] | None:
        """A multi-label row's set in ``column`` (the label or the gold column; ``()``: none of
        these), or ``None`` when it is empty (unlabelled, or not gold).

        A JSON list gives the names; a string is split by the separator (JSONL strings only when
        the lead chose one: a label name may contain any character), the CSV token
        :data:`NONE_OF_THESE` is the empty set. Names are deduplicated and put in label order.
        """
        if column is None:
            return None
        value = fields.get(column)
        if value is None:
            return None
        if isinstance(value, list):
            names = self._listed_names(value, line, errors, column)
        elif isinstance(value, str | int) and not isinstance(value, bool):
            names = self._split_names(str(value).strip(), line, errors, column)
        else:
            errors.append(RowError(line, f"{column!r} must be a list of label names", column))
            return None
        if names is None:
            return None
        unknown = [name for name in dict.fromkeys(names) if name not in self.labels]
        if unknown:
            listed = ", ".join(repr(name) for name in unknown[:10])
            which = (f"label {listed}, which is" if len(unknown) == 1
                     else f"labels {listed}, which are")
            hint = (f"; for none of these give an empty list {NONE_OF_THESE}"
                    if NONE_OF_THESE in unknown else "")
            errors.append(RowError(line, f"has {which} not in the label set ({self._known()})"
                                         f"{hint}", column))
            return None
        ids = {self.labels[name] for name in names}
        return tuple(sorted(ids, key=self._order.__getitem__))

    def _listed_names(self, value: list[Any], line: int, errors: list[RowError], column: str
                      ) -> list[str] | None:
        names = []
        for element in value:
            if isinstance(element, bool) or not isinstance(element, str | int):
                errors.append(RowError(line, f"{column!r} must be a list of label names "
                                             f"(found {_json_type(element)} in it)", column))
                return None
            name = str(element).strip()
            if not name:
                errors.append(RowError(line, f"has an empty label name in {column!r}", column))
                return None
            names.append(name)
        return names

    def _split_names(self, text: str, line: int, errors: list[RowError], column: str
                     ) -> list[str] | None:
        if not text:
            return None
        if self.separator is None:
            return [text]
        if text == NONE_OF_THESE:
            return []
        names = [part.strip() for part in text.split(self.separator)]
        if not all(names):
            errors.append(RowError(
                line, f"has an empty label name in {text[:200]!r} (label names are separated by "
                      f"{self.separator!r}; write {NONE_OF_THESE} for none of these)", column))
            return None
        return names

    def _external_id(self, fields: dict[str, Any], line: int, errors: list[RowError]
                     ) -> str | None:
        column = self.mapping.id
        if column is None:
            return None
        value = fields.get(column)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            errors.append(RowError(line, f"{column!r} must be a string or an integer", column))
            return None
        external = str(value).strip()
        if len(external) > MAX_EXTERNAL_ID:
            errors.append(RowError(line, f"has an id longer than {MAX_EXTERNAL_ID} characters",
                                   column))
            return None
        return external or None

    def _split(self, fields: dict[str, Any], line: int, errors: list[RowError]) -> str:
        column = self.mapping.split
        if column is None:
            return SPLIT_POOL
        value = fields.get(column)
        raw = value.strip().lower() if isinstance(value, str) else "" if value is None else None
        if raw is None or raw not in SPLIT_ALIASES:
            errors.append(RowError(
                line, f"has split {value!r}; use pool/train, dev/validation or test", column
            ))
            return SPLIT_POOL
        return SPLIT_ALIASES[raw] or SPLIT_POOL


# --------------------------------------------------------------------------- the import


def import_items(
    db: Session,
    *,
    project: Project,
    user: User,
    source: IO[bytes],
    options: ImportOptions,
) -> ImportReport:
    """Validate the whole file, then insert it; raises :class:`ImportRejected` on any bad row.

    ``source`` must be seekable (an uploaded file spooled to disk is). Only ``flush`` happens here;
    the caller's transaction makes it all-or-nothing. A multi-label project reads label sets
    (see the module's docstring), and gold sets from a gold column.
    """
    multi_label = is_multi_label(project)
    if not multi_label and options.label_separator is not None:
        raise InvalidInput(
            "A label separator applies to multi-label projects only; this project takes one "
            "label per row.", details={"field": "label_separator"})
    labels = {name: label_id for label_id, name in db.execute(
        select(Label.id, Label.name).where(Label.project_id == project.id)
        .order_by(Label.position)
    )}
    validator = _Validator(options, labels, multi_label=multi_label)
    _validate_all(source, options, validator)

    report = ImportReport(batch_id=f"import-{uuid.uuid4().hex}", on_existing=options.on_existing)
    label_names = {label_id: name for name, label_id in labels.items()}
    first_new_id = (db.scalar(select(func.max(Item.id))) or 0) + 1
    batch: list[_Row] = []
    with _fresh_plans(db), fulltext.bulk_insert(db):
        for record in _read_records(source, options.format, options.mapping):
            row, errors = validator.row(record)
            if errors or row is None:  # the file changed between passes
                raise _rejected(errors or [RowError(record.line, "changed during the import")], 1)
            report.rows += 1
            batch.append(row)
            if len(batch) >= options.batch_size:
                _insert_batch(db, project, user, batch, report, first_new_id, label_names)
                batch = []
        if batch:
            _insert_batch(db, project, user, batch, report, first_new_id, label_names)
    if options.dev_fraction > 0:
        if multi_label:
            _carve_dev_set_by_first_label(db, project, report, options)
        else:
            _carve_dev_set(db, project, report, options)
    if report.annotations or report.carved_dev or report.existing_labels_applied:
        db.execute(update(Project).where(Project.id == project.id)
                   .values(data_version=Project.data_version + 1))
    db.flush()
    db.expire(project, ["data_version"])
    if report.rows:
        from app.domain.live_head import request_live_refit

        request_live_refit(db, project.id)  # embeds the new items, then zero-shot or head queue
    return report


@contextmanager
def _fresh_plans(db: Session) -> Iterator[None]:
    """Plan each statement of the import for the table as it is now (Postgres).

    The driver prepares a statement it has run five times, and Postgres then keeps one generic
    plan for it. The duplicate lookup runs once a batch inside one transaction, while ``items``
    grows from empty: the plan made for a near-empty table scans the table, so each lookup
    compared its 2,000 hashes with every row so far (111 s of a 100,000-row import, 0.4 s of
    it in the first quarter). Custom plans see the table's current size and use the
    ``(project_id, content_hash)`` index: 1.8 s for all 50 lookups.
    """
    if db.get_bind().dialect.name != "postgresql":
        yield
        return
    db.execute(sql("SET LOCAL plan_cache_mode = force_custom_plan"))
    yield
    db.execute(sql("SET LOCAL plan_cache_mode TO DEFAULT"))


def _validate_all(source: IO[bytes], options: ImportOptions, validator: _Validator) -> None:
    listed: list[RowError] = []
    total = 0
    rows = 0
    for record in _read_records(source, options.format, options.mapping):
        rows += 1
        _, errors = validator.row(record)
        total += len(errors)
        room = options.max_listed_errors - len(listed)
        if room > 0:
            listed.extend(errors[:room])
    if total:
        raise _rejected(listed, total, rows)
    if rows == 0:
        raise ImportRejected("The file has no data rows. Nothing was imported.",
                             details={"errors": [], "error_count": 0, "rows": 0})


def _insert_batch(
    db: Session,
    project: Project,
    user: User,
    batch: list[_Row],
    report: ImportReport,
    first_new_id: int,
    label_names: dict[int, str],
) -> None:
    unique: dict[str, _Row] = {}
    for row in batch:
        if row.content_hash in unique:
            report.duplicates_in_file += 1
        else:
            unique[row.content_hash] = row
    existing = db.execute(
        select(Item.content_hash, Item.id).where(
            Item.project_id == project.id, Item.content_hash.in_(list(unique))
        )
    ).all()
    now = datetime.now(UTC)
    already: dict[int, _Row] = {}
    gold_rows: dict[int, _Row] = {}
    for hash_value, item_id in existing:
        row = unique.pop(hash_value)
        if item_id >= first_new_id:
            report.duplicates_in_file += 1  # inserted by an earlier batch of this file
        else:
            report.duplicates_in_project += 1
            if row.gold:
                gold_rows[item_id] = row
            elif row.labelled:
                already[item_id] = row
    if already:
        _existing_labels(db, project, user, already, report, now)
    if not unique:
        _insert_gold(db, project, user, gold_rows, report, now)
        return
    inserted = db.execute(
        insert(ITEMS).returning(ITEMS.c.id, ITEMS.c.content_hash),
        [
            {
                "project_id": project.id,
                "external_id": row.external_id,
                "text": row.text,
                "content_hash": row.content_hash,
                "split": row.split,
                "meta": row.meta,
                "created_at": now,
            }
            for row in unique.values()
        ],
    ).all()
    ids = {hash_value: item_id for item_id, hash_value in inserted}
    report.created += len(ids)
    annotations = []
    sets: dict[int, tuple[int, ...]] = {}
    for row in unique.values():
        report.by_split[row.split] = report.by_split.get(row.split, 0) + 1
        if row.gold:
            gold_rows[ids[row.content_hash]] = row
            continue
        if not row.labelled:
            continue
        item_id = ids[row.content_hash]
        given: tuple[int, ...] = (row.label_id,) if row.label_id is not None else ()
        if row.label_ids is not None:
            given = sets[item_id] = row.label_ids
            if not given:
                report.none_of_these += 1
        for label_id in given:
            name = label_names[label_id]
            report.per_label[name] = report.per_label.get(name, 0) + 1
        annotations.append({
            "project_id": project.id,
            "item_id": item_id,
            "annotator_id": user.id,
            "label_id": row.label_id,
            "source": SEED_SOURCE,
            "deleted": False,
            "batch_id": report.batch_id,
            "guideline_version": project.guidelines_version,
            "created_at": now,
        })
    if sets:
        _insert_set_annotations(db, annotations, sets)
    elif annotations:
        db.execute(insert(ANNOTATIONS), annotations)
    report.annotations += len(annotations)
    _insert_gold(db, project, user, gold_rows, report, now)


def _insert_set_annotations(db: Session, annotations: list[dict[str, Any]],
                            sets: dict[int, tuple[int, ...]]) -> None:
    """Multi-label seed annotations (one per new item) and their label rows, both in bulk."""
    created = db.execute(
        insert(ANNOTATIONS).returning(ANNOTATIONS.c.id, ANNOTATIONS.c.item_id), annotations
    ).all()
    members = [
        {"annotation_id": annotation_id, "label_id": label_id}
        for annotation_id, item_id in created for label_id in sets[item_id]
    ]
    if members:
        db.execute(insert(ANNOTATION_LABELS), members)


def _insert_gold(
    db: Session,
    project: Project,
    user: User,
    rows: dict[int, _Row],
    report: ImportReport,
    now: datetime,
) -> None:
    """Make these items (item id -> row) gold with the row's answer; an existing answer changes.

    An item already in the project must be a pool item (new rows were checked while validating).
    """
    if not rows:
        return
    not_pool = db.execute(
        select(Item.id).where(Item.id.in_(list(rows)), Item.split != SPLIT_POOL)
    ).scalars().all()
    if not_pool:
        errors = [RowError(rows[i].line, "is gold but already in the project outside the pool; "
                                         "only pool items can be gold", None)
                  for i in sorted(not_pool)][:20]
        raise _rejected(errors, len(not_pool))
    db.execute(delete(GoldItemLabel).where(GoldItemLabel.gold_item_id.in_(
        select(GoldItem.id).where(GoldItem.item_id.in_(list(rows))))))
    db.execute(delete(GoldItem).where(GoldItem.item_id.in_(list(rows))))
    created = db.execute(insert(GOLD_ITEMS).returning(GOLD_ITEMS.c.id, GOLD_ITEMS.c.item_id), [
        {"project_id": project.id, "item_id": item_id, "label_id": row.gold_label_id,
         "created_by_id": user.id, "created_at": now}
        for item_id, row in rows.items()
    ]).all()
    members = [
        {"gold_item_id": gold_id, "label_id": label_id}
        for gold_id, item_id in created for label_id in rows[item_id].gold_label_ids or ()
    ]
    if members:
        db.execute(insert(GOLD_ITEM_LABELS), members)
    report.gold += len(rows)


def _existing_labels(
    db: Session,
    project: Project,
    user: User,
    rows: dict[int, _Row],
    report: ImportReport,
    now: datetime,
) -> None:
    """Rows already in the project that the file labels: report them; apply the label if asked.

    A label "differs" when none of the item's live annotations carries it; in a multi-label
    project a set differs when no live annotation has exactly that set. Applying adds a seed
    annotation by the importer and supersedes the importer's own earlier live label on the item;
    other annotators' labels stay as they are.
    """
    live_rows = db.execute(
        select(Annotation.id, Annotation.item_id, Annotation.label_id, Annotation.annotator_id)
        .where(
            Annotation.project_id == project.id,
            Annotation.item_id.in_(list(rows)),
            live(),
        )
    ).all()
    set_of = label_sets(db, [a for a, _item, label_id, _by in live_rows if label_id is None])
    answers_of: dict[int, set[int | frozenset[int]]] = {}
    mine: dict[int, list[int]] = {}
    for annotation_id, item_id, label_id, annotator_id in live_rows:
        answer = label_id if label_id is not None else frozenset(set_of[annotation_id])
        answers_of.setdefault(item_id, set()).add(answer)
        if annotator_id == user.id:
            mine.setdefault(item_id, []).append(annotation_id)
    report.existing_labelled += len(rows)
    differing = sorted(
        (row.line, item_id) for item_id, row in rows.items()
        if _answer(row) not in answers_of.get(item_id, set())
    )
    report.existing_label_differs += len(differing)
    room = MAX_LISTED_LINES - len(report.existing_label_differs_lines)
    report.existing_label_differs_lines.extend(line for line, _ in differing[:max(room, 0)])
    if report.on_existing != "apply" or not differing:
        return
    for _line, item_id in differing:
        row = rows[item_id]
        created = db.execute(
            insert(ANNOTATIONS).returning(ANNOTATIONS.c.id),
            {
                "project_id": project.id,
                "item_id": item_id,
                "annotator_id": user.id,
                "label_id": row.label_id,
                "source": SEED_SOURCE,
                "deleted": False,
                # Not this import's batch: the dev-set carve-out takes new rows only.
                "batch_id": f"{report.batch_id}:existing",
                "guideline_version": project.guidelines_version,
                "created_at": now,
            },
        ).scalar_one()
        if row.label_ids is not None:
            store_label_set(db, created, row.label_ids)
        previous = mine.get(item_id, [])
        if previous:
            db.execute(
                update(Annotation).where(Annotation.id.in_(previous))
                .values(superseded_by_id=created)
                .execution_options(synchronize_session=False)
            )
    report.existing_labels_applied += len(differing)


def _answer(row: _Row) -> int | frozenset[int] | None:
    """What a row says, comparable with an annotation's: a label id, or a multi-label set."""
    return frozenset(row.label_ids) if row.label_ids is not None else row.label_id


def _carve_dev_set(
    db: Session,
    project: Project,
    report: ImportReport,
    options: ImportOptions,
) -> None:
    """Move ``round(fraction * n)`` of this import's labelled pool rows of each label to dev."""
    pivot = hashlib.sha256(f"tapestry.dev-split:{options.seed}".encode()).hexdigest()
    candidates = (
        select(Annotation.label_id, func.count())
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Annotation.batch_id == report.batch_id,
               Item.split == SPLIT_POOL)
        .group_by(Annotation.label_id)
        .order_by(Annotation.label_id)
    )
    for label_id, count in db.execute(candidates).all():
        wanted = min(count, round(options.dev_fraction * count))
        moved = 0
        # Rows at or after the pivot in hash order first, then wrap around: a seeded, uniform pick.
        for after_pivot in (True, False):
            if moved >= wanted:
                break
            condition = Item.content_hash >= pivot if after_pivot else Item.content_hash < pivot
            chosen = (
                select(Item.id)
                .join(Annotation, Annotation.item_id == Item.id)
                .where(
                    Annotation.project_id == project.id,
                    Annotation.batch_id == report.batch_id,
                    Annotation.label_id == label_id,
                    Item.split == SPLIT_POOL,
                    condition,
                )
                .order_by(Item.content_hash)
                .limit(wanted - moved)
            )
            result = db.execute(
                update(Item).where(Item.id.in_(chosen)).values(split=SPLIT_DEV)
                .execution_options(synchronize_session=False)
            )
            moved += result.rowcount or 0  # type: ignore[attr-defined]
        report.carved_dev += moved
        report.by_split[SPLIT_POOL] -= moved
        report.by_split[SPLIT_DEV] += moved


def _carve_dev_set_by_first_label(
    db: Session,
    project: Project,
    report: ImportReport,
    options: ImportOptions,
) -> None:
    """Multi-label: move ``round(fraction * n)`` rows of each stratum to dev, a stratum being the
    set's first label in the project's label order, or the empty set.

    Stratifying on whole sets would make most strata a single row (``round(0.2 * 1) == 0``: no
    dev row at all for a rare combination) and on every label would count a row several times;
    the first label keeps each common label, and "none of these", in dev in proportion, exactly
    and deterministically. The pick is the same as :func:`_carve_dev_set`'s: by content hash from
    the seed's pivot on, wrapping around.
    """
    pivot = hashlib.sha256(f"tapestry.dev-split:{options.seed}".encode()).hexdigest()
    rows = db.execute(
        select(Annotation.id, Item.id, Item.content_hash)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Annotation.batch_id == report.batch_id,
               Item.split == SPLIT_POOL)
    ).tuples().all()
    sets = label_sets(db, [annotation_id for annotation_id, _item, _hash in rows])
    strata: dict[int | None, list[tuple[str, int]]] = {}
    for annotation_id, item_id, hash_value in rows:
        first = sets[annotation_id][0] if sets[annotation_id] else None
        strata.setdefault(first, []).append((hash_value, item_id))
    chosen: list[int] = []
    for members in strata.values():
        members.sort()
        rotated = [m for m in members if m[0] >= pivot] + [m for m in members if m[0] < pivot]
        wanted = min(len(members), round(options.dev_fraction * len(members)))
        chosen.extend(item_id for _hash, item_id in rotated[:wanted])
    for start in range(0, len(chosen), 5_000):
        db.execute(
            update(Item).where(Item.id.in_(chosen[start:start + 5_000])).values(split=SPLIT_DEV)
            .execution_options(synchronize_session=False)
        )
    report.carved_dev += len(chosen)
    report.by_split[SPLIT_POOL] -= len(chosen)
    report.by_split[SPLIT_DEV] += len(chosen)
