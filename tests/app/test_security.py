"""CSRF, API tokens and cross-project isolation, end to end through the app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, ROLE_LEAD, ApiToken
from app.domain.users import revoke_token
from app.security.tokens import hash_token
from tests.factories import login_client, make_items, make_project, make_token, make_user

CSV = b"text\nhello there\n"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- CSRF


def test_state_changing_form_without_csrf_token_is_refused(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    del client.headers["X-CSRF-Token"]
    form = {"name": "P", "labels": "a\nb"}
    refused = client.post("/projects", data=form, follow_redirects=False)
    assert refused.status_code == 403
    assert refused.headers["X-Tapestry-Error"] == "csrf_failed"
    wrong = client.post("/projects", data=form | {"csrf_token": "forged"}, follow_redirects=False)
    assert wrong.status_code == 403
    ok = client.post("/projects", data=form | {"csrf_token": client.csrf_token},
                     follow_redirects=False)
    assert ok.status_code == 303


def test_htmx_request_without_token_gets_a_toast(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    del client.headers["X-CSRF-Token"]
    response = client.post("/logout", headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert '"toast"' in response.headers["HX-Trigger"]
    assert client.get("/projects").status_code == 200  # still signed in


def test_json_api_with_session_cookie_needs_the_csrf_header(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    del client.headers["X-CSRF-Token"]
    body = {"name": "P", "labels": ["a", "b"]}
    assert client.post("/api/v1/projects", json=body).status_code == 403
    response = client.post("/api/v1/projects", json=body,
                           headers={"X-CSRF-Token": client.csrf_token})
    assert response.status_code == 201


def test_bearer_requests_are_exempt_from_csrf_and_ignore_cookies(
    app: FastAPI, db: Session
) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    token = make_token(db, lead, scopes=["admin"])
    client = TestClient(app)
    response = client.post("/api/v1/projects", json={"name": "Via token", "labels": ["a", "b"]},
                           headers=bearer(token))
    assert response.status_code == 201


# --------------------------------------------------------------------------- tokens


def test_token_is_stored_only_as_a_hash_in_the_documented_format(db: Session) -> None:
    user = make_user(db)
    token = make_token(db, user)
    assert token.startswith("tap_") and len(token.split("_", 2)[1]) == 8
    stored = db.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    assert stored is not None
    assert stored.token_hash == hash_token(token) and token not in stored.token_hash
    assert stored.prefix == token.split("_")[1]


def test_token_reads_its_project_and_updates_last_used(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    annotator = make_user(db)
    from tests.factories import add_member

    add_member(db, project, annotator)
    token = make_token(db, annotator, scopes=["read"])
    client = TestClient(app)
    response = client.get(f"/api/v1/projects/{project.id}", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["name"] == project.name
    stored = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    assert stored is not None and stored.last_used_at is None  # the read itself wrote nothing
    from app.domain.users import flush_token_touches

    assert flush_token_touches(db) >= 1  # what the web process's maintenance pass does
    db.refresh(stored)
    assert stored.last_used_at is not None


def test_token_bound_to_one_project_cannot_see_another(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    first, second = make_project(db, lead=lead), make_project(db, lead=lead)
    token = make_token(db, lead, scopes=["admin"], project=first)
    client = TestClient(app)
    assert client.get(f"/api/v1/projects/{first.id}", headers=bearer(token)).status_code == 200
    hidden = client.get(f"/api/v1/projects/{second.id}", headers=bearer(token))
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "project_not_found"
    listed = client.get("/api/v1/projects", headers=bearer(token)).json()
    assert [p["id"] for p in listed] == [first.id]
    assert client.post("/api/v1/projects", json={"name": "x", "labels": ["a", "b"]},
                       headers=bearer(token)).status_code == 403


def test_read_scope_cannot_import_but_admin_scope_can(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    client = TestClient(app)
    url = f"/api/v1/projects/{project.id}/items"
    files = {"file": ("d.csv", CSV, "text/csv")}
    read = make_token(db, lead, scopes=["read"])
    refused = client.post(url, files=files, headers=bearer(read))
    assert refused.status_code == 403
    writer = make_token(db, lead, scopes=["admin"])
    assert client.post(url, files=files, headers=bearer(writer)).status_code == 201


def test_token_never_exceeds_its_users_role(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    from tests.factories import add_member

    add_member(db, project, annotator)
    token = make_token(db, annotator, scopes=["admin"])
    response = TestClient(app).post(f"/api/v1/projects/{project.id}/items",
                                    files={"file": ("d.csv", CSV, "text/csv")},
                                    headers=bearer(token))
    assert response.status_code == 403


def test_expired_revoked_and_malformed_tokens_are_401(app: FastAPI, db: Session) -> None:
    user = make_user(db, role=ROLE_ADMIN)
    client = TestClient(app)
    soon = make_token(db, user, expires_at=datetime.now(UTC) + timedelta(seconds=1))
    stored = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(soon)))
    assert stored is not None
    stored.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.flush()
    revoked = make_token(db, user)
    revoked_row = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(revoked)))
    assert revoked_row is not None
    revoke_token(db, revoked_row.id)
    for value in (soon, revoked, "tap_nothex!_abc", "tap_00000000_" + "x" * 43):
        response = client.get("/api/v1/projects", headers=bearer(value))
        assert response.status_code == 401, value
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "authentication_required"


def test_inactive_users_tokens_stop_working(app: FastAPI, db: Session) -> None:
    user = make_user(db)
    token = make_token(db, user)
    user.is_active = False
    db.flush()
    assert TestClient(app).get("/api/v1/projects", headers=bearer(token)).status_code == 401


# --------------------------------------------------------------------------- isolation


def test_users_see_only_their_projects(app: FastAPI, db: Session) -> None:
    mine = make_project(db, name="Mine")
    theirs = make_project(db, name="Theirs")
    client = login_client(app, db, ROLE_ANNOTATOR, project=mine)
    page = client.get("/projects")
    assert "Mine" in page.text and "Theirs" not in page.text
    assert [p["name"] for p in client.get("/api/v1/projects").json()] == ["Mine"]
    for url in (f"/projects/{theirs.id}", f"/api/v1/projects/{theirs.id}",
                f"/api/v1/projects/{theirs.id}/items"):
        response = client.get(url)
        assert response.status_code == 404, url
    # a project that does not exist answers exactly like one that is hidden
    missing = client.get("/api/v1/projects/999999")
    hidden = client.get(f"/api/v1/projects/{theirs.id}")
    assert missing.json()["error"]["code"] == hidden.json()["error"]["code"]
    assert missing.json()["error"]["message"] == hidden.json()["error"]["message"]


def test_admin_sees_every_project(app: FastAPI, db: Session) -> None:
    first, second = make_project(db), make_project(db)
    make_items(db, second, ["x"])
    client = login_client(app, db, ROLE_ADMIN)
    ids = {p["id"] for p in client.get("/api/v1/projects").json()}
    assert {first.id, second.id} <= ids
    assert client.get(f"/api/v1/projects/{second.id}/items").json()["items"][0]["text"] == "x"


def test_annotator_member_cannot_change_settings(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    client = login_client(app, db, ROLE_ANNOTATOR, project=project)
    assert client.get(f"/projects/{project.id}").status_code == 200
    response = client.get(f"/projects/{project.id}/settings")
    assert response.status_code == 403
    assert response.headers["X-Tapestry-Error"] == "forbidden"
