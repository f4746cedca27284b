"""The write rate limit covers every state-changing route: project creation and item imports
(API and pages), not only the routers that used to opt in."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD
from tests.app.api.support import caller, lead_with_project
from tests.factories import login_client


def test_project_creation_and_item_imports_are_rate_limited(app: FastAPI, db: Session) -> None:
    app.state.settings.write_rate_limit_per_minute = 2
    lead = caller(app, db, role=ROLE_LEAD)
    created = [lead.post("/api/v1/projects", json={"name": f"p{i}", "labels": ["a", "b"]})
               for i in range(3)]
    assert [r.status_code for r in created] == [201, 201, 429]
    assert int(created[2].headers["Retry-After"]) >= 1
    assert created[2].json()["error"]["code"] == "rate_limited"

    importer, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}/items"
    imports = [importer.post(url, content=f"text\nrow {i}\n".encode(),
                             headers={"Content-Type": "text/csv"}) for i in range(3)]
    assert [r.status_code for r in imports] == [201, 201, 429]
    assert importer.get(url).status_code == 200  # reads are never limited


def test_page_forms_count_too(app: FastAPI, db: Session) -> None:
    app.state.settings.write_rate_limit_per_minute = 2
    browser = login_client(app, db, ROLE_LEAD)
    answers = [browser.post("/projects", data={"name": f"w{i}", "labels": "a\nb"},
                            follow_redirects=False) for i in range(3)]
    assert [r.status_code for r in answers] == [303, 303, 429]
    assert answers[2].headers["Retry-After"]
