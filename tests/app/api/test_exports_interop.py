"""Exports (JSONL/CSV; all, agreed, gold), export → import round trip, Label Studio, Prodigy."""

from __future__ import annotations

import csv
import io
import json

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, Annotation, Item, Label
from tests.app.api.support import Caller, caller, lead_with_project
from tests.factories import add_member, make_items, make_project, make_user

LABELS = ("positive", "negative", "neutral")


def _label(who: Caller, project_id: int, item_id: int, label: str) -> None:
    response = who.post(f"/api/v1/projects/{project_id}/annotations",
                        json={"annotations": [{"item_id": item_id, "label": label}]})
    assert response.status_code == 200, response.text


def _labels_by_text(db: Session, project_id: int) -> dict[str, str]:
    rows = db.execute(
        select(Item.text, Label.name)
        .join(Annotation, Annotation.item_id == Item.id)
        .join(Label, Label.id == Annotation.label_id)
        .where(Item.project_id == project_id, Annotation.deleted.is_(False),
               Annotation.superseded_by_id.is_(None))
    )
    return {text: label for text, label in rows}


def _jsonl(response: object) -> list[dict[str, object]]:
    return [json.loads(line) for line in response.text.splitlines() if line]  # type: ignore[attr-defined]


def test_export_rows_carry_text_label_annotator_time_and_model_version(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db, labels=LABELS)
    item = make_items(db, project, ['a "quoted", multi\nline text'])[0]
    item.external_id = "ext-1"
    db.commit()
    _label(lead, project.id, item.id, "neutral")
    url = f"/api/v1/projects/{project.id}/annotations/export"
    rows = _jsonl(lead.get(url))
    assert len(rows) == 1
    row = rows[0]
    assert (row["text"], row["label"], row["annotator"]) == (item.text, "neutral", lead.user.email)
    assert row["external_id"] == "ext-1" and row["split"] == "pool" and row["model_version"] is None
    assert row["annotated_at"]
    as_csv = lead.get(url, params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert parsed[0]["text"] == item.text and parsed[0]["label"] == "neutral"


def test_agreed_and_gold_filters(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db, labels=LABELS)
    project.annotations_per_item = 2
    other = make_user(db, role=ROLE_ANNOTATOR)
    add_member(db, project, other)
    second = caller(app, db, user=other, scopes=("annotate",))
    agreed, disputed, single = make_items(db, project, ["agreed", "disputed", "single"])
    db.commit()
    _label(lead, project.id, agreed.id, "positive")
    _label(second, project.id, agreed.id, "positive")
    _label(lead, project.id, disputed.id, "positive")
    _label(second, project.id, disputed.id, "negative")
    _label(lead, project.id, single.id, "neutral")
    url = f"/api/v1/projects/{project.id}/annotations/export"
    everything = _jsonl(lead.get(url))
    assert len(everything) == 5
    agreed_rows = _jsonl(lead.get(url, params={"only": "agreed"}))
    assert sorted({r["text"] for r in agreed_rows}) == ["agreed", "single"]
    assert len(agreed_rows) == 3
    assert _jsonl(lead.get(url, params={"only": "gold"})) == []
    imported = lead.post(f"/api/v1/projects/{project.id}/items",
                         params={"label_column": "label"},
                         content=b'{"text": "seeded", "label": "negative"}\n',
                         headers={"Content-Type": "application/x-ndjson"})
    assert imported.status_code == 201, imported.text
    gold = _jsonl(lead.get(url, params={"only": "gold"}))
    assert [(r["text"], r["label"], r["source"]) for r in gold] == [("seeded", "negative", "seed")]


def test_round_trip_export_then_import_gives_identical_labels(app: FastAPI, db: Session) -> None:
    lead, source = lead_with_project(app, db, labels=LABELS)
    texts = [f"document number {i} about things" for i in range(12)]
    texts[2] = 'tricky "quoted", text\nwith a second line and ünïcödé'
    items = make_items(db, source, texts)
    items[0].external_id = "first"
    items[1].split = "dev"
    db.commit()
    for i, item in enumerate(items[:9]):
        _label(lead, source.id, item.id, LABELS[i % 3])
    for fmt in ("jsonl", "csv"):
        target = make_project(db, lead=lead.user, labels=LABELS)
        db.commit()
        exported = lead.get(f"/api/v1/projects/{source.id}/annotations/export",
                            params={"format": fmt})
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        imported = lead.client.post(
            f"/api/v1/projects/{target.id}/items",
            params={"label_column": "label", "split_column": "split", "id_column": "external_id"},
            content=exported.content,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {lead.token}"},
        )
        assert imported.status_code == 201, imported.text
        assert _labels_by_text(db, target.id) == _labels_by_text(db, source.id)
        assert len(_labels_by_text(db, target.id)) == 9
        copied = {i.text: (i.split, i.external_id) for i in db.scalars(
            select(Item).where(Item.project_id == target.id))}
        assert copied[texts[0]] == ("pool", "first") and copied[texts[1]][0] == "dev"


LABEL_STUDIO = [
    {"id": 11, "data": {"text": "great phone"},
     "annotations": [{"was_cancelled": False, "result": [
         {"type": "choices", "from_name": "sentiment", "to_name": "text",
          "value": {"choices": ["positive"]}}]}]},
    {"id": 12, "data": {"text": "awful battery"},
     "annotations": [
         {"was_cancelled": False,
          "result": [{"type": "choices", "value": {"choices": ["neutral"]}}]},
         {"was_cancelled": False, "ground_truth": True,
          "result": [{"type": "choices", "value": {"choices": ["negative"]}}]},
     ]},
    {"id": 13, "data": {"text": "arrived tuesday"},
     "annotations": [{"was_cancelled": True, "result": [
         {"type": "choices", "value": {"choices": ["neutral"]}}]}]},
    {"id": 14, "data": {"body": "only field"}, "annotations": []},
]


def _upload(who: Caller, url: str, name: str, payload: bytes, **params: str) -> object:
    return who.post(url, files={"file": (name, payload)}, params=params)


def test_label_studio_export_imports_with_its_choices(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db, labels=LABELS)
    url = f"/api/v1/projects/{project.id}/imports/label-studio"
    response = _upload(lead, url, "export.json", json.dumps(LABEL_STUDIO).encode())
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    report = response.json()  # type: ignore[attr-defined]
    assert (report["source_rows"], report["labelled"], report["unlabelled"]) == (4, 2, 2)
    assert report["imported"]["created"] == 4
    assert _labels_by_text(db, project.id) == {"great phone": "positive",
                                               "awful battery": "negative"}
    externals = set(db.scalars(select(Item.external_id).where(Item.project_id == project.id)))
    assert externals == {"11", "12", "13", "14"}


def test_label_studio_problems_are_reported_by_task_number(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db, labels=LABELS)
    url = f"/api/v1/projects/{project.id}/imports/label-studio"
    tasks = [LABEL_STUDIO[0], {"id": 2, "data": {"text": "x"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["sarcastic"]}}]}]}]
    response = _upload(lead, url, "export.json", json.dumps(tasks).encode())
    assert response.status_code == 422  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == "import_rejected"
    assert error["details"]["errors"][0]["line"] == 2
    assert "sarcastic" in error["message"] and error["message"].startswith("Task 2")
    not_json = _upload(lead, url, "export.json", b"{nope")
    assert not_json.status_code == 422  # type: ignore[attr-defined]
    multi = [{"data": {"text": "y"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["positive", "negative"]}}]}]}]
    refused = _upload(lead, url, "export.json", json.dumps(multi).encode())
    assert "single-label" in refused.json()["error"]["message"]  # type: ignore[attr-defined]
    assert db.scalar(select(Item.id).where(Item.project_id == project.id)) is None


