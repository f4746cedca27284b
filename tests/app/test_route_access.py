"""Every route of the app, called by every kind of caller, answers as its declared access rule says.

The routes come from ``app.routes`` of a real ``create_app()`` at collection time, so routes that
other modules add later are covered without touching this file. Each route must declare exactly
one access rule through its dependencies (``OptionalUser``, ``CurrentUser``/``LeadUser``/
``AdminUser``, ``ProjectReader``/``ProjectAnnotator``/``ProjectLead``/``ProjectAdmin`` from
``app.deps``); a route without one fails here.

Callers: anonymous, an annotator of the project, an annotator and the lead of *another* project,
the project's lead, and an admin (member of nothing). Denials are recognised by the
``X-Tapestry-Error`` code (401 → sign in, 403 → forbidden, 404 → project hidden); "allowed" means
no denial and no 5xx. Every (route, caller) pair runs on fresh rows, so destructive routes cannot
disturb each other.

Requests run like production units of work: after each one, what the request loaded is detached
from the session (as ``Session.close()`` does), so a page or an error page that reads ORM state
after the transaction ended fails here as it would in a server. A second walk puts *another
project's* objects (items, annotations, runs, model versions, members) under this project's path
and expects 404 from every route, web and API.
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
from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, ROLE_LEAD, Label, User
from app.deps import AccessRule, Level
from app.errors import ACCESS_DENIAL_CODES, ERROR_HEADER
from tests.factories import add_member, login_client, make_items, make_project, make_user

# Framework routes that are deliberately public and carry no dependency to declare it.
FRAMEWORK_ROUTES = {"/api/openapi.json", "/api/docs", "/api/docs/static", "/static"}
CALLERS = ("anonymous", "annotator", "other_annotator", "other_lead", "lead", "admin")
CALLER_GLOBAL_LEVEL = {
    "annotator": Level.ANNOTATE,
    "other_annotator": Level.ANNOTATE,
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
    other_annotator = make_user(db, role=ROLE_ANNOTATOR)
    admin = make_user(db, role=ROLE_ADMIN)
    spare = make_user(db, role=ROLE_ANNOTATOR)
    project = make_project(db, lead=lead, annotators=[annotator, spare])
    make_project(db, lead=other_lead, annotators=[other_annotator])
    item = make_items(db, project, [f"item {secrets.token_hex(4)}"])[0]
    label = db.query(Label).filter_by(project_id=project.id).first()
    anonymous = TestClient(app)
    # A session with a CSRF token, so that CSRF is not what refuses the anonymous caller.
    anonymous.headers["X-CSRF-Token"] = anonymous_csrf(anonymous)
    clients: dict[str, TestClient] = {
        "anonymous": anonymous,
        "annotator": login_client(app, user=annotator),
        "other_annotator": login_client(app, user=other_annotator),
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
    closing_app: FastAPI, db: Session, method: str, path: str
) -> None:
    app = closing_app
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


# --------------------------------------------------------------------------- cross-project objects

# Path parameters that name an object inside the project of ``{project_id}``.
PROJECT_OBJECT_PARAMS = {"item_id", "annotation_id", "run_id", "version_id", "version", "user_id"}
CROSS_ROUTES = [
    (method, path)
    for method, path in ROUTES
    if "{project_id}" in path and PROJECT_OBJECT_PARAMS & set(_PARAM.findall(path))
]


def other_projects_objects(db: Session, settings: Settings, lead: Any) -> dict[str, Any]:
    """A second project of the same lead, with one object of every kind; their ids."""
    from app.db.models import RUN_SUCCEEDED, Annotation, TrainingRun
    from tests.app.api.support import fake_version

    stranger = make_user(db, role=ROLE_ANNOTATOR)
    other = make_project(db, lead=lead, annotators=[stranger])
    item = make_items(db, other, [f"elsewhere {secrets.token_hex(4)}"])[0]
    label = db.query(Label).filter_by(project_id=other.id).first()
    assert label is not None
    annotation = Annotation(
        project_id=other.id, item_id=item.id, annotator_id=stranger.id, label_id=label.id
    )
    run = TrainingRun(project_id=other.id, kind="retrain", status=RUN_SUCCEEDED)
    db.add_all([annotation, run])
    db.flush()
    version = fake_version(db, settings, other)
    return {
        "item_id": item.id,
        "annotation_id": annotation.id,
        "label_id": label.id,
        "run_id": run.id,
        "version_id": version.id,
        "version": version.version,
        "user_id": stranger.id,
    }


def test_cross_routes_were_found() -> None:
    found = {path for _, path in CROSS_ROUTES}
    assert "/projects/{project_id}/annotate/annotations/{annotation_id}" in found
    assert "/projects/{project_id}/models/{version_id}/download" in found
    assert "/api/v1/projects/{project_id}/runs/{run_id}" in found


@pytest.mark.parametrize(
    ("method", "path"), CROSS_ROUTES, ids=[f"{m} {p}" for m, p in CROSS_ROUTES]
)
def test_another_projects_object_answers_404(
    closing_app: FastAPI, db: Session, settings: Settings, method: str, path: str
) -> None:
    """The caller may act on this project, but the object belongs to another one: 404, no 5xx.

    Both the project's lead (who also leads the other project: the object's project is visible to
    them, just not through this path) and an admin (who sees every project) try it.
    """
    (rule,) = ROUTE_RULES[(method, path)]
    assert rule.level is not None
    world = build_world(closing_app, db)
    from app.db.models import Membership

    membership = db.query(Membership).filter_by(project_id=world.project_id, role="lead").one()
    lead = db.get(User, membership.user_id)
    values = world.values | other_projects_objects(db, settings, lead)
    db.commit()
    url = fill_path(path, values)
    # A valid form for this project (its own label), so that only the object can be wrong.
    form = {"label_id": str(world.values["label_id"])} if method == "POST" else None
    data = form if not path.startswith("/api/") else None
    callers = ["admin"] + (["lead"] if rule.level <= Level.LEAD else [])
    for caller in callers:
        response = world.clients[caller].request(method, url, data=data, follow_redirects=False)
        where = f"{method} {url} as {caller}: {response.status_code} {response.text[:200]}"
        assert response.status_code == 404, where
