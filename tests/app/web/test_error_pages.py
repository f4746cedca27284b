"""Error pages (403/404/409/413/422) render for every role, in the site's layout, never a 500.

Requests end like production ones (``closing_app``: what a request loaded is detached afterwards),
so a page that reads ORM state after the transaction ended fails here as it did in the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, ROLE_LEAD, User
from tests.factories import anonymous_client, login_client, make_items, make_project, make_user

ROLES = ("admin", "lead", "other_lead", "annotator", "other_annotator")


@dataclass
class Site:
    project_id: int
    clients: dict[str, TestClient]
    emails: dict[str, str]


def build_site(app: FastAPI, db: Session) -> Site:
    users = {
        "admin": make_user(db, role=ROLE_ADMIN),
        "lead": make_user(db, role=ROLE_LEAD),
        "other_lead": make_user(db, role=ROLE_LEAD),
        "annotator": make_user(db, role=ROLE_ANNOTATOR),
        "other_annotator": make_user(db, role=ROLE_ANNOTATOR),
    }
    project = make_project(db, lead=users["lead"], annotators=[users["annotator"]])
    make_project(db, lead=users["other_lead"], annotators=[users["other_annotator"]])
    make_items(db, project, ["one ticket", "another ticket"])
    db.commit()
    clients = {role: login_client(app, user=user) for role, user in users.items()}
    return Site(project.id, clients, {role: user.email for role, user in users.items()})


def assert_error_page(response: Any, status: int, email: str | None) -> None:
    assert response.status_code == status, response.text[:300]
    html = response.text
    assert '<header class="topbar">' in html and '<a class="brand" href="/">' in html
    assert re.search(rf"<h1>{status}</h1>", html), html[:500]
    assert 'role="alert"' in html
    if email is not None:  # the signed-in layout: who you are, and a way out
        assert email in html and "Sign out" in html


@pytest.mark.parametrize("role", ROLES)
def test_missing_project_is_a_404_page(closing_app: FastAPI, db: Session, role: str) -> None:
    site = build_site(closing_app, db)
    response = site.clients[role].get("/projects/999999")
    assert_error_page(response, 404, site.emails[role])


@pytest.mark.parametrize("role", ROLES)
def test_another_projects_pages_are_404_or_403_pages(
    closing_app: FastAPI, db: Session, role: str
) -> None:
    site = build_site(closing_app, db)
    client, pid = site.clients[role], site.project_id
    expected = {
        "admin": 200, "lead": 200, "annotator": 403, "other_lead": 404, "other_annotator": 404
    }[role]
    for page in (f"/projects/{pid}/settings", f"/projects/{pid}/dashboard"):
        response = client.get(page)
        if expected == 200:
            assert response.status_code == 200, (page, response.text[:300])
        else:
            assert_error_page(response, expected, site.emails[role])


@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_refuse_non_admins_with_a_403_page(
    closing_app: FastAPI, db: Session, role: str
) -> None:
    site = build_site(closing_app, db)
    response = site.clients[role].get("/admin")
    if role == "admin":
        assert response.status_code == 200
    else:
        assert_error_page(response, 403, site.emails[role])


@pytest.mark.parametrize("role", ["admin", "lead", "annotator"])
def test_a_malformed_query_is_a_422_page(closing_app: FastAPI, db: Session, role: str) -> None:
    site = build_site(closing_app, db)
    url = f"/projects/{site.project_id}/annotate/next?exclude=abc"
    response = site.clients[role].get(url)
    assert_error_page(response, 422, site.emails[role])
    assert "exclude" in response.text


def test_a_conflict_is_a_409_page(closing_app: FastAPI, db: Session) -> None:
    site = build_site(closing_app, db)
    admin = site.clients["admin"]
    me = db.query(User).filter_by(email=site.emails["admin"]).one()
    response = admin.post(f"/admin/users/{me.id}/role", data={"role": "annotator"})
    assert response.status_code == 409  # the user's page again, with the reason, in the layout
    assert '<header class="topbar">' in response.text and "Sign out" in response.text
    assert "own admin role" in response.text


def test_an_oversized_upload_is_a_413_page(closing_app: FastAPI, db: Session) -> None:
    site = build_site(closing_app, db)
    limit = closing_app.state.settings.max_upload_bytes
    response = site.clients["lead"].post(
        f"/projects/{site.project_id}/import",
        content=b"x",
        headers={"Content-Length": str(limit + 1), "Content-Type": "text/csv"},
    )
    assert_error_page(response, 413, None)


def test_anonymous_visitors_are_sent_to_sign_in_not_an_error(
    closing_app: FastAPI, db: Session
) -> None:
    site = build_site(closing_app, db)
    response = anonymous_client(closing_app).get(
        f"/projects/{site.project_id}/settings", follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    missing = anonymous_client(closing_app).get("/no/such/page")
    assert_error_page(missing, 404, None)
