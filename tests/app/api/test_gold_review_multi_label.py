"""Gold, review decisions, bulk relabel and CSV exports over the REST API on a multi-label
project: answers are label sets (``label_ids``, ``labels``), other projects' labels and items are
refused, and single-label responses keep their exact shape (no set fields)."""

from __future__ import annotations

import csv
import io

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    TASK_MULTI_LABEL,
    Annotation,
    GoldItem,
    Label,
    Project,
    ReviewDecision,
)
from app.domain.annotation import record_label
from app.domain.gold import gold_set_of_item
from tests.app.api.support import Caller, caller
from tests.factories import add_member, make_items, make_project, make_user

LABELS = ("billing|refund", "bug", "feature")


def _world(app: FastAPI, db: Session) -> tuple[Caller, Project, dict[str, int]]:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS, task_type=TASK_MULTI_LABEL)
    ids = dict(db.execute(select(Label.name, Label.id)
                          .where(Label.project_id == project.id)).tuples().all())
    return caller(app, db, user=lead), project, ids


def test_gold_sets_over_the_api_with_exact_and_jaccard_scores(app: FastAPI, db: Session) -> None:
    lead, project, ids = _world(app, db)
    ana = make_user(db, role=ROLE_ANNOTATOR, name="Ana")
    add_member(db, project, ana)
    first, second = make_items(db, project, ["one", "two"])
    other = make_project(db, labels=("x", "y"), task_type=TASK_MULTI_LABEL)
    foreign = db.scalars(select(Label.id).where(Label.project_id == other.id)).first()
    db.commit()
    url = f"/api/v1/projects/{project.id}/gold"
    refused = lead.post(url, json={"item_id": first.id, "label_ids": [ids["bug"], foreign]})
    assert refused.status_code == 422 and "is not a label of this project" in refused.text
    both = lead.post(url, json={"item_id": first.id, "label_ids": [ids["bug"]],
                                "labels": ["bug"]})
    assert both.status_code == 422 and "Give the answer once" in both.text
    single = lead.post(url, json={"item_id": first.id, "label": "bug"})
    assert single.status_code == 422 and "multi-label" in single.text
    assert db.scalar(select(func.count()).select_from(GoldItem)) == 0
    marked = lead.post(url, json={"item_id": first.id,
                                  "label_ids": [ids["feature"], ids["bug"]]})
    assert marked.status_code == 200, marked.text
    assert marked.json()["labels"] == ["bug", "feature"]
    assert marked.json()["label"] == "bug, feature"
    by_name = lead.post(url, json={"item_id": second.id, "labels": []})
    assert by_name.status_code == 200 and by_name.json()["label"] == "none of these"
    record_label(db, project, ana, item_id=first.id, label_ids=[ids["bug"]])
    record_label(db, project, ana, item_id=second.id, label_ids=[])
    db.commit()
    rows = {row["item_id"]: row for row in lead.get(url).json()}
    assert (rows[first.id]["correct"], rows[first.id]["mean_jaccard"]) == (0, 0.5)
    assert (rows[second.id]["correct"], rows[second.id]["mean_jaccard"]) == (1, 1.0)
    (annotator,) = lead.get(f"/api/v1/projects/{project.id}/gold-accuracy").json()["annotators"]
    assert (annotator["correct"], annotator["total"], annotator["accuracy"]) == (1, 2, 0.5)
    assert annotator["mean_jaccard"] == 0.75


def test_single_label_gold_responses_keep_their_shape(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("pos", "neg"))
    (item,) = make_items(db, project, ["fine"])
    who = caller(app, db, user=lead)
    marked = who.post(f"/api/v1/projects/{project.id}/gold",
                      json={"item_id": item.id, "label": "pos"})
    assert marked.status_code == 200, marked.text
    assert set(marked.json()) == {"item_id", "external_id", "text", "label", "answers",
                                  "correct"}
    report = who.get(f"/api/v1/projects/{project.id}/gold-accuracy").json()
    assert set(report) == {"gold_items", "rate", "min_accuracy", "min_count", "annotators"}
    listed = who.post(f"/api/v1/projects/{project.id}/gold",
                      json={"item_id": item.id, "label_ids": [1]})
    assert listed.status_code == 422 and "single-label" in listed.text


def test_a_review_change_takes_label_ids_and_other_projects_are_out_of_reach(
    app: FastAPI, db: Session
) -> None:
    lead, project, ids = _world(app, db)
    ana, ben = make_user(db), make_user(db)
    (item,) = make_items(db, project, ["crash when paying"])
    record_label(db, project, ana, item_id=item.id, label_ids=[ids["bug"]])
    record_label(db, project, ben, item_id=item.id, label_ids=[ids["billing|refund"]])
    other_lead = make_user(db, role=ROLE_LEAD)
    make_project(db, lead=other_lead, labels=LABELS, task_type=TASK_MULTI_LABEL)
    stranger = caller(app, db, user=other_lead)
    url = f"/api/v1/projects/{project.id}/review/items/{item.id}"
    assert stranger.post(url, json={"action": "change", "label_ids": []}).status_code in (403, 404)
    missing = lead.post(url, json={"action": "change", "label_id": ids["bug"]})
    assert missing.status_code == 422 and "send label_ids" in missing.text
    assert db.scalar(select(func.count()).select_from(ReviewDecision)) == 0
    changed = lead.post(url, json={"action": "change",
                                   "label_ids": [ids["bug"], ids["billing|refund"]]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["labels"] == ["billing|refund", "bug"]
    accepted = lead.post(url, json={"action": "accept"})  # the annotations' majority set
    assert accepted.json()["labels"] == ["billing|refund"]  # a tie: the latest set
    sent = lead.post(url, json={"action": "send_back", "note": "look again"})
    assert sent.status_code == 200 and "labels" not in sent.json()


def test_bulk_relabel_and_csv_exports_with_a_chosen_separator(app: FastAPI, db: Session) -> None:
    lead, project, ids = _world(app, db)
    items = make_items(db, project, ["a", "b"])
    record_label(db, project, lead.user, item_id=items[0].id, label_ids=[ids["bug"]])
    db.commit()
    bulk = lead.post(f"/api/v1/projects/{project.id}/data/bulk", json={
        "action": "relabel", "item_ids": [item.id for item in items],
        "label_ids": [ids["feature"], ids["billing|refund"]]})
    assert bulk.status_code == 200, bulk.text
    assert bulk.json()["annotations_superseded"] == 1
    assert db.scalar(select(func.count()).select_from(Annotation)
                     .where(Annotation.label_id.is_not(None))) == 0
    for path in ("annotations/export", "data/export"):
        url = f"/api/v1/projects/{project.id}/{path}"
        clash = lead.get(url, params={"format": "csv"})
        assert clash.status_code == 422
        assert "label separator ';' instead" in clash.json()["error"]["message"]
        bad = lead.get(url, params={"format": "csv", "label_separator": "a,b"})
        assert bad.status_code == 422 and "delimiter" in bad.text
        good = lead.get(url, params={"format": "csv", "label_separator": ";"})
        assert good.status_code == 200, good.text
        cells = {row["text"]: row["label"] for row in csv.DictReader(io.StringIO(good.text))}
        assert cells == {"a": "billing|refund;feature", "b": "billing|refund;feature"}
    assert gold_set_of_item(db, project, items[0].id) is None
