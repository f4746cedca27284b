"""Label sets over the REST API (multi-label projects): sets by name or id, the empty set, wrong
shapes, unknown or foreign labels, idempotent retries, and listing the sets back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_LEAD,
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    Label,
    Project,
    TrainingRun,
)
from app.domain.annotation.label_sets import label_sets
from app.jobs import recording_jobs
from tests.app.api.support import Caller, caller, lead_with_project
from tests.factories import make_items, make_project, make_user

LABELS = ("billing", "bug", "feature")


@pytest.fixture()
def lead_and_project(app: FastAPI, db: Session) -> tuple[Caller, Project]:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS, task_type=TASK_MULTI_LABEL)
    return caller(app, db, user=lead), project


def _url(project: Project) -> str:
    return f"/api/v1/projects/{project.id}/annotations"


def _ids(db: Session, project: Project) -> dict[str, int]:
    return dict(db.execute(select(Label.name, Label.id)
                           .where(Label.project_id == project.id)).tuples().all())


def _count(db: Session, project: Project) -> int:
    return int(db.scalar(select(func.count()).select_from(Annotation)
                         .where(Annotation.project_id == project.id)) or 0)


def _stored_sets(db: Session, project: Project) -> dict[int, list[str]]:
    """Item id -> the names of its live annotation's set, read from the database."""
    names = {v: k for k, v in _ids(db, project).items()}
    live = db.scalars(select(Annotation).where(
        Annotation.project_id == project.id, Annotation.deleted.is_(False),
        Annotation.superseded_by_id.is_(None))).all()
    assert all(a.label_id is None for a in live)
    sets = label_sets(db, [a.id for a in live])
    return {a.item_id: [names[i] for i in sets[a.id]] for a in live}


def test_sets_by_name_and_by_id_are_stored_in_label_order_and_listed(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project]
) -> None:
    lead, project = lead_and_project
    a, b = make_items(db, project, ["charged twice and the app crashed", "please add export"])
    db.commit()
    ids = _ids(db, project)
    response = lead.post(_url(project), json={"annotations": [
        {"item_id": a.id, "labels": ["bug", "billing", "bug"]},
        {"item_id": b.id, "label_ids": [ids["feature"]]},
    ]})
    assert response.status_code == 200, response.text
    answers = response.json()["annotations"]
    assert [x["labels"] for x in answers] == [["billing", "bug"], ["feature"]]
    assert all("label" not in x for x in answers)
    assert response.json()["created"] == 2
    assert _stored_sets(db, project) == {a.id: ["billing", "bug"], b.id: ["feature"]}
    listed = lead.get(_url(project)).json()["annotations"]
    assert [(x["item_id"], x["labels"]) for x in listed] == [
        (a.id, ["billing", "bug"]), (b.id, ["feature"])
    ]
    assert all("label" not in x for x in listed)


def test_an_empty_set_is_stored_as_none_of_these(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project]
) -> None:
    lead, project = lead_and_project
    item = make_items(db, project, ["a thank-you note"])[0]
    db.commit()
    response = lead.post(_url(project), json={"annotations": [{"item_id": item.id,
                                                               "labels": []}]})
    assert response.status_code == 200, response.text
    assert response.json()["annotations"][0]["labels"] == []
    assert _count(db, project) == 1
    assert db.scalar(select(func.count()).select_from(AnnotationLabel)) == 0
    assert _stored_sets(db, project) == {item.id: []}
    assert lead.get(_url(project)).json()["annotations"][0]["labels"] == []


def test_a_new_set_supersedes_the_callers_earlier_set(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project]
) -> None:
    lead, project = lead_and_project
    item = make_items(db, project, ["one"])[0]
    db.commit()
    for labels in (["bug"], ["billing", "feature"]):
        lead.post(_url(project), json={"annotations": [{"item_id": item.id, "labels": labels}]})
    assert _count(db, project) == 2
    listed = lead.get(_url(project)).json()["annotations"]
    assert [x["labels"] for x in listed] == [["billing", "feature"]]


