"""Admin pages over HTTP: users and roles, memberships, tokens, the cross-project overview.

A project's runs and models are its leads' pages: ``test_lead_workspace.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ADMIN,
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    ApiToken,
    Membership,
    User,
)
from app.jobs import Job, recording_jobs
from app.security.passwords import verify_password
from tests.factories import login_client, make_project, make_user

HTMX = {"HX-Request": "true"}


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


def test_only_admins_reach_admin_pages(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    for role in (ROLE_LEAD, ROLE_ANNOTATOR):
        client = login_client(app, db, role=role, project=project)
        for path in ("/admin/users", "/admin/tokens", "/admin/projects"):
            assert client.get(path).status_code == 403, (role, path)
        assert client.post("/admin/users", data={"email": "x@example.org"}).status_code == 403
    assert db.scalar(select(User).where(User.email == "x@example.org")) is None


def test_admin_creates_a_user_whose_password_is_shown_once(app: FastAPI, db: Session) -> None:
    admin = login_client(app, db, role=ROLE_ADMIN)
    response = admin.post("/admin/users", data={"email": "New.Person@Example.org",
                                                "name": "New Person", "role": "lead"})
    assert response.status_code == 201
    password = re.search(r"<code>([^<]+)</code>", response.text)
    assert password is not None
    user = db.scalars(select(User).where(User.email == "new.person@example.org")).one()
    assert user.role == "lead" and verify_password(user.password_hash, password.group(1))
    assert password.group(1) not in admin.get("/admin/users").text
    duplicate = admin.post("/admin/users", data={"email": "new.person@example.org",
                                                 "role": "lead"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.text


def test_roles_memberships_and_the_last_admin_guard(app: FastAPI, db: Session) -> None:
    admin = login_client(app, db, role=ROLE_ADMIN)
    person = make_user(db, role=ROLE_ANNOTATOR)
    project = make_project(db)
    assert admin.post(f"/admin/users/{person.id}/role", data={"role": "lead"},
                      follow_redirects=False).status_code == 303
    assert person.role == "lead"
    admin.post(f"/admin/users/{person.id}/memberships",
               data={"project_id": str(project.id), "role": "annotator"})
    membership = db.scalars(select(Membership).where(Membership.user_id == person.id)).one()
    assert membership.role == "annotator"
    page = admin.get(f"/admin/users/{person.id}")
    assert project.name in page.text
    admin.post(f"/admin/users/{person.id}/memberships/{project.id}/remove")
    assert db.scalars(select(Membership).where(Membership.user_id == person.id)).first() is None
    refused = admin.post(f"/admin/users/{admin.user.id}/role", data={"role": "lead"})
    assert refused.status_code == 409 and admin.user.role == "admin"
    assert admin.post(f"/admin/users/{admin.user.id}/active",
                      data={"active": "false"}).status_code == 409


def test_token_is_shown_once_works_and_revocation_locks_it_out(
    app: FastAPI, db: Session
) -> None:
    admin = login_client(app, db, role=ROLE_ADMIN)
    lead = make_user(db, role=ROLE_LEAD)
    response = admin.post("/admin/tokens", data={"name": "nightly export",
                                                 "user_id": str(lead.id), "scopes": ["read"]})
    assert response.status_code == 201
    match = re.search(r'<code id="token-secret">(tap_[^<]+)</code>', response.text)
    assert match is not None
    secret = match.group(1)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert admin.get("/api/v1/projects", headers=bearer).status_code == 200
    listing = admin.get("/admin/tokens").text
    assert secret not in listing and "nightly export" in listing
    token = db.scalars(select(ApiToken).where(ApiToken.name == "nightly export")).one()
    assert admin.post(f"/admin/tokens/{token.id}/revoke",
                      follow_redirects=False).status_code == 303
    assert admin.get("/api/v1/projects", headers=bearer).status_code == 401
    no_scope = admin.post("/admin/tokens", data={"name": "x", "user_id": str(lead.id)})
    assert no_scope.status_code == 422 and "scope" in no_scope.text


def test_cross_project_overview_links_to_each_projects_pages(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    admin = login_client(app, db, role=ROLE_ADMIN)
    page = admin.get("/admin/projects")
    assert page.status_code == 200
    assert f'href="/projects/{project.id}/runs"' in page.text
    assert f'href="/projects/{project.id}/models"' in page.text
    assert "/admin/projects/" not in page.text
