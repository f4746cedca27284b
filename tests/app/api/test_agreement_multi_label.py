"""``/api/v1/projects/{id}/agreement`` on a multi-label project (issue 19): overlap and several
annotations per item are accepted, annotators post their sets over the REST API, and the report
is Krippendorff's alpha with the MASI distance, with the raw agreement and the disagreeing items
with each annotator's set."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, TASK_MULTI_LABEL, Label, Project
from app.domain.agreement import krippendorff_alpha_sets
from tests.app.api.support import Caller, caller
from tests.factories import add_member, make_items, make_project, make_user

LABELS = ("billing", "bug", "<b>feature</b>")


def _annotator(app: FastAPI, db: Session, project: Project, name: str) -> Caller:
    user = make_user(db, role=ROLE_ANNOTATOR, name=name)
    add_member(db, project, user)
    return caller(app, db, user=user, scopes=("read", "annotate"))


def test_a_multi_label_project_accepts_overlap_and_reports_alpha_masi(
    app: FastAPI, db: Session
) -> None:
    lead = caller(app, db, user=make_user(db, role=ROLE_LEAD))
    created = lead.post("/api/v1/projects", json={
        "name": "Tickets", "labels": list(LABELS), "task_type": "multi_label",
        "annotations_per_item": 2})
    assert created.status_code == 201, created.text  # was a 422 before sets had agreement
    project = db.get(Project, created.json()["id"])
    assert project is not None and project.task_type == TASK_MULTI_LABEL
    assert project.annotations_per_item == 2
    url = f"/api/v1/projects/{project.id}/agreement"
    settings = lead.request("PATCH", f"{url}-settings",
                            json={"overlap_rate": 0.5, "overlap_k": 3, "min_kappa": 0.7})
    assert settings.status_code == 200, settings.text  # was a 501
    assert (settings.json()["overlap_rate"], settings.json()["overlap_k"]) == (0.5, 3)
    empty = lead.get(url).json()
    assert (empty["method"], empty["kappa"], empty["items"]) == (None, None, 0)
    assert empty["statistic"] == "Krippendorff's α (MASI)"

    ana = _annotator(app, db, project, "Ana")
    ben = _annotator(app, db, project, "Ben")
    items = make_items(db, project, ["charged twice", "app crashes", "add export", "hello"])
    db.commit()
    answers = {  # item -> (Ana's set, Ben's set)
        items[0]: (["billing"], ["billing"]),
        items[1]: (["bug", "billing"], ["bug"]),
        items[2]: (["<b>feature</b>"], []),
        items[3]: ([], []),
    }
    for person, index in ((ana, 0), (ben, 1)):
        posted = person.post(f"/api/v1/projects/{project.id}/annotations", json={"annotations": [
            {"item_id": item.id, "labels": sets[index]} for item, sets in answers.items()]})
        assert posted.status_code == 200, posted.text

    body = lead.get(url).json()
    ids = dict(db.execute(select(Label.name, Label.id)
                          .where(Label.project_id == project.id)).tuples().all())
    units = [[frozenset(ids[n] for n in a), frozenset(ids[n] for n in b)]
             for a, b in answers.values()]
    expected = krippendorff_alpha_sets(units)
    assert expected is not None and 0 < expected < 1
    assert body["method"] == "krippendorff_masi"
    assert body["statistic"] == "Krippendorff's α (MASI)"
    assert body["kappa"] == pytest.approx(expected) and body["alpha"] == pytest.approx(expected)
    assert body["fleiss_kappa"] is None
    assert (body["items"], body["raters"]) == (4, 2)
    assert body["percent_agreement"] == pytest.approx(0.5)
    assert body["interpretation"] == (
        "reliable" if expected >= 0.8 else "tentative" if expected >= 0.667 else "unreliable")
    assert body["disagreement_count"] == 2
    listed = {d["item_id"]: {(v["annotator"], v["label"]) for v in d["votes"]}
              for d in body["disagreements"]}
    assert listed == {
        items[1].id: {("Ana", "billing, bug"), ("Ben", "bug")},
        items[2].id: {("Ana", "<b>feature</b>"), ("Ben", "none of these")},
    }
    assert {d["text"] for d in body["disagreements"]} == {"app crashes", "add export"}
    (pair,) = body["pairs"]
    assert (pair["items"], pair["percent"]) == (4, 0.5)
    assert pair["kappa"] == pytest.approx(expected)
    annotators = {a["name"]: a for a in body["annotators"]}
    assert annotators["Ana"]["kappa"] == pytest.approx(expected)
    assert not any(a["flagged"] for a in body["annotators"])  # 4 shared items, fewer than 20
    lead.request("PATCH", f"{url}-settings", json={"min_items": 4, "min_kappa": 0.99})
    assert all(a["flagged"] for a in lead.get(url).json()["annotators"])
    per_label = {c["label"]: c["votes"] for c in lead.get(url).json()["per_class"]}
    assert per_label == {"billing": 3, "bug": 2, "<b>feature</b>": 1}


def test_a_single_label_report_keeps_its_kappa_fields(app: FastAPI, db: Session) -> None:
    lead_user = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead_user, labels=("a", "b"))
    lead = caller(app, db, user=lead_user)
    body = lead.get(f"/api/v1/projects/{project.id}/agreement").json()
    assert body["statistic"] == "Cohen's or Fleiss' κ" and body["disagreements"] == []
    assert body["interpretation"] == "not enough overlap yet"
