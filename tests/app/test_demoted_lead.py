"""Project powers follow the user's CURRENT global role on every request (``app.deps``): a lead
demoted to annotator keeps annotating their projects but no longer leads them, whether they call
through an old browser session or an API token issued before the demotion."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, ROLE_LEAD, Membership, Project, User
from app.domain import admin as admin_service
from app.jobs import recording_jobs
from tests.factories import (
    add_member,
    login_client,
    make_items,
    make_project,
    make_token,
    make_user,
)


def _demoted_lead(db: Session) -> tuple[User, Project]:
    """A lead of a project (with a second lead, so the demotion is allowed), then demoted."""
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    add_member(db, project, make_user(db, role=ROLE_LEAD), ROLE_LEAD)
    make_items(db, project, ["something to label"])
    return lead, project


def _demote(db: Session, user: User) -> None:
    admin = make_user(db, role=ROLE_ADMIN)
    admin_service.set_role(db, acting=admin, user_id=user.id, role=ROLE_ANNOTATOR)
    db.commit()


def test_token_of_a_demoted_lead_loses_project_lead_powers(app: FastAPI, db: Session) -> None:
    lead, project = _demoted_lead(db)
    token = make_token(db, lead, scopes=["read", "annotate", "admin"])
    db.commit()
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/projects/{project.id}"
    assert client.patch(url, json={"label_budget": 50}, headers=auth).status_code == 200

    _demote(db, lead)

    refused = client.patch(url, json={"label_budget": 60}, headers=auth)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    with recording_jobs() as jobs:
        launch = client.post(f"{url}/runs", json={"kind": "retrain"}, headers=auth)
    assert launch.status_code == 403 and jobs == []
    assert client.post(f"{url}/items", content=b"text\nnew\n", headers={
        **auth, "Content-Type": "text/csv"}).status_code == 403
    # Still an annotator of the project: reading and labelling work.
    assert client.get(url, headers=auth).status_code == 200
    db.refresh(project)
    assert project.label_budget == 50


def test_old_session_of_a_demoted_lead_cannot_add_leads(app: FastAPI, db: Session) -> None:
    lead, project = _demoted_lead(db)
    target = make_user(db, role=ROLE_LEAD)
    browser = login_client(app, db, user=lead)
    db.commit()
    assert browser.get(f"/projects/{project.id}/settings").status_code == 200

    _demote(db, lead)

    added = browser.post(f"/projects/{project.id}/members",
                         data={"email": target.email, "role": "lead"}, follow_redirects=False)
    assert added.status_code == 403
    assert db.query(Membership).filter_by(project_id=project.id, user_id=target.id).count() == 0
    assert browser.get(f"/projects/{project.id}/settings").status_code == 403
    assert browser.patch(f"/api/v1/projects/{project.id}",
                         json={"label_budget": 7}).status_code == 403
    assert browser.get(f"/projects/{project.id}/annotate").status_code == 200


def test_promotion_back_restores_the_membership(app: FastAPI, db: Session) -> None:
    lead, project = _demoted_lead(db)
    token = make_token(db, lead, scopes=["admin"])
    _demote(db, lead)
    admin = make_user(db, role=ROLE_ADMIN)
    admin_service.set_role(db, acting=admin, user_id=lead.id, role=ROLE_LEAD)
    db.commit()
    answer = TestClient(app).patch(f"/api/v1/projects/{project.id}", json={"label_budget": 9},
                                   headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
