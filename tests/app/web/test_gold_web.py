"""Gold over HTTP: the lead's gold page and API, the dashboard's accuracy table, and what an
annotator may not see (gold answers, the gold page, the gold API)."""

from __future__ import annotations

from random import Random
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, Annotation, GoldItem
from app.domain import gold
from app.domain.annotation import leases
from app.domain.projects import get_labels
from tests.factories import login_client, make_items, make_project, make_user


def _world(app: FastAPI, db: Session) -> tuple[Any, Any, Any, list[Any]]:
    annotator = make_user(db, role=ROLE_ANNOTATOR, email="ann@example.com")
    project = make_project(db, labels=("sports", "finance", "science"), annotators=[annotator])
    items = make_items(db, project, [f"candidate text {i}" for i in range(3)])
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    member = login_client(app, user=annotator)
    return project, lead, member, items


def test_lead_marks_gold_on_the_page_and_sees_it_listed(app: FastAPI, db: Session) -> None:
    project, lead, _, items = _world(app, db)
    reply = lead.post(f"/projects/{project.id}/gold",
                      data={"item_id": str(items[1].id), "label": "finance"})
    assert reply.status_code == 200  # followed the redirect
    assert f"Item {items[1].id} is gold." in reply.text
    row = db.query(GoldItem).filter_by(item_id=items[1].id).one()
    assert row.label_id == next(lbl.id for lbl in get_labels(db, project.id)
                                if lbl.name == "finance")
    page = lead.get(f"/projects/{project.id}/gold")
    assert f'data-item-id="{items[1].id}"' in page.text and "1 gold item" in page.text

    bad = lead.post(f"/projects/{project.id}/gold", data={"item_id": "999999", "label": "finance"})
    assert "is not in this project" in bad.text
    assert db.query(GoldItem).count() == 1

    lead.post(f"/projects/{project.id}/gold/{items[1].id}/remove")
    assert db.query(GoldItem).count() == 0


def test_gold_settings_form_checks_everything_before_saving(app: FastAPI, db: Session) -> None:
    project, lead, _, _ = _world(app, db)
    lead.post(f"/projects/{project.id}/gold/settings",
              data={"rate_percent": "10", "min_accuracy_percent": "90", "min_count": "5"})
    assert (project.gold_rate, project.gold_min_accuracy, project.gold_min_count) == (0.1, 0.9, 5)
    reply = lead.post(f"/projects/{project.id}/gold/settings",
                      data={"rate_percent": "20", "min_accuracy_percent": "140"})
    assert "threshold must be between" in reply.text
    assert project.gold_rate == 0.1  # nothing changed


def test_api_and_dashboard_show_accuracy_and_the_flag(app: FastAPI, db: Session) -> None:
    project, lead, member, items = _world(app, db)
    labels = {lbl.name: lbl for lbl in get_labels(db, project.id)}
    annotator = make_user(db, role=ROLE_ANNOTATOR, email="second@example.com")
    for item in items:
        reply = lead.post(f"/api/v1/projects/{project.id}/gold",
                          json={"item_id": item.id, "label": "sports"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["label"] == "sports"
    gold.update_gold_settings(project, min_count=3, min_accuracy=0.8)
    db.add_all([Annotation(project_id=project.id, item_id=item.id, annotator_id=annotator.id,
                           label_id=labels["sports" if i == 0 else "finance"].id)
                for i, item in enumerate(items)])
    db.flush()

    report = lead.get(f"/api/v1/projects/{project.id}/gold-accuracy").json()
    (row,) = report["annotators"]
    assert (row["correct"], row["total"], row["flagged"]) == (1, 3, True)
    assert 0 < row["ci_low"] < 1 / 3 < row["ci_high"] < 1

    page = lead.get(f"/projects/{project.id}/dashboard")
    assert 'id="gold"' in page.text and "1 / 3" in page.text and "flagged" in page.text

    listed = lead.get(f"/api/v1/projects/{project.id}/gold").json()
    assert [(g["item_id"], g["answers"], g["correct"]) for g in listed][0] == (items[0].id, 1, 1)

    assert lead.delete(f"/api/v1/projects/{project.id}/gold/{items[2].id}").status_code == 204
    bad = lead.post(f"/api/v1/projects/{project.id}/gold",
                    json={"item_id": items[2].id, "label": "nope"})
    assert bad.status_code == 422 and "not a label of this project" in bad.text


class _AlwaysGold(Random):
    def random(self) -> float:
        return 0.0


def test_an_annotator_sees_no_gold_answer_anywhere(
    app: FastAPI, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, lead, member, items = _world(app, db)
    lead.post(f"/api/v1/projects/{project.id}/gold",
              json={"item_id": items[0].id, "label": "science"})
    for path in (f"/projects/{project.id}/gold", f"/api/v1/projects/{project.id}/gold",
                 f"/api/v1/projects/{project.id}/gold-accuracy",
                 f"/api/v1/projects/{project.id}/label-issues"):
        assert member.get(path).status_code == 403, path
    assert member.post(f"/api/v1/projects/{project.id}/gold",
                       json={"item_id": items[0].id, "label": "sports"}).status_code == 403
    # The annotate page of a gold item looks like any other: no answer, no "gold" anywhere.
    monkeypatch.setattr(leases, "_random", _AlwaysGold())
    page = member.get(f"/projects/{project.id}/annotate")
    assert page.status_code == 200
    assert items[0].text in page.text  # the gold item was handed out
    assert "gold" not in page.text.lower()
    assert db.query(GoldItem).one().label_id  # still there
