"""Factories for tests: users, projects, items, tokens and signed-in clients.

Fast on purpose: users share one precomputed argon2 hash of :data:`TEST_PASSWORD` (hashing costs
tens of milliseconds), and :func:`login_client` signs the session cookie directly instead of posting
the login form (one test does the real login).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ADMIN,
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    SPLIT_POOL,
    Item,
    Membership,
    Project,
    User,
)
from app.domain.imports import content_hash
from app.domain.projects import ProjectSettings, create_project
from app.domain.users import create_token
from app.security.csrf import CSRF_HEADER
from app.security.passwords import hash_password
from app.security.sessions import SESSION_COOKIE, encode_session_cookie, session_data

TEST_PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@lru_cache(maxsize=1)
def test_password_hash() -> str:
    return hash_password(TEST_PASSWORD)


def make_user(
    db: Session,
    *,
    role: str = ROLE_ANNOTATOR,
    email: str | None = None,
    password: str | None = None,
    name: str = "",
    is_active: bool = True,
) -> User:
    n = next(_counter)
    user = User(
        email=email or f"{role}{n}-{secrets.token_hex(3)}@example.org",
        name=name or f"{role.capitalize()} {n}",
        password_hash=hash_password(password) if password else test_password_hash(),
        role=role,
        is_active=is_active,
    )
    db.add(user)
    db.flush()
    return user


def add_member(db: Session, project: Project, user: User, role: str = ROLE_ANNOTATOR) -> Membership:
    membership = Membership(project_id=project.id, user_id=user.id, role=role)
    db.add(membership)
    db.flush()
    return membership


def make_project(
    db: Session,
    *,
    lead: User | None = None,
    name: str | None = None,
    labels: Sequence[str] = ("positive", "negative"),
    annotators: Iterable[User] = (),
    task_type: str = "single_label",
) -> Project:
    """A project created through the domain service (so the lead is a member), plus annotators."""
    creator = lead or make_user(db, role=ROLE_LEAD)
    settings = ProjectSettings(name=name or f"Project {next(_counter)}", labels=tuple(labels),
                               task_type=task_type)
    project = create_project(db, creator=creator, settings=settings)
    for annotator in annotators:
        add_member(db, project, annotator, ROLE_ANNOTATOR)
    return project


def make_items(
    db: Session, project: Project, texts: Sequence[str], *, split: str = SPLIT_POOL
) -> list[Item]:
    items = [
        Item(
            project_id=project.id,
            text=text,
            content_hash=content_hash(text),
            split=split,
        )
        for text in texts
    ]
    db.add_all(items)
    db.flush()
    return items


def make_token(
    db: Session,
    user: User,
    *,
    scopes: Sequence[str] = ("read",),
    project: Project | None = None,
    expires_at: datetime | None = None,
) -> str:
    """A valid API token's plaintext (for ``Authorization: Bearer ...``)."""
    issued = create_token(
        db,
        user=user,
        name="test token",
        scopes=scopes,
        project_id=project.id if project else None,
        expires_at=expires_at,
    )
    return issued.plaintext


class UserClient(TestClient):
    """A TestClient signed in as :attr:`user`, sending the session's CSRF token on every request."""

    user: User
    csrf_token: str


def login_client(
    app: FastAPI,
    db: Session | None = None,
    role: str = ROLE_LEAD,
    *,
    user: User | None = None,
    project: Project | None = None,
    project_role: str | None = None,
) -> UserClient:
    """A client signed in as ``user`` (or a new user with global ``role``).

    With ``project``, the user also becomes a member (``project_role``, default: lead for leads,
    annotator otherwise; admins need no membership and get none unless ``project_role`` is given).
    """
    if user is None:
        if db is None:
            raise ValueError("login_client needs `db` to create a user")
        user = make_user(db, role=role)
    if project is not None and db is not None:
        member_role = project_role or (
            None if user.role == ROLE_ADMIN else ROLE_LEAD if user.role == ROLE_LEAD
            else ROLE_ANNOTATOR
        )
        if member_role is not None:
            add_member(db, project, user, member_role)
    secret = app.state.settings.resolved_secret_key()
    csrf = secrets.token_urlsafe(32)
    client = UserClient(app)
    cookie = encode_session_cookie(
        secret, session_data(user.id, user.password_hash, csrf, user.session_generation or 0)
    )
    client.cookies.set(SESSION_COOKIE, cookie)
    client.headers[CSRF_HEADER] = csrf
    client.user = user
    client.csrf_token = csrf
    return client


def anonymous_client(app: FastAPI) -> TestClient:
    """A client with no session (and no CSRF token): what a stranger's browser looks like."""
    return TestClient(app)
