"""Pushing labels over the API: idempotency keys, item lookup, batches, listing with cursors."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, Annotation, TrainingRun
from app.jobs import recording_jobs
from tests.app.api.support import caller, lead_with_project
from tests.factories import add_member, make_items, make_user


def _count(db: Session, project_id: int) -> int:
    return int(db.scalar(select(func.count()).select_from(Annotation)
                         .where(Annotation.project_id == project_id)) or 0)


def test_same_submission_five_times_with_one_key_creates_one_annotation(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["an item to label"])[0]
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    body = {"annotations": [{"item_id": item.id, "label": "positive"}]}
    answers = [
        lead.post(url, json=body, headers={"Idempotency-Key": "job-42"}) for _ in range(5)
    ]
    assert [a.status_code for a in answers] == [200] * 5
    ids = {a.json()["annotations"][0]["annotation_id"] for a in answers}
    assert len(ids) == 1
    assert [a.json()["created"] for a in answers] == [1, 0, 0, 0, 0]
    assert all(a.json()["annotations"][0]["replayed"] for a in answers[1:])
    assert _count(db, project.id) == 1


def test_per_label_keys_make_a_partly_retried_batch_safe(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    a, b, c = make_items(db, project, ["one", "two", "three"])
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    first = [{"item_id": a.id, "label": "positive", "idempotency_key": "k-a"},
             {"item_id": b.id, "label": "negative", "idempotency_key": "k-b"}]
    assert lead.post(url, json={"annotations": first}).json()["created"] == 2
    retry = [*first, {"item_id": c.id, "label": "negative", "idempotency_key": "k-c"}]
    again = lead.post(url, json={"annotations": retry}).json()
    assert (again["created"], again["replayed"]) == (1, 2)
    assert _count(db, project.id) == 3


def test_header_key_covers_each_label_of_a_multi_label_request(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    a, b = make_items(db, project, ["one", "two"])
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    body = {"annotations": [{"item_id": a.id, "label": "positive"},
                            {"item_id": b.id, "label": "positive"}]}
    for _ in range(3):
        lead.post(url, json=body, headers={"Idempotency-Key": "batch-7"})
    assert _count(db, project.id) == 2
    keys = set(db.scalars(select(Annotation.idempotency_key)
                          .where(Annotation.project_id == project.id)))
    assert keys == {"batch-7:0", "batch-7:1"}


def test_reusing_a_key_for_another_label_is_a_conflict(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    lead.post(url, json={"annotations": [{"item_id": item.id, "label": "positive",
                                          "idempotency_key": "k"}]})
    clash = lead.post(url, json={"annotations": [{"item_id": item.id, "label": "negative",
                                                  "idempotency_key": "k"}]})
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "idempotency_key_reused"
    assert _count(db, project.id) == 1


def test_relabelling_supersedes_the_callers_earlier_label(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    for label in ("positive", "negative"):
        lead.post(url, json={"annotations": [{"item_id": item.id, "label": label}]})
    page = lead.get(url).json()
    assert [a["label"] for a in page["annotations"]] == ["negative"]


def test_items_can_be_named_by_external_id(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    item.external_id = "crm-17"
    db.commit()
    response = lead.post(f"/api/v1/projects/{project.id}/annotations",
                         json={"annotations": [{"external_id": "crm-17", "label": "positive"}]})
    assert response.status_code == 200, response.text
    assert response.json()["annotations"][0]["item_id"] == item.id


@pytest.mark.parametrize(
    ("entry", "loc"),
    [
        ({"item_id": 999_999, "label": "positive"}, ["body", "annotations", "0", "item_id"]),
        ({"external_id": "nope", "label": "positive"}, ["body", "annotations", "0", "external_id"]),
        ({"label": "positive"}, ["body", "annotations", "0"]),
        ({"item_id": "ITEM", "label": "maybe"}, ["body", "annotations", "0", "label"]),
    ],
)
def test_unknown_items_and_labels_are_422_with_field_paths(
    app: FastAPI, db: Session, entry: dict[str, object], loc: list[str]
) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    db.commit()
    if entry.get("item_id") == "ITEM":
        entry = {**entry, "item_id": item.id}
    response = lead.post(f"/api/v1/projects/{project.id}/annotations",
                         json={"annotations": [entry]})
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["error"]["details"]["errors"]]
    assert _count(db, project.id) == 0


def test_an_unknown_label_is_named_in_the_message(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    items = make_items(db, project, ["one", "two"])
    db.commit()
    response = lead.post(f"/api/v1/projects/{project.id}/annotations", json={"annotations": [
        {"item_id": items[0].id, "label": "positive"},
        {"item_id": items[1].id, "label": "maybe"},
    ]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"].startswith("1 label(s) are not in the project's label set: 'maybe' "
                                       "(the labels: ")
    assert error["details"]["errors"][0]["message"] == "'maybe' is not a label of this project"
    assert _count(db, project.id) == 0


def test_submit_closes_the_batch_and_requests_a_retrain(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    db.commit()
    with recording_jobs() as sent:
        response = lead.post(f"/api/v1/projects/{project.id}/annotations",
                             json={"annotations": [{"item_id": item.id, "label": "positive"}],
                                   "submit": True})
    run_id = response.json()["retrain_run_id"]
    assert run_id is not None
    assert db.get(TrainingRun, run_id).kind == "retrain"  # type: ignore[union-attr]
    assert [job.name for job in sent if job.name != "live.refit_head"] == [
        "training.retrain_adapter"
    ]


def test_read_scope_cannot_label_and_annotators_label_as_themselves(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one"])[0]
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    add_member(db, project, annotator)
    reader = caller(app, db, user=annotator, scopes=("read",))
    writer = caller(app, db, user=annotator, scopes=("annotate",))
    url = f"/api/v1/projects/{project.id}/annotations"
    body = {"annotations": [{"item_id": item.id, "label": "positive"}]}
    assert reader.post(url, json=body).status_code == 403
    assert writer.post(url, json=body).status_code == 200
    listed = lead.get(url).json()["annotations"]
    assert [(a["annotator_id"], a["annotator"]) for a in listed] == [
        (annotator.id, annotator.email)
    ]


def test_listing_pages_with_an_opaque_cursor(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    items = make_items(db, project, [f"text {i}" for i in range(5)])
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    lead.post(url, json={"annotations": [{"item_id": i.id, "label": "positive"} for i in items]})
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = lead.get(url, params=params).json()
        seen += [a["item_id"] for a in page["annotations"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i.id for i in items]
    bad = lead.get(url, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["errors"][0]["loc"] == ["query", "cursor"]
