"""Every page of a multi-label project with label sets renders for its lead (no page assumes one
label per annotation), and the data manager's item page and CSV export show the sets."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD, Label
from app.domain.annotation.labels import record_label
from tests.factories import login_client, make_items, make_project, make_user

PAGES = ("", "/annotate", "/annotate/status", "/audit", "/dashboard", "/data", "/data/rows",
         "/gold", "/guidelines", "/import", "/models", "/review", "/runs", "/settings")


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_of_a_multi_label_project_render(app: FastAPI, db: Session, page: str) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("billing", "bug"), task_type="multi_label")
    ids = dict(db.execute(select(Label.name, Label.id)
                          .where(Label.project_id == project.id)).tuples().all())
    items = make_items(db, project, ["charged twice, then it crashed", "hello", "refund"])
    for item, names in zip(items, [["billing", "bug"], [], ["billing"]], strict=True):
        record_label(db, project, lead, item_id=item.id, label_ids=[ids[n] for n in names])
    db.flush()
    client = login_client(app, db, user=lead)
    response = client.get(f"/projects/{project.id}{page}")
    assert response.status_code == 200, response.text[:500]


def test_the_item_page_and_the_csv_export_show_sets(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("billing", "bug"), task_type="multi_label")
    ids = dict(db.execute(select(Label.name, Label.id)
                          .where(Label.project_id == project.id)).tuples().all())
    both, none = make_items(db, project, ["charged twice, then it crashed", "hello"])
    record_label(db, project, lead, item_id=both.id, label_ids=[ids["bug"], ids["billing"]])
    record_label(db, project, lead, item_id=none.id, label_ids=[])
    db.flush()
    client = login_client(app, db, user=lead)
    page = client.get(f"/projects/{project.id}/data/items/{both.id}")
    assert page.status_code == 200 and "billing, bug" in page.text
    export = client.get(f"/projects/{project.id}/data/export", params={"format": "csv"})
    assert export.status_code == 200, export.text[:300]
    assert "billing|bug" in export.text and "[]" in export.text


def test_the_runs_page_of_a_multi_label_project_offers_a_retrain_and_no_queue_rebuild(
    app: FastAPI, db: Session
) -> None:
    from app.db.models import RUN_RETRAIN, TrainingRun
    from app.jobs import recording_jobs

    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("billing", "bug"), task_type="multi_label")
    client = login_client(app, db, user=lead)
    page = client.get(f"/projects/{project.id}/runs")
    assert page.status_code == 200
    assert 'name="kind" value="retrain"' in page.text and "Retrain adapter" in page.text
    assert 'value="recompute_queue"' not in page.text
    assert 'data-testid="no-queue-rebuild"' in page.text
    with recording_jobs():
        response = client.post(f"/projects/{project.id}/runs", data={"kind": "retrain"},
                               follow_redirects=False)
        assert response.status_code == 303, response.text[:300]
        run = db.scalars(select(TrainingRun)).one()
        assert run.kind == RUN_RETRAIN and run.project_id == project.id
        assert response.headers["location"] == f"/projects/{project.id}/runs/{run.id}"
        refused = client.post(f"/projects/{project.id}/runs", data={"kind": "recompute_queue"})
    assert refused.status_code == 501 and "always built by the live head" in refused.text
    assert db.scalars(select(TrainingRun)).all() == [run]


def test_the_dashboard_shows_a_multi_label_rounds_micro_f1_and_subset_accuracy(
    app: FastAPI, db: Session
) -> None:
    from app.db.models import RoundMetric

    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("billing", "bug"), task_type="multi_label")
    db.add(RoundMetric(project_id=project.id, labels_used=24, macro_f1=0.6123,
                       dev_accuracy=0.4321, per_class_f1={"billing": 0.7, "bug": 0.5},
                       details={"task_type": "multi_label", "micro_f1": 0.6789, "dev_n": 14}))
    db.flush()
    client = login_client(app, db, user=lead)
    page = client.get(f"/projects/{project.id}/dashboard")
    assert page.status_code == 200, page.text[:500]
    text = page.text
    assert "<th>Subset accuracy</th><th>Micro-F1</th><th>Macro-F1</th>" in text
    assert "<td>0.432</td>" in text and "<td>0.679</td>" in text and "0.612" in text
    assert "micro-F1 0.679 · subset accuracy 0.432" in text
    assert "adapter dev subset accuracy" in text
