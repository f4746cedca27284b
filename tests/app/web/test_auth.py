"""Sign-in, sign-out and the session cookie."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD
from app.domain.users import set_password
from app.security.sessions import SESSION_COOKIE
from tests.factories import TEST_PASSWORD, login_client, make_user


def _csrf_from_login_page(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def test_login_sets_httponly_lax_cookie_and_opens_projects(client: TestClient, db: Session) -> None:
    user = make_user(db, role=ROLE_LEAD)
    token = _csrf_from_login_page(client)
    response = client.post(
        "/login",
        data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/projects"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(SESSION_COOKIE)
    assert "httponly" in cookie and "samesite=lax" in cookie
    page = client.get("/projects")
    assert page.status_code == 200
    assert user.email in page.text


def test_wrong_password_is_refused_with_the_same_message_as_unknown_email(
    client: TestClient, db: Session
) -> None:
    user = make_user(db)
    token = _csrf_from_login_page(client)
    wrong = client.post("/login", data={"email": user.email, "password": "nope-nope-nope",
                                        "csrf_token": token})
    unknown = client.post("/login", data={"email": "ghost@example.org", "password": "x" * 12,
                                          "csrf_token": token})
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong e-mail or password." in wrong.text and "Wrong e-mail or password." in unknown.text
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_login_without_csrf_token_is_refused(client: TestClient, db: Session) -> None:
    user = make_user(db)
    client.get("/login")
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 403
    assert response.headers["X-Tapestry-Error"] == "csrf_failed"


def test_inactive_user_cannot_sign_in(client: TestClient, db: Session) -> None:
    user = make_user(db, is_active=False)
    token = _csrf_from_login_page(client)
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 401


def test_logout_ends_the_session(app: FastAPI, db: Session) -> None:
    client = login_client(app, db)
    assert client.get("/projects").status_code == 200
    response = client.post("/logout", follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_password_change_ends_existing_sessions(app: FastAPI, db: Session) -> None:
    client = login_client(app, db)
    assert client.get("/projects").status_code == 200
    set_password(db, client.user, "a brand new password")
    response = client.get("/projects", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_tampered_cookie_is_ignored(app: FastAPI, db: Session) -> None:
    client = login_client(app, db)
    value = client.cookies[SESSION_COOKIE]
    client.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_next_parameter_only_allows_local_paths(client: TestClient, db: Session) -> None:
    user = make_user(db)
    token = _csrf_from_login_page(client)
    response = client.post(
        "/login",
        data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token,
              "next": "//evil.example/phish"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/projects"
