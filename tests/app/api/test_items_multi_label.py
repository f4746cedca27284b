"""The import and export endpoints with multi-label projects: label sets in, label sets out, the
``label_separator`` parameter, refusals with clear errors, and round trips through the API."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_LEAD,
    TASK_MULTI_LABEL,
    Annotation,
    Item,
    Label,
    Project,
)
from app.domain.annotation.label_sets import label_sets
from tests.app.api.support import Caller, caller
from tests.factories import make_project, make_user

LABELS = ("billing", "bug", "feature")


def _lead_with_project(app: FastAPI, db: Session, *, task_type: str = TASK_MULTI_LABEL
                       ) -> tuple[Caller, Project]:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS, task_type=task_type)
    return caller(app, db, user=lead), project


def _sets(db: Session, project: Project) -> dict[str, list[str]]:
    rows = db.execute(
        select(Annotation.id, Item.text)
        .join(Item, Item.id == Annotation.item_id)
        .where(Annotation.project_id == project.id, Annotation.deleted.is_(False),
               Annotation.superseded_by_id.is_(None))
    ).tuples().all()
    names = dict(db.execute(select(Label.id, Label.name)
                            .where(Label.project_id == project.id)).tuples().all())
    sets = label_sets(db, [a for a, _t in rows])
    return {text: [names[i] for i in sets[a]] for a, text in rows}


def _items(db: Session, project: Project) -> int:
    return db.scalar(select(func.count()).select_from(Item).where(Item.project_id == project.id))


def _post_raw(who: Caller, project: Project, content: bytes, content_type: str, **params: str
              ) -> object:
    return who.post(f"/api/v1/projects/{project.id}/items", params=params, content=content,
                    headers={"Content-Type": content_type})


JSONL = (b'{"text": "refund after crash", "labels": ["bug", "billing"]}\n'
         b'{"text": "hi", "labels": []}\n'
         b'{"text": "later", "labels": null}\n'
         b'{"text": "pipe string", "labels": "feature"}\n')


def test_jsonl_lists_import_as_sets(app: FastAPI, db: Session) -> None:
    lead, project = _lead_with_project(app, db)
    response = _post_raw(lead, project, JSONL, "application/x-ndjson", label_column="labels")
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    report = response.json()  # type: ignore[attr-defined]
    assert (report["created"], report["annotations"], report["none_of_these"]) == (4, 3, 1)
    assert report["per_label"] == {"billing": 1, "bug": 1, "feature": 1}
    assert _sets(db, project) == {"refund after crash": ["billing", "bug"], "hi": [],
                                  "pipe string": ["feature"]}


def test_multipart_csv_takes_the_label_separator(app: FastAPI, db: Session) -> None:
    lead, project = _lead_with_project(app, db)
    content = b"text,labels\ncrash and refund,bug; billing\nnothing,[]\n"
    response = lead.post(f"/api/v1/projects/{project.id}/items",
                         files={"file": ("tickets.csv", content, "text/csv")},
                         data={"label_column": "labels", "label_separator": ";"})
    assert response.status_code == 201, response.text
    assert _sets(db, project) == {"crash and refund": ["billing", "bug"], "nothing": []}


def test_a_bad_separator_or_bad_rows_are_refused_with_details(app: FastAPI, db: Session) -> None:
    lead, project = _lead_with_project(app, db)
    content = b"text,labels\na,bug\n"
    bad = _post_raw(lead, project, content, "text/csv", label_column="labels",
                    label_separator=",")
    assert bad.status_code == 422  # type: ignore[attr-defined]
    error = bad.json()["error"]  # type: ignore[attr-defined]
    assert error["details"]["field"] == "label_separator"
    assert "cannot contain the CSV delimiter ','" in error["message"]
    rows = b"text,labels\nfine,bug\nodd,bug|refunds|praise\n"
    refused = _post_raw(lead, project, rows, "text/csv", label_column="labels")
    assert refused.status_code == 422  # type: ignore[attr-defined]
    body = refused.json()["error"]  # type: ignore[attr-defined]
    assert body["code"] == "import_rejected"
    assert body["details"]["errors"] == [{
        "line": 3, "column": "labels",
        "message": "has labels 'refunds', 'praise', which are not in the label set (known "
                   "labels: 'billing', 'bug', 'feature')"}]
    assert _items(db, project) == 0


def test_a_gold_column_imports_gold_sets_for_a_multi_label_project(
    app: FastAPI, db: Session
) -> None:
    lead, project = _lead_with_project(app, db)
    response = _post_raw(lead, project, b"text,labels,gold\na,bug,\nb,,bug|feature\nc,,[]\n",
                         "text/csv", label_column="labels", gold_column="gold")
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    assert response.json()["gold"] == 2  # type: ignore[attr-defined]  # was a 501
    listed = lead.get(f"/api/v1/projects/{project.id}/gold").json()
    assert [(row["text"], row["labels"], row["label"]) for row in listed] == [
        ("b", ["bug", "feature"], "bug, feature"), ("c", [], "none of these")]
    assert _sets(db, project) == {"a": ["bug"]}


def test_single_label_projects_refuse_lists_and_separators(app: FastAPI, db: Session) -> None:
    lead, project = _lead_with_project(app, db, task_type="single_label")
    listed = _post_raw(lead, project, JSONL, "application/x-ndjson", label_column="labels")
    assert listed.status_code == 422  # type: ignore[attr-defined]
    errors = listed.json()["error"]["details"]["errors"]  # type: ignore[attr-defined]
    assert [(e["line"], "single-label" in e["message"]) for e in errors] == [(1, True), (2, True)]
    separated = _post_raw(lead, project, b"text,labels\na,bug\n", "text/csv",
                          label_column="labels", label_separator=";")
    assert separated.status_code == 422  # type: ignore[attr-defined]
    assert "multi-label projects only" in (
        separated.json()["error"]["message"])  # type: ignore[attr-defined]
    plain = _post_raw(lead, project, b"text,labels\na,bug\n", "text/csv", label_column="labels")
    assert plain.status_code == 201  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "label_studio", "prodigy"])
def test_data_manager_exports_round_trip_through_the_api(app: FastAPI, db: Session, fmt: str
                                                         ) -> None:
    lead, source = _lead_with_project(app, db)
    _post_raw(lead, source, JSONL, "application/x-ndjson", label_column="labels")
    exported = lead.get(f"/api/v1/projects/{source.id}/data/export", params={"format": fmt})
    assert exported.status_code == 200, exported.text
    target = make_project(db, lead=lead.user, labels=LABELS, task_type=TASK_MULTI_LABEL)
    db.commit()
    if fmt in ("csv", "jsonl"):
        response = lead.post(f"/api/v1/projects/{target.id}/items",
                             files={"file": (f"export.{fmt}", exported.content)},
                             data={"label_column": "label", "format": fmt})
    else:
        kind = "label-studio" if fmt == "label_studio" else "prodigy"
        response = lead.post(f"/api/v1/projects/{target.id}/imports/{kind}",
                             files={"file": ("export", exported.content)})
    assert response.status_code == 201, response.text
    assert _sets(db, target) == {"refund after crash": ["billing", "bug"], "hi": [],
                                 "pipe string": ["feature"]}
    assert _items(db, target) == 4


def test_label_studio_and_prodigy_endpoints_read_sets(app: FastAPI, db: Session) -> None:
    lead, project = _lead_with_project(app, db)
    tasks = [{"id": 5, "data": {"text": "two choices"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["feature", "bug"]}}]}]}]
    response = lead.post(f"/api/v1/projects/{project.id}/imports/label-studio",
                         files={"file": ("export.json", json.dumps(tasks).encode())})
    assert response.status_code == 201, response.text
    assert response.json()["imported"]["per_label"] == {"bug": 1, "feature": 1}
    lines = b'{"text": "accepted two", "accept": ["billing", "bug"], "answer": "accept"}\n' \
            b'{"text": "accepted none", "accept": [], "answer": "accept"}\n'
    response = lead.post(f"/api/v1/projects/{project.id}/imports/prodigy",
                         files={"file": ("db-out.jsonl", lines)})
    assert response.status_code == 201, response.text
    assert response.json()["imported"]["none_of_these"] == 1
    assert _sets(db, project) == {"two choices": ["bug", "feature"],
                                  "accepted two": ["billing", "bug"], "accepted none": []}
