"""Import validation, de-duplication, splits and the all-or-nothing rule, on the domain function."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.orm import Session

from app.db import fulltext
from app.db.migrate import upgrade
from app.db.models import SPLIT_DEV, SPLIT_POOL, SPLIT_TEST, Annotation, Item, Project
from app.db.session import make_engine
from app.domain.imports import (
    ColumnMapping,
    ImportOptions,
    content_hash,
    detect_format,
    import_items,
)
from app.errors import ImportRejected, InvalidInput
from tests.factories import make_items, make_project, make_user

LABELS = ("billing", "bug", "feature")


@pytest.fixture()
def project(db: Session) -> Project:
    return make_project(db, labels=LABELS)


def run(db: Session, project: Project, data: str | bytes, fmt: str = "csv", **kw: object):
    mapping = kw.pop("mapping", ColumnMapping(text="text", label="label"))
    options = ImportOptions(format=fmt, mapping=mapping, **kw)  # type: ignore[arg-type]
    raw = data.encode("utf-8") if isinstance(data, str) else data
    user = make_user(db)
    return import_items(db, project=project, user=user, source=io.BytesIO(raw), options=options)


def item_count(db: Session, project: Project) -> int:
    return db.scalar(select(func.count()).select_from(Item).where(Item.project_id == project.id))


def rejected(db: Session, project: Project, data: str | bytes, **kw: object) -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        run(db, project, data, **kw)
    assert item_count(db, project) == 0, "a rejected import must not leave rows behind"
    return caught.value


def test_csv_rows_become_items_and_labelled_rows_seed_annotations(
    db: Session, project: Project
) -> None:
    data = (
        "id,text,label,source\n1,Refund please,billing,mail\n2,App crashes,bug,\n"
        "3,Dark mode?,,chat\n"
    )
    report = run(db, project, data, mapping=ColumnMapping(text="text", label="label", id="id"))
    assert (report.rows, report.created, report.annotations) == (3, 3, 2)
    assert report.per_label == {"billing": 1, "bug": 1}
    rows = db.scalars(select(Item).where(Item.project_id == project.id))
    items = {i.external_id: i for i in rows}
    assert items["1"].text == "Refund please" and items["1"].meta == {"source": "mail"}
    assert items["3"].meta == {"source": "chat"} and items["3"].split == SPLIT_POOL
    seeds = db.scalars(select(Annotation).where(Annotation.project_id == project.id)).all()
    assert {a.source for a in seeds} == {"seed"}
    assert all(a.batch_id == report.batch_id for a in seeds)
    db.refresh(project)
    assert project.data_version == 1


def test_duplicates_are_skipped_within_the_file_and_against_the_project(
    db: Session, project: Project
) -> None:
    make_items(db, project, ["Already here"])
    data = "text\nNew one\n  New   one \nAlready   here\nAnother\nNew one\n"
    report = run(db, project, data, mapping=ColumnMapping(text="text"), batch_size=2)
    assert report.created == 2
    assert report.duplicates_in_file == 2  # the whitespace variant and the repeat in a later batch
    assert report.duplicates_in_project == 1
    assert item_count(db, project) == 3


def test_hash_normalises_whitespace_and_unicode_composition() -> None:
    assert content_hash("Cafe\u0301  au\tlait ") == content_hash("Café au lait")
    assert content_hash("Hello") != content_hash("hello")


def test_unknown_label_rejects_the_whole_file_with_line_numbers(
    db: Session, project: Project
) -> None:
    data = "text,label\nfine,bug\nodd,refunds\nfine too,billing\nworse,???\n"
    error = rejected(db, project, data)
    lines = [e["line"] for e in error.details["errors"]]
    assert lines == [3, 5]
    assert "refunds" in error.details["errors"][0]["message"]
    assert error.details["error_count"] == 2
    assert "Nothing was imported" in error.message


def test_empty_and_over_long_texts_are_reported(db: Session, project: Project) -> None:
    data = "text,label\nok,bug\n   ,bug\n" + "x" * 51 + ",bug\n"
    error = rejected(db, project, data, max_text_chars=50)
    messages = {e["line"]: e["message"] for e in error.details["errors"]}
    assert set(messages) == {3, 4}
    assert "empty" in messages[3] and "51 characters" in messages[4]


def test_listed_errors_are_capped_but_counted(db: Session, project: Project) -> None:
    data = "text,label\n" + "".join(f"row {i},nope\n" for i in range(250))
    error = rejected(db, project, data, max_listed_errors=100)
    assert len(error.details["errors"]) == 100
    assert error.details["error_count"] == 250
    assert error.details["rows"] == 250


def test_utf16_file_is_refused_with_a_clear_message(db: Session, project: Project) -> None:
    error = rejected(db, project, "text\nhello\n".encode("utf-16"))
    assert "UTF-16" in error.message and "UTF-8" in error.message


def test_invalid_utf8_bytes_are_reported_with_their_line(db: Session, project: Project) -> None:
    data = b"text,label\ngood,bug\nbad \xff byte,bug\nfine,bug\n"
    error = rejected(db, project, data)
    assert [e["line"] for e in error.details["errors"]] == [3]
    assert "UTF-8" in error.details["errors"][0]["message"]


def test_utf8_bom_is_accepted(db: Session, project: Project) -> None:
    report = run(db, project, "\ufefftext,label\nhello,bug\n")
    assert report.created == 1


def test_line_numbers_count_physical_lines_of_multiline_fields(
    db: Session, project: Project
) -> None:
    data = 'text,label\n"first line\nsecond line",bug\nok,bug\n"",bug\n'
    error = rejected(db, project, data)
    assert [e["line"] for e in error.details["errors"]] == [5]


def test_wrong_field_count_and_unclosed_quote(db: Session, project: Project) -> None:
    error = rejected(db, project, "text,label\na,bug,extra\nb,bug\n")
    assert error.details["errors"][0]["line"] == 2
    assert "3 fields" in error.details["errors"][0]["message"]
    error = rejected(db, project, 'text,label\n"never closed,bug\nb,bug\n')
    assert "unclosed quote" in error.message


def test_missing_mapped_column_is_reported_on_the_header_line(
    db: Session, project: Project
) -> None:
    error = rejected(db, project, "body,category\nhi,bug\n")
    assert error.details["errors"][0]["line"] == 1
    assert "'text'" in error.message and "'body'" in error.message


def test_empty_file_is_refused(db: Session, project: Project) -> None:
    assert "empty" in rejected(db, project, "").message
    assert "no data rows" in rejected(db, project, "text,label\n\n").message


def test_tsv_keeps_quotes_literally(db: Session, project: Project) -> None:
    data = 'text\tlabel\n"Quoted" start\tbug\nhe said "hi"\tbilling\n'
    run(db, project, data, fmt="tsv")
    texts = set(db.scalars(select(Item.text).where(Item.project_id == project.id)))
    assert texts == {'"Quoted" start', 'he said "hi"'}


def test_jsonl_imports_objects_and_reports_bad_lines(db: Session, project: Project) -> None:
    good = "\n".join(json.dumps(r) for r in [
        {"text": "one", "label": "bug", "lang": "en"},
        {"text": "two"},
    ]) + "\n\n"
    report = run(db, project, good, fmt="jsonl")
    assert (report.created, report.annotations) == (2, 1)
    meta = db.scalar(select(Item.meta).where(Item.text == "one"))
    assert meta == {"lang": "en"}
    bad = '{"text": "x"}\n[1, 2]\n{"text": 5}\nnot json\n'
    other = make_project(db, labels=LABELS)
    error = rejected(db, other, bad, fmt="jsonl")
    assert [e["line"] for e in error.details["errors"]] == [2, 3, 4]


def test_split_column_imports_dev_and_test_sets(db: Session, project: Project) -> None:
    data = "text,label,split\na,bug,train\nb,bug,dev\nc,billing,test\nd,,\ne,feature,validation\n"
    mapping = ColumnMapping(text="text", label="label", split="split")
    report = run(db, project, data, mapping=mapping)
    assert report.by_split == {SPLIT_POOL: 2, SPLIT_DEV: 2, SPLIT_TEST: 1}
    query = select(Item.text, Item.split).where(Item.project_id == project.id)
    splits = dict(db.execute(query).tuples().all())
    assert splits == {"a": "pool", "b": "dev", "c": "test", "d": "pool", "e": "dev"}


def test_dev_rows_need_labels_and_split_values_are_checked(
    db: Session, project: Project
) -> None:
    data = "text,label,split\na,,dev\nb,bug,holdout\n"
    error = rejected(db, project, data,
                     mapping=ColumnMapping(text="text", label="label", split="split"))
    messages = {e["line"]: e["message"] for e in error.details["errors"]}
    assert "no label" in messages[2] and "holdout" in messages[3]


def _labelled_rows(per_label: dict[str, int]) -> str:
    rows = [f"{name} ticket number {i},{name}" for name, n in per_label.items() for i in range(n)]
    return "text,label\n" + "\n".join(rows) + "\n"


def test_dev_carve_out_is_stratified_exact_and_deterministic(db: Session) -> None:
    data = _labelled_rows({"billing": 40, "bug": 20, "feature": 5})

    def carve(seed: int) -> tuple[set[str], dict[str, int]]:
        project = make_project(db, labels=LABELS)
        report = run(db, project, data, dev_fraction=0.25, seed=seed)
        dev = set(db.scalars(select(Item.text).where(
            Item.project_id == project.id, Item.split == SPLIT_DEV)))
        assert report.carved_dev == len(dev)
        assert report.by_split[SPLIT_DEV] == len(dev)
        return dev, {name: sum(t.startswith(name) for t in dev) for name in LABELS}

    dev_a, per_label = carve(seed=7)
    assert per_label == {"billing": 10, "bug": 5, "feature": 1}  # round(0.25 * n) per label
    dev_b, _ = carve(seed=7)
    dev_c, per_label_c = carve(seed=8)
    assert dev_a == dev_b
    assert dev_a != dev_c and per_label_c == per_label


def test_carve_out_leaves_unlabelled_and_existing_items_alone(
    db: Session, project: Project
) -> None:
    old = make_items(db, project, ["old labelled text"])[0]
    data = "text,label\nnew a,bug\nnew b,bug\nplain,\n"
    run(db, project, data, dev_fraction=0.5, seed=1)
    db.refresh(old)
    assert old.split == SPLIT_POOL
    assert db.scalar(select(Item.split).where(Item.text == "plain")) == SPLIT_POOL
    dev = db.scalars(select(Item.text).where(Item.project_id == project.id,
                                             Item.split == SPLIT_DEV)).all()
    assert len(dev) == 1 and dev[0].startswith("new")


def test_options_are_validated_with_actionable_messages() -> None:
    with pytest.raises(InvalidInput, match="dev fraction"):
        ImportOptions(format="csv", dev_fraction=1.0)
    with pytest.raises(InvalidInput, match="Unknown format"):
        ImportOptions(format="xlsx")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="different"):
        ColumnMapping(text="text", label="text")
    with pytest.raises(InvalidInput, match="text"):
        ColumnMapping(text="  ")


def test_format_detection() -> None:
    assert detect_format("data.TSV", None, "auto") == "tsv"
    assert detect_format("x.ndjson", None, None) == "jsonl"
    assert detect_format(None, "text/csv; charset=utf-8", "auto") == "csv"
    assert detect_format("x.csv", None, "jsonl") == "jsonl"
    with pytest.raises(InvalidInput, match="Cannot tell"):
        detect_format("data.xlsx", "application/octet-stream", "auto")


# ----------------------------------------------------------------- named columns, existing rows


def test_a_named_column_that_is_missing_is_refused_never_substituted(
    db: Session, project: Project
) -> None:
    data = "msg_id,message,category\n1,Refund please,billing\n"
    error = rejected(db, project, data, mapping=ColumnMapping(text="body", label="category"))
    (problem,) = error.details["errors"]
    assert problem["line"] == 1
    assert "has no column 'body'" in problem["message"]
    assert "did you mean the text column 'message'" in problem["message"]
    label_missing = rejected(
        db, project, data, mapping=ColumnMapping(text="message", label="label")
    )
    assert "has no column 'label'" in label_missing.details["errors"][0]["message"]
    assert "label column 'category'" in label_missing.details["errors"][0]["message"]


def test_the_default_text_column_is_not_guessed_either(db: Session, project: Project) -> None:
    error = rejected(db, project, "message\nhello\n", mapping=ColumnMapping())
    assert "has no column 'text'" in error.details["errors"][0]["message"]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["msg_id", "message", "category"],
         {"id": "msg_id", "text": "message", "label": "category"}),
        (["ticket-id", "body"], {"id": "ticket-id", "text": "body"}),
        (["ID", "Text", "Split"], {"id": "ID", "text": "Text", "split": "Split"}),
        (["label_id", "text"], {"text": "text"}),  # a label's id is not the row's id
        (["paid", "valid", "text"], {"text": "text"}),  # words ending in "id" are not ids
    ],
)
def test_propose_mapping_detects_id_columns(columns: list[str], expected: dict[str, str]) -> None:
    from app.domain.imports import propose_mapping

    assert propose_mapping(columns) == expected


def _labels_of(db: Session, project: Project, text: str) -> list[tuple[str, str]]:
    from app.db.models import Label

    rows = db.execute(
        select(Label.name, Annotation.source)
        .join(Annotation, Annotation.label_id == Label.id)
        .join(Item, Item.id == Annotation.item_id)
        .where(Item.project_id == project.id, Item.content_hash == content_hash(text),
               Annotation.deleted.is_(False), Annotation.superseded_by_id.is_(None))
        .order_by(Annotation.id)
    ).all()
    return [(name, source) for name, source in rows]


FIRST = "id,text,label\n1,Refund please,billing\n2,App crashes,bug\n3,Dark mode?,\n"
AGAIN = (
    "id,text,label\n"
    "1,Refund please,feature\n"  # line 2: differs
    "2,App crashes,bug\n"  # line 3: same label
    "3,Dark mode?,feature\n"  # line 4: had none
    "4,New one,bug\n"  # line 5: new row
)


def test_existing_rows_keep_their_labels_and_the_report_lists_them(
    db: Session, project: Project
) -> None:
    run(db, project, FIRST)
    report = run(db, project, AGAIN)
    assert (report.created, report.duplicates_in_project, report.annotations) == (1, 3, 1)
    assert report.existing_labelled == 3
    assert report.existing_label_differs == 2
    assert report.existing_label_differs_lines == [2, 4]
    assert report.existing_labels_applied == 0 and report.on_existing == "keep"
    assert _labels_of(db, project, "Refund please") == [("billing", "seed")]
    assert _labels_of(db, project, "Dark mode?") == []


def test_existing_rows_take_the_new_labels_when_asked(db: Session, project: Project) -> None:
    run(db, project, FIRST)
    first_user_rows = _labels_of(db, project, "Refund please")
    version = project.data_version
    report = run(db, project, AGAIN, on_existing="apply", dev_fraction=0.5)
    assert report.existing_label_differs == 2 and report.existing_labels_applied == 2
    assert report.existing_label_differs_lines == [2, 4]
    # The earlier seed label was another user's: it stays; the importer's label joins it.
    assert first_user_rows == [("billing", "seed")]
    assert _labels_of(db, project, "Refund please") == [("billing", "seed"), ("feature", "seed")]
    assert _labels_of(db, project, "Dark mode?") == [("feature", "seed")]
    assert _labels_of(db, project, "App crashes") == [("bug", "seed")]
    assert project.data_version > version
    # Existing rows are never moved to the dev set by this import's carve-out.
    splits = dict(db.execute(select(Item.text, Item.split).where(
        Item.project_id == project.id)).all())
    assert splits["Refund please"] == SPLIT_POOL and splits["Dark mode?"] == SPLIT_POOL


def test_applying_again_as_the_same_user_supersedes_their_own_label(
    db: Session, project: Project
) -> None:
    user = make_user(db)
    options = ImportOptions(format="csv", mapping=ColumnMapping(text="text", label="label"))
    import_items(db, project=project, user=user, source=io.BytesIO(FIRST.encode()),
                 options=options)
    apply = ImportOptions(format="csv", mapping=ColumnMapping(text="text", label="label"),
                          on_existing="apply")
    import_items(db, project=project, user=user, source=io.BytesIO(AGAIN.encode()),
                 options=apply)
    assert _labels_of(db, project, "Refund please") == [("feature", "seed")]


def test_on_existing_must_be_keep_or_apply() -> None:
    with pytest.raises(InvalidInput, match="on_existing"):
        ImportOptions(format="csv", on_existing="merge")  # type: ignore[arg-type]


@pytest.mark.postgres
def test_postgres_import_plans_every_lookup_afresh_and_merges_the_search_list(
    postgres_url: str,
) -> None:
    """The duplicate lookups run with custom plans (a generic plan made while ``items`` was
    near-empty scans the whole table: quadratic), and the import leaves no GIN pending list."""
    upgrade(postgres_url)  # the migrated schema, with the index's storage options
    engine = make_engine(postgres_url)
    modes: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _mode(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT items.content_hash"):
            modes.append(cursor.connection.execute("SHOW plan_cache_mode").fetchone()[0])

    try:
        with Session(engine) as db:
            project = make_project(db, labels=LABELS)
            rows = "\n".join(f"ticket {i} mentions word{i % 7}" for i in range(60))
            report = run(db, project, "text\n" + rows, batch_size=10,
                         mapping=ColumnMapping(text="text"))
            db.commit()
            assert report.created == 60
            assert modes == ["force_custom_plan"] * 6
            assert db.scalar(text("SHOW plan_cache_mode")) == "auto"
            assert db.scalar(text("SHOW gin_pending_list_limit")) == "4MB"
            options = db.scalar(text("SELECT reloptions FROM pg_class WHERE relname = :name"),
                                {"name": fulltext.PG_INDEX})
            assert "fastupdate=on" in options
            pending = text(f"SELECT gin_clean_pending_list('{fulltext.PG_INDEX}'::regclass)")
            assert db.scalar(pending) == 0, "the import merged its pending list"
            found = db.scalar(select(func.count()).select_from(Item).where(
                Item.project_id == project.id,
                fulltext.matching_ids("postgresql", "word3", Item.id),
            ))
            assert found == len(range(3, 60, 7))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_without_the_merge_an_import_would_leave_a_pending_list(postgres_url: str) -> None:
    """The check above can fail: the same rows inserted without :func:`fulltext.bulk_insert`
    stay in the pending list."""
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        with Session(engine) as db:
            project = make_project(db, labels=LABELS)
            db.execute(insert(Item), [
                {"project_id": project.id, "text": f"ticket {i}", "content_hash": f"h{i}",
                 "meta": {}} for i in range(60)
            ])
            db.commit()
            pending = text(f"SELECT gin_clean_pending_list('{fulltext.PG_INDEX}'::regclass)")
            assert db.scalar(pending) > 0
    finally:
        engine.dispose()
