"""Sign-in throttling (per account and per client address, 429 + Retry-After, no argon2 work
while throttled, the right password refused too) and sign-out that revokes copied cookies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_LEAD
from app.domain import users as user_service
from app.security.sessions import SESSION_COOKIE
from tests.factories import TEST_PASSWORD, login_client, make_user


@pytest.fixture()
def limits(settings: Settings) -> Settings:
    settings.login_failures_per_account = 3
    settings.login_failures_per_address = 5
    settings.login_window_seconds = 600
    return settings


@pytest.fixture()
def password_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every argon2 verification the sign-in performs (real ones still run)."""
    calls: list[str] = []
    verify, burn = user_service.verify_password, user_service.burn_verification_time

    def counted_verify(password_hash: str, password: str) -> bool:
        calls.append("verify")
        return verify(password_hash, password)

    def counted_burn(password: str) -> None:
        calls.append("burn")
        burn(password)

    monkeypatch.setattr(user_service, "verify_password", counted_verify)
    monkeypatch.setattr(user_service, "burn_verification_time", counted_burn)
    yield calls


def _browser(app: FastAPI, address: str) -> tuple[TestClient, str]:
    client = TestClient(app, client=(address, 40000))
    page = client.get("/login")
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return client, page.text[start : page.text.index('"', start)]


def _sign_in(client: TestClient, csrf: str, email: str, password: str) -> object:
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf},
                       follow_redirects=False)


def test_an_account_is_throttled_after_its_failures_even_with_the_right_password(
    app: FastAPI, db: Session, limits: Settings, password_checks: list[str]
) -> None:
    user = make_user(db, role=ROLE_LEAD)
    db.commit()
    client, csrf = _browser(app, "10.1.0.1")
    answers = [_sign_in(client, csrf, user.email, "wrong-password-123") for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]  # type: ignore[attr-defined]
    checks_before = len(password_checks)

    locked = _sign_in(client, csrf, user.email, TEST_PASSWORD)
    assert locked.status_code == 429  # type: ignore[attr-defined]
    assert 1 <= int(locked.headers["Retry-After"]) <= 600  # type: ignore[attr-defined]
    assert "Too many failed sign-ins" in locked.text  # type: ignore[attr-defined]
    # The same account from another address (and with other capitalisation) is locked too.
    elsewhere, other_csrf = _browser(app, "10.1.0.2")
    assert _sign_in(elsewhere, other_csrf, user.email.upper(),
                    TEST_PASSWORD).status_code == 429  # type: ignore[attr-defined]
    assert len(password_checks) == checks_before  # no argon2 work while throttled
    assert client.get("/projects", follow_redirects=False).status_code == 303  # not signed in


def test_an_address_is_throttled_across_accounts_known_or_not(
    app: FastAPI, db: Session, limits: Settings, password_checks: list[str]
) -> None:
    user = make_user(db, role=ROLE_LEAD)
    db.commit()
    client, csrf = _browser(app, "10.2.0.1")
    for n in range(5):
        assert _sign_in(client, csrf, f"nobody{n}@example.org",
                        "guess-123456").status_code == 401  # type: ignore[attr-defined]
    checks_before = len(password_checks)
    refused = _sign_in(client, csrf, user.email, TEST_PASSWORD)
    assert refused.status_code == 429 and refused.headers["Retry-After"]  # type: ignore[attr-defined]
    assert len(password_checks) == checks_before
    # Another address signs the same user in normally.
    fine, fine_csrf = _browser(app, "10.2.0.2")
    assert _sign_in(fine, fine_csrf, user.email, TEST_PASSWORD).status_code == 303  # type: ignore[attr-defined]


def test_a_successful_sign_in_clears_the_accounts_failures(
    app: FastAPI, db: Session, limits: Settings
) -> None:
    user = make_user(db, role=ROLE_LEAD)
    db.commit()
    client, csrf = _browser(app, "10.3.0.1")
    for _ in range(2):
        _sign_in(client, csrf, user.email, "wrong-password-123")
    assert _sign_in(client, csrf, user.email, TEST_PASSWORD).status_code == 303  # type: ignore[attr-defined]
    again, again_csrf = _browser(app, "10.3.0.2")
    for _ in range(2):
        assert _sign_in(again, again_csrf, user.email,
                        "wrong-password-123").status_code == 401  # type: ignore[attr-defined]


def test_sign_out_revokes_a_copied_session_cookie(app: FastAPI, db: Session) -> None:
    user = make_user(db, role=ROLE_LEAD)
    db.commit()
    client, csrf = _browser(app, "10.4.0.1")
    assert _sign_in(client, csrf, user.email, TEST_PASSWORD).status_code == 303  # type: ignore[attr-defined]
    copied = client.cookies.get(SESSION_COOKIE)
    assert copied
    thief = TestClient(app)
    thief.cookies.set(SESSION_COOKIE, copied)
    assert thief.get("/projects", follow_redirects=False).status_code == 200

    page = client.get("/projects").text
    marker = 'name="csrf_token" value="'
    token = page[page.index(marker) + len(marker):].split('"', 1)[0]
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303, out.text

    assert thief.get("/projects", follow_redirects=False).status_code == 303  # to the login page
    assert thief.get("/api/v1/projects").status_code == 401
    # Signing in again gives a new, working session.
    client, csrf = _browser(app, "10.4.0.1")
    assert _sign_in(client, csrf, user.email, TEST_PASSWORD).status_code == 303  # type: ignore[attr-defined]
    assert client.get("/projects", follow_redirects=False).status_code == 200


def test_a_factory_session_of_a_signed_out_user_stops_working(app: FastAPI, db: Session) -> None:
    browser = login_client(app, db, ROLE_LEAD)
    copy = TestClient(app)
    copy.cookies.set(SESSION_COOKIE, browser.cookies.get(SESSION_COOKIE) or "")
    assert browser.post("/logout", follow_redirects=False).status_code == 303
    assert copy.get("/api/v1/projects").status_code == 401
