"""Importing label sets into multi-label projects: JSONL lists, CSV/TSV cells split by a
separator, the "none of these" token, validation with line numbers, existing rows, the dev
carve-out, and the single-label behaviour that must not change."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    SPLIT_DEV,
    SPLIT_POOL,
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    GoldItem,
    Item,
    Label,
    Project,
    User,
)
from app.domain.annotation.label_sets import label_sets
from app.domain.imports import ColumnMapping, ImportOptions, ImportReport, import_items
from app.errors import ImportRejected, InvalidInput
from tests.factories import make_project, make_user

LABELS = ("billing", "bug", "feature")
LABEL_MAPPING = ColumnMapping(text="text", label="labels")


@pytest.fixture()
def project(db: Session) -> Project:
    return make_project(db, labels=LABELS, task_type=TASK_MULTI_LABEL)


def run(db: Session, project: Project, data: str, fmt: str = "csv", *,
        user: User | None = None, **kw: object) -> ImportReport:
    mapping = kw.pop("mapping", LABEL_MAPPING)
    options = ImportOptions(format=fmt, mapping=mapping, **kw)  # type: ignore[arg-type]
    return import_items(db, project=project, user=user or make_user(db),
                        source=io.BytesIO(data.encode("utf-8")), options=options)


def jsonl(*records: object) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def live_sets(db: Session, project: Project) -> dict[str, list[list[str]]]:
    """text -> the label sets (names, label order) of the item's live annotations, oldest first;
    items without annotations are absent."""
    rows = db.execute(
        select(Annotation.id, Item.text, Annotation.label_id)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Annotation.deleted.is_(False),
               Annotation.superseded_by_id.is_(None))
        .order_by(Annotation.id)
    ).all()
    assert all(label_id is None for _a, _t, label_id in rows)
    names = dict(db.execute(select(Label.id, Label.name)
                            .where(Label.project_id == project.id)).tuples().all())
    sets = label_sets(db, [a for a, _t, _l in rows])
    found: dict[str, list[list[str]]] = {}
    for annotation_id, text, _label in rows:
        found.setdefault(text, []).append([names[i] for i in sets[annotation_id]])
    return found


def item_count(db: Session, project: Project) -> int:
    return db.scalar(select(func.count()).select_from(Item).where(Item.project_id == project.id))


def rejected(db: Session, project: Project, data: str, fmt: str = "csv", **kw: object
             ) -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        run(db, project, data, fmt, **kw)
    assert item_count(db, project) == 0, "a rejected import must not leave rows behind"
    return caught.value


def test_jsonl_lists_become_label_sets_and_empty_list_is_none_of_these(
    db: Session, project: Project
) -> None:
    data = jsonl(
        {"text": "refund for a crash", "labels": ["bug", "billing"]},
        {"text": "just saying hi", "labels": []},
        {"text": "not labelled yet", "labels": None},
        {"text": "no key at all"},
        {"text": "twice the same", "labels": ["feature", " feature", "bug"]},
        {"text": "one plain string", "labels": "feature"},
        {"text": "empty string", "labels": ""},
    )
    report = run(db, project, data, "jsonl")
    assert (report.rows, report.created, report.annotations) == (7, 7, 4)
    assert report.per_label == {"billing": 1, "bug": 2, "feature": 2}
    assert report.none_of_these == 1
    assert live_sets(db, project) == {
        "refund for a crash": [["billing", "bug"]],
        "just saying hi": [[]],
        "twice the same": [["bug", "feature"]],
        "one plain string": [["feature"]],
    }
    seeds = db.scalars(select(Annotation).where(Annotation.project_id == project.id)).all()
    assert {(a.source, a.batch_id, a.label_id) for a in seeds} == {
        ("seed", report.batch_id, None)}
    db.refresh(project)
    assert project.data_version == 1


def test_a_jsonl_string_is_one_name_unless_a_separator_is_chosen(
    db: Session, project: Project
) -> None:
    data = jsonl({"text": "a", "labels": "billing|bug"})
    error = rejected(db, project, data, "jsonl")
    assert error.details["errors"][0]["line"] == 1
    assert "'billing|bug'" in error.details["errors"][0]["message"]
    report = run(db, project, data + jsonl({"text": "b", "labels": "[]"}), "jsonl",
                 label_separator="|")
    assert report.annotations == 2
    assert live_sets(db, project) == {"a": [["billing", "bug"]], "b": [[]]}


def test_csv_cells_are_split_by_the_separator_and_the_none_token_is_the_empty_set(
    db: Session, project: Project
) -> None:
    data = ("text,labels\n"
            "crash on payment,bug|billing\n"
            "hello,[]\n"
            "later,\n"
            '"spaced, quoted", bug | feature | bug \n'
            "only one,feature\n")
    report = run(db, project, data)
    assert (report.created, report.annotations, report.none_of_these) == (5, 4, 1)
    assert report.per_label == {"billing": 1, "bug": 2, "feature": 2}
    assert live_sets(db, project) == {
        "crash on payment": [["billing", "bug"]],
        "hello": [[]],
        "spaced, quoted": [["bug", "feature"]],
        "only one": [["feature"]],
    }
    stored = db.scalar(select(func.count()).select_from(AnnotationLabel))
    assert stored == 5


def test_the_lead_chooses_the_separator_and_tsv_works_alike(db: Session, project: Project) -> None:
    report = run(db, project, "text\tlabels\nboth\tbilling; bug\nnone\t[]\n", "tsv",
                 label_separator=";")
    assert report.annotations == 2
    assert live_sets(db, project) == {"both": [["billing", "bug"]], "none": [[]]}
    other = make_project(db, labels=LABELS, task_type=TASK_MULTI_LABEL)
    error = rejected(db, other, "text\tlabels\nboth\tbilling|bug\n", "tsv", label_separator=";")
    assert "'billing|bug'" in error.message


def test_the_separator_is_validated() -> None:
    for bad, message in (("||||", "1 to 3"), ("  ", "visible"), ("a\nb", "line break"),
                         (",", "CSV delimiter"), (";,", "CSV delimiter")):
        with pytest.raises(InvalidInput, match=message) as caught:
            ImportOptions(format="csv", label_separator=bad)
        assert caught.value.details == {"field": "label_separator"}
    with pytest.raises(InvalidInput, match="TSV delimiter"):
        ImportOptions(format="tsv", label_separator=";\t")
    assert ImportOptions(format="jsonl", label_separator=",").separator() == ","
    assert ImportOptions(format="tsv", label_separator=",").separator() == ","
    assert ImportOptions(format="csv", label_separator="").separator() == "|"
    assert ImportOptions(format="jsonl").separator() is None


def test_bad_rows_reject_the_whole_file_with_line_numbers(db: Session, project: Project) -> None:
    data = ("text,labels\n"
            "fine,bug\n"
            "two unknown,bug|refunds|praise\n"
            "one unknown,feature|refunds\n"
            "empty part,bug||feature\n"
            "trailing,bug|\n"
            "fine too,[]\n")
    error = rejected(db, project, data)
    errors = {e["line"]: e["message"] for e in error.details["errors"]}
    assert sorted(errors) == [3, 4, 5, 6]
    assert error.details["error_count"] == 4
    assert errors[3].startswith("has labels 'refunds', 'praise', which are not in the label set")
    assert "known labels: 'billing', 'bug', 'feature'" in errors[3]
    assert errors[4].startswith("has label 'refunds', which is not")
    assert "empty label name in 'bug||feature'" in errors[5]
    assert "[] for none of these" in errors[6]
    assert all(e["column"] == "labels" for e in error.details["errors"])
    assert "Nothing was imported" in error.message


def test_jsonl_label_values_of_the_wrong_kind_are_reported(db: Session, project: Project) -> None:
    data = jsonl(
        {"text": "a", "labels": ["bug", 3.5]},
        {"text": "b", "labels": {"bug": True}},
        {"text": "c", "labels": ["bug", " "]},
        {"text": "d", "labels": "[]"},
        {"text": "e", "labels": ["bug"]},
    )
    error = rejected(db, project, data, "jsonl")
    errors = {e["line"]: e["message"] for e in error.details["errors"]}
    assert sorted(errors) == [1, 2, 3, 4]
    assert "must be a list of label names (found a number in it)" in errors[1]
    assert "must be a list of label names" in errors[2]
    assert "empty label name" in errors[3]
    assert "'[]'" in errors[4] and "give an empty list []" in errors[4]


def test_a_list_in_a_single_label_project_is_an_error_naming_the_task(db: Session) -> None:
    single = make_project(db, labels=LABELS)
    data = jsonl({"text": "fine", "labels": "bug"}, {"text": "two", "labels": ["bug", "billing"]})
    error = rejected(db, single, data, "jsonl")
    assert [e["line"] for e in error.details["errors"]] == [2]
    assert "this project is single-label" in error.message
    with pytest.raises(InvalidInput, match="multi-label projects only"):
        run(db, single, "text,labels\na,bug\n", label_separator=";")
    assert item_count(db, single) == 0
    # Unchanged single-label behaviour: a CSV cell with a pipe is one (unknown) label name.
    error = rejected(db, single, "text,labels\na,bug|billing\n")
    assert "has label 'bug|billing', which is not in the label set" in error.message


def _gold_answers(db: Session, project: Project) -> dict[str, list[str]]:
    """text -> the gold set (names in label order) of each gold item."""
    from app.domain.gold import gold_sets

    rows = db.execute(select(GoldItem.id, Item.text).join(Item, Item.id == GoldItem.item_id)
                      .where(GoldItem.project_id == project.id)).tuples().all()
    assert db.scalar(select(func.count()).select_from(GoldItem)
                     .where(GoldItem.label_id.is_not(None))) == 0
    names = dict(db.execute(select(Label.id, Label.name)
                            .where(Label.project_id == project.id)).tuples().all())
    sets = gold_sets(db, [gold_id for gold_id, _ in rows])
    return {text: [names[i] for i in sets[gold_id]] for gold_id, text in rows}


def test_a_gold_column_imports_gold_sets_split_like_the_label_cell(
    db: Session, project: Project
) -> None:
    mapping = ColumnMapping(text="text", label="labels", gold="gold")
    data = "text,labels,gold\na,bug,\nb,,feature|bug\nc,billing,[]\nd,,\n"
    report = run(db, project, data, mapping=mapping)
    assert (report.gold, report.annotations) == (2, 1)
    assert _gold_answers(db, project) == {"b": ["bug", "feature"], "c": []}
    assert live_sets(db, project) == {"a": [["bug"]]}  # gold rows get no seed labels
    # The lead's separator splits the gold cell too; JSONL takes a list.
    run(db, project, "text\tgold\nb\tbilling ; feature\n", "tsv",
        mapping=ColumnMapping(text="text", gold="gold"), label_separator=";")
    run(db, project, jsonl({"text": "e", "gold": ["feature", "billing", "feature"]},
                           {"text": "f", "gold": []}, {"text": "g", "gold": None}),
        "jsonl", mapping=ColumnMapping(text="text", gold="gold"))
    assert _gold_answers(db, project) == {
        "b": ["billing", "feature"], "c": [], "e": ["billing", "feature"], "f": []}


def test_bad_gold_sets_are_refused_with_their_line_and_nothing_is_written(
    db: Session, project: Project
) -> None:
    mapping = ColumnMapping(text="text", label="labels", gold="gold", split="split")
    data = "text,labels,gold,split\na,,bug|nope,\nb,,bug||feature,\nc,bug,bug,dev\nd,,bug,\n"
    error = rejected(db, project, data, mapping=mapping)
    assert [(e["line"], e["column"]) for e in error.details["errors"]] == [
        (2, "gold"), (3, "gold"), (4, "gold")]
    messages = [e["message"] for e in error.details["errors"]]
    assert "label 'nope', which is not in the label set" in messages[0]
    assert "has an empty label name" in messages[1]
    assert "only pool rows can be gold" in messages[2]
    assert item_count(db, project) == 0
    assert db.scalar(select(func.count()).select_from(GoldItem)) == 0


def test_dev_rows_need_a_set_which_may_be_empty(db: Session, project: Project) -> None:
    mapping = ColumnMapping(text="text", label="labels", split="split")
    error = rejected(db, project, "text,labels,split\na,bug,dev\nb,[],dev\nc,,test\n",
                     mapping=mapping)
    assert [e["line"] for e in error.details["errors"]] == [4]
    assert "a label set ([] for none of these)" in error.message
    report = run(db, project, "text,labels,split\na,bug,dev\nb,[],dev\nc,,pool\n",
                 mapping=mapping)
    assert report.by_split == {"pool": 1, "dev": 2, "test": 0}
    assert live_sets(db, project) == {"a": [["bug"]], "b": [[]]}


def test_dev_carve_out_stratifies_on_the_first_label_exactly_and_deterministically(
    db: Session,
) -> None:
    # Strata by first label in label order: billing 20 (10 with bug too), bug 8, none-of-these 4.
    rows = ([f"billing ticket {i},billing" for i in range(10)]
            + [f"billing and bug {i},bug|billing" for i in range(10)]
            + [f"bug ticket {i},bug" for i in range(4)]
            + [f"bug and feature {i},feature|bug" for i in range(4)]
            + [f"nothing {i},[]" for i in range(4)]
            + [f"unlabelled {i}," for i in range(6)])
    data = "text,labels\n" + "\n".join(rows) + "\n"

    def carve(seed: int) -> set[str]:
        project = make_project(db, labels=LABELS, task_type=TASK_MULTI_LABEL)
        report = run(db, project, data, dev_fraction=0.25, seed=seed)
        dev = set(db.scalars(select(Item.text).where(Item.project_id == project.id,
                                                     Item.split == SPLIT_DEV)))
        assert report.carved_dev == len(dev) == 5 + 2 + 1  # round(0.25 * n) per stratum
        assert report.by_split == {"pool": 38 - 8, "dev": 8, "test": 0}
        return dev

    dev = carve(seed=3)
    assert sum(t.startswith("billing") for t in dev) == 5
    assert sum(t.startswith("bug") for t in dev) == 2
    assert sum(t.startswith("nothing") for t in dev) == 1
    assert not any(t.startswith("unlabelled") for t in dev)
    assert carve(seed=3) == dev
    assert carve(seed=4) != dev


EXISTING = ("text,labels\n"
            "crash on payment,billing|bug\n"
            "hello,[]\n"
            "later,\n")
AGAIN = ("text,labels\n"
         "crash on payment,bug|billing\n"  # line 2: the same set, in another order
         "hello,feature\n"  # line 3: differs from the empty set
         "later,[]\n"  # line 4: had none
         "new one,bug\n")  # line 5: new


def test_existing_rows_compare_sets_and_keep_them_by_default(
    db: Session, project: Project
) -> None:
    run(db, project, EXISTING)
    report = run(db, project, AGAIN)
    assert (report.created, report.duplicates_in_project, report.annotations) == (1, 3, 1)
    assert report.existing_labelled == 3
    assert report.existing_label_differs == 2
    assert report.existing_label_differs_lines == [3, 4]
    assert report.existing_labels_applied == 0
    assert live_sets(db, project) == {
        "crash on payment": [["billing", "bug"]], "hello": [[]], "new one": [["bug"]]}


def test_existing_rows_take_the_files_sets_when_asked(db: Session, project: Project) -> None:
    importer = make_user(db)
    run(db, project, EXISTING, user=importer)
    report = run(db, project, AGAIN, user=importer, on_existing="apply")
    assert report.existing_label_differs == 2 and report.existing_labels_applied == 2
    # The importer's own earlier set is superseded; the unchanged set is left alone.
    assert live_sets(db, project) == {
        "crash on payment": [["billing", "bug"]], "hello": [["feature"]], "later": [[]],
        "new one": [["bug"]]}
    superseded = db.scalar(select(func.count()).select_from(Annotation).where(
        Annotation.project_id == project.id, Annotation.superseded_by_id.is_not(None)))
    assert superseded == 1
    pool = db.scalar(select(func.count()).select_from(Item).where(
        Item.project_id == project.id, Item.split == SPLIT_POOL))
    assert pool == 4