@pytest.mark.parametrize(
    ("entry", "loc", "says"),
    [
        ({"label": "bug"}, ["body", "annotations", "0", "label"], "multi-label"),
        ({}, ["body", "annotations", "0"], "multi-label"),
        ({"labels": ["bug"], "label_ids": []}, ["body", "annotations", "0"], "one of labels"),
    ],
)
def test_a_single_label_answer_to_a_multi_label_project_is_422(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project],
    entry: dict[str, Any], loc: list[str], says: str,
) -> None:
    lead, project = lead_and_project
    item = make_items(db, project, ["one"])[0]
    db.commit()
    response = lead.post(_url(project), json={"annotations": [{"item_id": item.id, **entry}]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and says in error["message"]
    assert error["details"]["errors"][0]["loc"] == loc
    assert _count(db, project) == 0


@pytest.mark.parametrize("field", ["labels", "label_ids"])
def test_a_set_sent_to_a_single_label_project_is_422(
    app: FastAPI, db: Session, field: str
) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    db.commit()
    value = ["positive"] if field == "labels" else [_ids(db, project)["positive"]]
    response = lead.post(_url(project), json={"annotations": [{"item_id": item.id,
                                                               field: value}]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "This project is single-label: send one label" in error["message"]
    assert error["details"]["errors"][0]["loc"] == ["body", "annotations", "0", field]
    assert _count(db, project) == 0


def test_unknown_names_and_another_projects_label_ids_are_422_and_store_nothing(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project]
) -> None:
    lead, project = lead_and_project
    other = make_project(db, labels=LABELS, task_type=TASK_MULTI_LABEL)
    a, b = make_items(db, project, ["one", "two"])
    db.commit()
    foreign = _ids(db, other)["bug"]
    response = lead.post(_url(project), json={"annotations": [
        {"item_id": a.id, "labels": ["bug", "refund"]},
        {"item_id": b.id, "label_ids": [_ids(db, project)["bug"], foreign]},
    ]})
    assert response.status_code == 422, response.text
    errors = response.json()["error"]["details"]["errors"]
    assert [e["loc"] for e in errors] == [
        ["body", "annotations", "0", "labels", "1"],
        ["body", "annotations", "1", "label_ids", "1"],
    ]
    assert "'refund' is not a label of this project" in errors[0]["message"]
    assert "(first: 'refund' is not a label of this project; the labels: " in (
        response.json()["error"]["message"])
    assert _count(db, project) == 0 and _count(db, other) == 0


def test_one_key_five_times_stores_one_set_and_a_reused_key_is_a_conflict(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project]
) -> None:
    lead, project = lead_and_project
    a, b = make_items(db, project, ["one", "two"])
    db.commit()
    body = {"annotations": [{"item_id": a.id, "labels": ["bug", "feature"]},
                            {"item_id": b.id, "labels": []}]}
    answers = [lead.post(_url(project), json=body, headers={"Idempotency-Key": "sync-9"})
               for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert [r.json()["created"] for r in answers] == [2, 0, 0, 0, 0]
    assert all(x["replayed"] for r in answers[1:] for x in r.json()["annotations"])
    assert {tuple(x["annotation_id"] for x in r.json()["annotations"]) for r in answers} == {
        tuple(x["annotation_id"] for x in answers[0].json()["annotations"])
    }
    assert answers[-1].json()["annotations"][0]["labels"] == ["bug", "feature"]
    assert _count(db, project) == 2
    keys = set(db.scalars(select(Annotation.idempotency_key)
                          .where(Annotation.project_id == project.id)))
    assert keys == {"sync-9:0", "sync-9:1"}
    own = {"item_id": a.id, "labels": ["bug"], "idempotency_key": "k-1"}
    assert lead.post(_url(project), json={"annotations": [own]}).status_code == 200
    clash = lead.post(_url(project), json={"annotations": [{**own, "labels": ["billing"]}]})
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "idempotency_key_reused"
    assert _count(db, project) == 3
    assert _stored_sets(db, project) == {a.id: ["bug"], b.id: []}


def test_submit_closes_the_batch_of_sets(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project]
) -> None:
    """Closing a multi-label batch starts a new labelled-data version and asks for an adapter
    retrain (a multi-label adapter round), as in a single-label project."""
    lead, project = lead_and_project
    item = make_items(db, project, ["one"])[0]
    db.commit()
    version = project.data_version
    with recording_jobs():
        response = lead.post(_url(project), json={
            "annotations": [{"item_id": item.id, "labels": ["bug"]}], "submit": True})
    assert response.status_code == 200, response.text
    db.refresh(project)
    assert project.data_version == version + 1
    run = db.scalars(select(TrainingRun)).one()
    assert run.kind == "retrain" and response.json()["retrain_run_id"] == run.id


def test_single_label_answers_keep_their_shape(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    db.commit()
    response = lead.post(_url(project), json={"annotations": [{"item_id": item.id,
                                                               "label": "positive"}]})
    assert response.status_code == 200, response.text
    answer = response.json()["annotations"][0]
    assert set(answer) == {"annotation_id", "item_id", "label", "replayed"}
    assert response.json()["retrain_run_id"] is None
    listed = lead.get(_url(project)).json()
    assert listed["next_cursor"] is None
    assert listed["annotations"][0]["label"] == "positive"
    assert "labels" not in listed["annotations"][0]


def test_sets_are_listed_with_filters_and_exported(
    app: FastAPI, db: Session, lead_and_project: tuple[Caller, Project]
) -> None:
    lead, project = lead_and_project
    a, b = make_items(db, project, ["one", "two"])
    db.commit()
    lead.post(_url(project), json={"annotations": [
        {"item_id": a.id, "labels": ["bug", "billing"]}, {"item_id": b.id, "labels": []}]})
    agreed = lead.get(_url(project), params={"only": "agreed", "item_id": b.id})
    assert agreed.status_code == 200, agreed.text
    assert [(x["item_id"], x["labels"]) for x in agreed.json()["annotations"]] == [(b.id, [])]
    export = lead.get(f"{_url(project)}/export", params={"format": "jsonl"})
    assert export.status_code == 200, export.text
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [(x["item_id"], x["label"]) for x in lines] == [(a.id, ["billing", "bug"]),
                                                          (b.id, [])]
