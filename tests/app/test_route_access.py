"""Every route of the app, called by every kind of caller, answers as its declared access rule says.

The routes come from ``app.routes`` of a real ``create_app()`` at collection time, so routes that
other modules add later are covered without touching this file. Each route must declare exactly
one access rule through its dependencies (``OptionalUser``, ``CurrentUser``/``LeadUser``/
``AdminUser``, ``ProjectReader``/``ProjectAnnotator``/``ProjectLead``/``ProjectAdmin`` from
``app.deps``); a route without one fails here.

Callers: anonymous, an annotator of the project, the lead of *another* project, the project's
lead, and an admin (member of nothing). Denials are recognised by the ``X-Tapestry-Error`` code
(401 → sign in, 403 → forbidden, 404 → project hidden); "allowed" means no denial and no 5xx.
Every (route, caller) pair runs on fresh rows, so destructive routes cannot disturb each other.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, ROLE_LEAD, Label
from app.deps import AccessRule, Level
from app.errors import ACCESS_DENIAL_CODES, ERROR_HEADER
from tests.factories import add_member, login_client, make_items, make_project, make_user

# Framework routes that are deliberately public and carry no dependency to declare it.
FRAMEWORK_ROUTES = {"/api/openapi.json", "/api/docs", "/static"}
CALLERS = ("anonymous", "annotator", "other_lead", "lead", "admin")
CALLER_GLOBAL_LEVEL = {
    "annotator": Level.ANNOTATE,
    "other_lead": Level.LEAD,
    "lead": Level.LEAD,
    "admin": Level.ADMIN,
}
CALLER_PROJECT_LEVEL = {"annotator": Level.ANNOTATE, "lead": Level.LEAD, "admin": Level.ADMIN}
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def route_contexts(app: FastAPI) -> list[Any]:
    from fastapi.routing import iter_route_contexts

    return list(iter_route_contexts(app.routes))


def access_rules(context: Any) -> set[AccessRule]:
    dependant = getattr(context, "dependant", None)
    rules: set[AccessRule] = set()
    stack = [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        rule = getattr(current.call, "access_rule", None)
        if isinstance(rule, AccessRule):
            rules.add(rule)
        stack.extend(current.dependencies)
    return rules


def _collect_routes() -> dict[tuple[str, str], set[AccessRule]]:
    """(method, path) -> the access rules its dependencies declare, from a real app."""
    from app.main import create_app

    data_dir = tempfile.mkdtemp(prefix="tapestry-routes-")
    app = create_app(Settings(data_dir=data_dir, secret_key=secrets.token_urlsafe(48)))
    found: dict[tuple[str, str], set[AccessRule]] = {}
    for context in route_contexts(app):
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                found[(method, context.path)] = access_rules(context)
    return found


ROUTE_RULES = _collect_routes()
ROUTES = sorted(ROUTE_RULES)


@dataclass
class World:
    project_id: int
    values: dict[str, Any]
    clients: dict[str, TestClient]


def build_world(app: FastAPI, db: Session) -> World:
    lead = make_user(db, role=ROLE_LEAD)
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    other_lead = make_user(db, role=ROLE_LEAD)
    admin = make_user(db, role=ROLE_ADMIN)
    spare = make_user(db, role=ROLE_ANNOTATOR)
    project = make_project(db, lead=lead, annotators=[annotator, spare])
    make_project(db, lead=other_lead)
    item = make_items(db, project, [f"item {secrets.token_hex(4)}"])[0]
    label = db.query(Label).filter_by(project_id=project.id).first()
    anonymous = TestClient(app)
    # A session with a CSRF token, so that CSRF is not what refuses the anonymous caller.
    anonymous.headers["X-CSRF-Token"] = anonymous_csrf(anonymous)
    clients: dict[str, TestClient] = {
        "anonymous": anonymous,
        "annotator": login_client(app, user=annotator),
        "other_lead": login_client(app, user=other_lead),
        "lead": login_client(app, user=lead),
        "admin": login_client(app, user=admin),
    }
    values = {
        "project_id": project.id,
        "item_id": item.id,
        "label_id": label.id if label else 1,
        "user_id": spare.id,
    }
    add_member(db, make_project(db, lead=lead), spare)  # spare is a member elsewhere too
    return World(project_id=project.id, values=values, clients=clients)


def anonymous_csrf(client: TestClient) -> str:
    """The CSRF token the login form hands an anonymous visitor."""
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the login page must carry a CSRF token"
    return match.group(1)


def fill_path(path: str, values: dict[str, Any]) -> str:
    return _PARAM.sub(lambda m: str(values.get(m.group(1), 1)), path)


def expected_status(rule: AccessRule, caller: str) -> int | None:
    """The denial status for this caller, or None when the caller is allowed."""
    if rule.scope == "public":
        return None
    if caller == "anonymous":
        return 401
    assert rule.level is not None
    if rule.scope == "user":
        return None if CALLER_GLOBAL_LEVEL[caller] >= rule.level else 403
    if caller not in CALLER_PROJECT_LEVEL:
        return 404  # the lead of another project must not learn this project exists
    return None if CALLER_PROJECT_LEVEL[caller] >= rule.level else 403


DENIAL_CODE = {401: "authentication_required", 403: "forbidden", 404: "project_not_found"}


def test_routes_were_found() -> None:
    paths = {path for _, path in ROUTES}
    assert {"/login", "/projects", "/projects/{project_id}", "/api/v1/projects"} <= paths


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_enforces_its_declared_access(
    app: FastAPI, db: Session, method: str, path: str
) -> None:
    if path in FRAMEWORK_ROUTES:
        world = build_world(app, db)
        response = world.clients["anonymous"].request(method, path)
        assert response.status_code < 400
        return
    rules = ROUTE_RULES[(method, path)]
    assert len(rules) == 1, (
        f"{method} {path} must declare exactly one access rule through app.deps "
        f"(found {rules or 'none'})"
    )
    rule = next(iter(rules))
    for caller in CALLERS:
        world = build_world(app, db)
        url = fill_path(path, world.values)
        response = world.clients[caller].request(method, url, follow_redirects=False)
        code = response.headers.get(ERROR_HEADER)
        denial = expected_status(rule, caller)
        where = f"{method} {path} as {caller} ({rule}): {response.status_code} {code}"
        if denial is None:
            assert code not in ACCESS_DENIAL_CODES, f"wrongly denied: {where}"
            assert response.status_code < 500, f"server error: {where}"
        else:
            assert code == DENIAL_CODE[denial], f"expected {denial}: {where}"
            if path.startswith("/api/") or denial != 401:
                assert response.status_code == denial, where
            else:
                assert response.status_code == 303  # web pages send people to the login form
