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