PRODIGY = "\n".join(json.dumps(record) for record in [
    {"text": "refund please", "label": "negative", "answer": "accept"},
    {"text": "love it", "options": [{"id": "POS", "text": "positive"}], "accept": ["POS"],
     "answer": "accept"},
    {"text": "meh", "label": "positive", "answer": "reject"},
    {"text": "meh", "label": "neutral", "answer": "accept"},
    {"text": "skip me", "answer": "ignore", "meta": {"id": "row-5"}},
]).encode()


def test_prodigy_jsonl_imports_accepts_and_collapses_duplicates(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db, labels=LABELS)
    url = f"/api/v1/projects/{project.id}/imports/prodigy"
    response = _upload(lead, url, "db-out.jsonl", PRODIGY)
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    report = response.json()  # type: ignore[attr-defined]
    assert (report["source_rows"], report["collapsed"], report["labelled"]) == (5, 1, 3)
    assert _labels_by_text(db, project.id) == {
        "refund please": "negative", "love it": "positive", "meh": "neutral"}
    assert db.scalar(select(Item.external_id).where(Item.text == "skip me")) == "row-5"


def test_prodigy_errors_name_the_source_line(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db, labels=LABELS)
    url = f"/api/v1/projects/{project.id}/imports/prodigy"
    payload = PRODIGY + b'\n{"text": "", "answer": "accept", "label": "positive"}\n'
    response = _upload(lead, url, "db-out.jsonl", payload)
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.json()["error"]["details"]["errors"][0]["line"] == 6  # type: ignore[attr-defined]
    broken = _upload(lead, url, "db-out.jsonl", b'{"text": "a"}\nnot json\n')
    assert broken.json()["error"]["details"]["errors"][0]["line"] == 2  # type: ignore[attr-defined]
