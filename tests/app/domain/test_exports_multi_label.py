"""Exporting label sets of multi-label projects — annotation exports (JSONL/CSV, all/agreed/gold),
data-manager exports (CSV, JSONL, Label Studio, Prodigy, Hugging Face) — and reading them back:
every export re-imports into a new multi-label project with the same sets."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    SPLIT_DEV,
    TASK_MULTI_LABEL,
    Annotation,
    Item,
    Label,
    Project,
    QueueEntry,
    User,
)
from app.domain import data_export, exports
from app.domain.annotation import labels as ann
from app.domain.annotation.label_sets import label_sets
from app.domain.imports import ColumnMapping, ImportOptions, import_items
from app.domain.interop import (
    collapse_duplicates,
    import_converted,
    label_studio_rows,
    parse_label_studio,
    prodigy_rows,
)
from app.errors import ImportRejected, InvalidInput
from tests.factories import make_items, make_project, make_user

LABELS = ("billing", "bug", "feature")
TRICKY = 'a "quoted", text\nwith a second line, ünïcödé and <b>markup</b>'
SETS: dict[str, list[str] | None] = {
    "crash on payment": ["billing", "bug"],
    "hello there": [],
    "dark mode please": ["feature"],
    TRICKY: ["bug", "feature"],
    "all three": ["billing", "bug", "feature"],
    "not labelled": None,
}


def _project(db: Session, labels: tuple[str, ...] = LABELS) -> Project:
    return make_project(db, labels=labels, task_type=TASK_MULTI_LABEL)


def _ids(db: Session, project: Project) -> dict[str, int]:
    return dict(db.execute(select(Label.name, Label.id)
                           .where(Label.project_id == project.id)).tuples().all())


def _label(db: Session, project: Project, user: User, item: Item, names: list[str]) -> int:
    ids = _ids(db, project)
    result = ann.record_label(db, project, user, item_id=item.id,
                              label_ids=[ids[name] for name in names])
    return result.annotation.id


def _source(db: Session) -> tuple[Project, User, dict[str, Item]]:
    """A multi-label project labelled with :data:`SETS` (one item in dev); one set was edited."""
    project = _project(db)
    user = make_user(db)
    items = dict(zip(SETS, make_items(db, project, list(SETS)), strict=True))
    items["dark mode please"].split = SPLIT_DEV
    items["dark mode please"].external_id = "ext-7"
    db.flush()
    for text, names in SETS.items():
        if names is not None:
            _label(db, project, user, items[text], names)
    edited = _label(db, project, user, items["all three"], ["billing"])
    ann.edit_annotation(db, project, user, annotation_id=edited,
                        label_ids=list(_ids(db, project).values()))
    return project, user, items


def live_sets(db: Session, project: Project) -> dict[str, list[str]]:
    """text -> the live set (names in label order) of every labelled item (one annotation)."""
    rows = db.execute(
        select(Annotation.id, Item.text)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Annotation.deleted.is_(False),
               Annotation.superseded_by_id.is_(None))
    ).tuples().all()
    names = {i: n for n, i in _ids(db, project).items()}
    sets = label_sets(db, [a for a, _t in rows])
    found = {text: [names[i] for i in sets[a]] for a, text in rows}
    assert len(found) == len(rows), "one live annotation per item"
    return found


def _expected() -> dict[str, list[str]]:
    return {text: names for text, names in SETS.items() if names is not None}


def _import(db: Session, content: bytes, fmt: str, **mapping: str) -> Project:
    target = _project(db)
    options = ImportOptions(format=fmt,  # type: ignore[arg-type]
                            mapping=ColumnMapping(text="text", label="label", **mapping))
    import_items(db, project=target, user=make_user(db), source=io.BytesIO(content),
                 options=options)
    return target


def _read(spool: IO[bytes]) -> str:
    try:
        return spool.read().decode("utf-8")
    finally:
        spool.close()


# --------------------------------------------------------------------------- annotation exports


def test_annotation_exports_write_sets_as_lists_and_joined_cells(db: Session) -> None:
    project, user, items = _source(db)
    rows = [json.loads(line) for line in
            _read(exports.write_export(db, project.id, fmt="jsonl")).splitlines()]
    assert {row["text"]: row["label"] for row in rows} == _expected()
    assert {row["annotator"] for row in rows} == {user.email}
    table = list(csv.DictReader(io.StringIO(_read(exports.write_export(db, project.id,
                                                                       fmt="csv")))))
    assert {row["text"]: row["label"] for row in table} == {
        "crash on payment": "billing|bug", "hello there": "[]", "dark mode please": "feature",
        TRICKY: "bug|feature", "all three": "billing|bug|feature"}
    listed = list(exports.annotation_rows(db, project.id, limit=2))
    assert [row.labels for row in listed] == [("billing", "bug"), ()]
    assert [row.label for row in listed] == [None, None]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_annotation_exports_reimport_into_a_new_project_unchanged(db: Session, fmt: str) -> None:
    source, _user, _items = _source(db)
    content = exports.write_export(db, source.id, fmt=fmt).read()  # type: ignore[arg-type]
    target = _import(db, content, fmt, split="split", id="external_id")
    assert live_sets(db, target) == live_sets(db, source) == _expected()
    copied = {i.text: (i.split, i.external_id) for i in db.scalars(
        select(Item).where(Item.project_id == target.id))}
    assert copied["dark mode please"] == (SPLIT_DEV, "ext-7")


def test_agreed_means_the_same_set_and_gold_means_seed_sets(db: Session) -> None:
    project = _project(db)
    first, second = make_user(db), make_user(db)
    same, different, alone, both_empty = make_items(
        db, project, ["same sets", "different sets", "alone", "both empty"])
    _label(db, project, first, same, ["bug", "billing"])
    _label(db, project, second, same, ["billing", "bug"])
    _label(db, project, first, different, ["bug"])
    _label(db, project, second, different, ["bug", "feature"])
    _label(db, project, first, alone, ["feature"])
    _label(db, project, first, both_empty, [])
    _label(db, project, second, both_empty, [])
    agreed = list(exports.annotation_rows(db, project.id, only="agreed"))
    assert sorted((row.text, row.labels) for row in agreed) == [
        ("alone", ("feature",)), ("both empty", ()), ("both empty", ()),
        ("same sets", ("billing", "bug")), ("same sets", ("billing", "bug"))]
    assert list(exports.annotation_rows(db, project.id, only="gold")) == []
    import_items(db, project=project, user=first, source=io.BytesIO(b"text,label\nnew,[]\n"),
                 options=ImportOptions(format="csv", mapping=ColumnMapping(label="label")))
    gold = list(exports.annotation_rows(db, project.id, only="gold"))
    assert [(row.text, row.labels, row.source) for row in gold] == [("new", (), "seed")]


def test_single_label_agreed_export_is_unchanged(db: Session) -> None:
    project = make_project(db, labels=LABELS)
    first, second = make_user(db), make_user(db)
    agreed, disputed = make_items(db, project, ["agreed", "disputed"])
    ids = _ids(db, project)
    for user, item, name in ((first, agreed, "bug"), (second, agreed, "bug"),
                             (first, disputed, "bug"), (second, disputed, "billing")):
        ann.record_label(db, project, user, item_id=item.id, label_id=ids[name])
    rows = list(exports.annotation_rows(db, project.id, only="agreed"))
    assert [(row.text, row.label, row.labels) for row in rows] == [
        ("agreed", "bug", None), ("agreed", "bug", None)]


def test_csv_refuses_label_names_its_cell_cannot_tell_apart(db: Session) -> None:
    project = _project(db, labels=("billing|refund", "bug", "[]"))
    with pytest.raises(InvalidInput, match=r"'billing\|refund', '\[\]' cannot be written"):
        exports.write_export(db, project.id, fmt="csv")
    with pytest.raises(InvalidInput, match="Export as JSONL"):
        data_export.write_export(db, project, {}, "csv")
    exports.write_export(db, project.id, fmt="jsonl").close()
    single = make_project(db, labels=("billing|refund", "bug"))
    exports.write_export(db, single.id, fmt="csv").close()  # one label per cell: no ambiguity


def test_a_label_with_the_separator_round_trips_with_the_separator_the_error_names(
    db: Session,
) -> None:
    labels = ("billing|refund", "bug", "feature;ux")
    project = _project(db, labels=labels)
    user = make_user(db)
    ids = _ids(db, project)
    sets = {"a": ["billing|refund", "bug"], "b": [], "c": ["feature;ux", "billing|refund"],
            "d": ["bug"]}
    for item, names in zip(make_items(db, project, list(sets)), sets.values(), strict=True):
        ann.record_label(db, project, user, item_id=item.id, label_ids=[ids[n] for n in names])
    for write in (lambda sep: exports.write_export(db, project.id, fmt="csv",
                                                   label_separator=sep),
                  lambda sep: data_export.write_export(db, project, {}, "csv", sep)):
        with pytest.raises(InvalidInput) as refused:
            write("|")
        assert "'billing|refund' cannot be written in a CSV label cell" in refused.value.message
        assert "Export with the label separator '/' instead" in refused.value.message
        assert refused.value.details["proposed_separator"] == "/"
        with pytest.raises(InvalidInput, match="cannot contain the CSV delimiter ','"):
            write(",")
        with pytest.raises(InvalidInput, match="must be 1 to 3 characters long"):
            write("////")
        content = _read(write("/"))
        cells = {row["text"]: row["label"] for row in csv.DictReader(io.StringIO(content))}
        assert cells["a"] == "billing|refund/bug" and cells["b"] == "[]"
        target = _project(db, labels=labels)
        import_items(db, project=target, user=make_user(db), source=io.BytesIO(content.encode()),
                     options=ImportOptions(format="csv", label_separator="/",
                                           mapping=ColumnMapping(text="text", label="label")))
        expected = {text: [n for n in labels if n in names] for text, names in sets.items()}
        assert live_sets(db, target) == expected
        # Without the separator the same file does not read back as the same sets.
        other = _project(db, labels=labels)
        with pytest.raises(ImportRejected):
            import_items(db, project=other, user=make_user(db),
                         source=io.BytesIO(content.encode()),
                         options=ImportOptions(format="csv",
                                               mapping=ColumnMapping(text="text", label="label")))


def test_the_proposed_separator_avoids_every_name_and_the_delimiter() -> None:
    from app.domain.imports import check_label_cell_names, proposed_separator

    assert proposed_separator(["a|b", "c/d", "e;f"]) == "+"
    assert proposed_separator(["a|b"], "tsv") == ";"
    assert proposed_separator(["|;/+#~^", "x||y;;z|;|w#|#"]) is None
    check_label_cell_names(["a|b", "c"], "/")  # no clash: nothing raised
    with pytest.raises(InvalidInput) as refused:
        check_label_cell_names(["|;/+#~^", "x||y;;z|;|w#|#"])
    assert "proposed_separator" not in refused.value.details
    assert "Export as JSONL" in refused.value.message


# --------------------------------------------------------------------------- data manager exports


def test_resolved_set_follows_the_workers_majority_rule() -> None:
    order = list(LABELS)
    assert data_export.resolved_set([], order) is None
    assert data_export.resolved_set([()], order) == ()
    assert data_export.resolved_set(
        [("billing", "bug"), ("bug",), ("bug", "feature")], order) == ("bug",)
    # "billing" in exactly half of the sets: the most recent set wins.
    assert data_export.resolved_set([("billing",), ("bug",)], order) == ("bug",)


def test_data_manager_jsonl_csv_and_hf_carry_sets(db: Session, tmp_path: Path) -> None:
    project, _user, items = _source(db)
    rows = [json.loads(line) for line in
            _read(data_export.write_export(db, project, {}, "jsonl")).splitlines()]
    assert {row["text"]: row["label"] for row in rows} == SETS
    all_three = next(row for row in rows if row["text"] == "all three")
    assert [(a["label"], a["status"]) for a in all_three["annotations"]] == [
        (["billing", "bug", "feature"], "superseded"), (["billing"], "superseded"),
        (["billing", "bug", "feature"], "live")]
    table = list(csv.DictReader(io.StringIO(_read(data_export.write_export(db, project, {},
                                                                           "csv")))))
    assert {row["text"]: row["label"] for row in table} == {
        "crash on payment": "billing|bug", "hello there": "[]", "dark mode please": "feature",
        TRICKY: "bug|feature", "all three": "billing|bug|feature", "not labelled": ""}
    counts = data_export.write_hf_folder(db, project, data_export.export_records(db, project, {}),
                                         tmp_path)
    assert counts == {"train": 5, "validation": 1}
    card = (tmp_path / "README.md").read_text()
    assert "a list of label names: `[]` when none of them applies" in card
    validation = json.loads((tmp_path / "data" / "validation.jsonl").read_text())
    assert validation["label"] == ["feature"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_data_manager_exports_reimport_unchanged(db: Session, fmt: str) -> None:
    source, _user, _items = _source(db)
    content = data_export.write_export(db, source, {}, fmt).read()
    target = _import(db, content, fmt, split="split")
    assert live_sets(db, target) == _expected()
    dev = db.scalars(select(Item.text).where(Item.project_id == target.id,
                                             Item.split == SPLIT_DEV)).all()
    assert dev == ["dark mode please"]


def test_label_studio_export_has_several_choices_and_reimports_unchanged(db: Session) -> None:
    source, user, _items = _source(db)
    tasks = json.loads(_read(data_export.write_export(db, source, {}, "label_studio")))
    by_text = {task["data"]["text"]: task for task in tasks}
    crash = by_text["crash on payment"]["annotations"]
    assert [a["result"][0]["value"]["choices"] for a in crash] == [["billing", "bug"]]
    assert crash[0]["ground_truth"] is True
    assert by_text["hello there"]["annotations"][0]["result"] == []
    history = by_text["all three"]["annotations"]
    assert [(a["ground_truth"], a["was_cancelled"]) for a in history] == [
        (False, True), (False, True), (True, False)]
    assert by_text["not labelled"]["annotations"] == []
    target = _project(db)
    rows = list(label_studio_rows(parse_label_studio(json.dumps(tasks).encode()),
                                  multi_label=True))
    report = import_converted(db, project=target, user=user, source="label_studio", rows=rows,
                              max_text_chars=20_000)
    assert (report.labelled, report.unlabelled) == (5, 1)
    assert report.import_report.none_of_these == 1
    assert live_sets(db, target) == _expected()


def test_prodigy_export_accepts_the_set_and_reimports_unchanged(db: Session) -> None:
    source, user, _items = _source(db)
    lines = _read(data_export.write_export(db, source, {}, "prodigy")).splitlines()
    tasks = {task["text"]: task for task in map(json.loads, lines)}
    assert tasks["crash on payment"]["accept"] == ["billing", "bug"]
    assert tasks["hello there"]["accept"] == [] and tasks["hello there"]["answer"] == "accept"
    assert "accept" not in tasks["not labelled"] and "answer" not in tasks["not labelled"]
    assert [o["id"] for o in tasks["hello there"]["options"]] == list(LABELS)
    target = _project(db)
    rows = list(prodigy_rows([line.encode() for line in lines], LABELS, multi_label=True))
    import_converted(db, project=target, user=user, source="prodigy", rows=rows,
                     max_text_chars=20_000)
    assert live_sets(db, target) == _expected()


def test_a_queued_items_proposed_set_is_exported_as_its_prediction(db: Session) -> None:
    project, _user, items = _source(db)
    db.add(QueueEntry(project_id=project.id, queue_version=project.queue_version,
                      item_id=items["not labelled"].id, rank=0, predicted=[
                          {"label": "bug", "prob": 0.9, "threshold": 0.5, "proposed": True},
                          {"label": "feature", "prob": 0.2, "threshold": 0.1, "proposed": True},
                          {"label": "billing", "prob": 0.1, "threshold": 0.4,
                           "proposed": False}]))
    db.flush()
    rows = [json.loads(line) for line in
            _read(data_export.write_export(db, project, {}, "jsonl")).splitlines()]
    queued = next(row for row in rows if row["text"] == "not labelled")
    assert queued["prediction"] == {"label": "bug", "confidence": 0.9,
                                    "labels": ["bug", "feature"]}
    tasks = json.loads(_read(data_export.write_export(db, project, {}, "label_studio")))
    task = next(t for t in tasks if t["data"]["text"] == "not labelled")
    assert task["predictions"][0]["result"][0]["value"]["choices"] == ["bug", "feature"]
    table = list(csv.DictReader(io.StringIO(_read(data_export.write_export(db, project, {},
                                                                           "csv")))))
    assert next(r for r in table if r["text"] == "not labelled")["predicted"] == "bug|feature"


# --------------------------------------------------------------------------- reading other tools


LABEL_STUDIO = [
    {"id": 1, "data": {"text": "one result, two choices"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["bug", "billing"]}}]}]},
    {"id": 2, "data": {"text": "two results"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["feature"]}},
                    {"type": "choices", "value": {"choices": ["bug"]}}]}]},
    {"id": 3, "data": {"text": "nothing ticked"}, "annotations": [{"result": []}]},
    {"id": 4, "data": {"text": "cancelled only"}, "annotations": [
        {"was_cancelled": True, "result": [{"type": "choices", "value": {"choices": ["bug"]}}]}]},
    {"id": 5, "data": {"text": "no annotations"}},
]


def test_label_studio_multiple_choices_become_sets(db: Session) -> None:
    project = _project(db)
    rows = list(label_studio_rows(LABEL_STUDIO, multi_label=True))
    assert [row.labels for row in rows] == [
        ("bug", "billing"), ("feature", "bug"), (), None, None]
    import_converted(db, project=project, user=make_user(db), source="label_studio", rows=rows,
                     max_text_chars=20_000)
    assert live_sets(db, project) == {"one result, two choices": ["billing", "bug"],
                                      "two results": ["bug", "feature"], "nothing ticked": []}


def test_label_studio_unknown_choices_are_reported_by_task(db: Session) -> None:
    project = _project(db)
    tasks = [LABEL_STUDIO[0], {"id": 9, "data": {"text": "x"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["bug", "sarcasm"]}}]}]}]
    with pytest.raises(ImportRejected) as caught:
        import_converted(db, project=project, user=make_user(db), source="label_studio",
                         rows=list(label_studio_rows(tasks, multi_label=True)),
                         max_text_chars=20_000)
    assert caught.value.details["errors"][0]["line"] == 2
    assert caught.value.message.startswith("Task 2 has label 'sarcasm'")
    assert db.scalar(select(Item.id).where(Item.project_id == project.id)) is None


PRODIGY = [
    {"text": "choice with ids", "options": [{"id": 0, "text": "billing"}, {"id": 1, "text": "bug"}],
     "accept": [0, 1], "answer": "accept"},
    {"text": "none of them", "options": [{"id": "bug", "text": "bug"}], "accept": [],
     "answer": "accept"},
    {"text": "binary passes", "label": "bug", "answer": "accept"},
    {"text": "binary passes", "label": "billing", "answer": "reject"},
    {"text": "binary passes", "label": "feature", "answer": "accept"},
    {"text": "rejected only", "label": "bug", "answer": "reject"},
    {"text": "ignored", "accept": ["bug"], "answer": "ignore"},
]


def test_prodigy_accept_lists_become_sets_and_binary_lines_merge(db: Session) -> None:
    project = _project(db)
    lines = [json.dumps(record).encode() for record in PRODIGY]
    rows = list(prodigy_rows(lines, LABELS, multi_label=True))
    assert [row.labels for row in rows] == [
        ("billing", "bug"), (), ("bug",), None, ("feature",), None, None]
    merged, collapsed = collapse_duplicates(rows, merge_sets=True)
    assert collapsed == 2
    assert [row.labels for row in merged if row.text == "binary passes"] == [("bug", "feature")]
    report = import_converted(db, project=project, user=make_user(db), source="prodigy",
                              rows=rows, max_text_chars=20_000)
    assert (report.source_rows, report.collapsed, report.labelled) == (7, 2, 3)
    assert live_sets(db, project) == {"choice with ids": ["billing", "bug"], "none of them": [],
                                      "binary passes": ["bug", "feature"]}


def test_single_label_projects_still_refuse_several_answers() -> None:
    lines = [json.dumps(PRODIGY[0]).encode()]
    with pytest.raises(ImportRejected, match="this project is single-label"):
        list(prodigy_rows(lines, LABELS))
    with pytest.raises(ImportRejected, match="this project is single-label"):
        list(label_studio_rows(LABEL_STUDIO[:1]))
    assert [row.label for row in label_studio_rows(LABEL_STUDIO[2:])] == [None, None, None]
