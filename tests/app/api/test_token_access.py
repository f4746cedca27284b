"""Every ``/api/v1`` route, called with a bad token, denies access and hands out no data.

Routes come from ``app.routes`` (so routes added later are covered). Callers, all with tokens:

* ``other_project`` — a valid token of the same lead, bound to another project;
* ``expired`` and ``revoked`` — the lead's tokens, no longer valid;
* ``read_only`` — the lead's token bound to this project with only the ``read`` scope.

Expected: 401 for expired/revoked; 404 ``project_not_found`` for another project's token on a
project route (no existence leak) and 403 on routes needing more than read; 403 for the read-only
token wherever the route needs annotate or more. A denial body is the error shape and nothing
else. The one route a bound token may use outside its project, the project list, must not
mention this project.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_LEAD, TrainingRun
from app.deps import AccessRule, Level
from app.domain.users import revoke_token
from app.errors import ERROR_HEADER
from tests.app.api.support import bearer, fake_version
from tests.factories import make_items, make_project, make_token, make_user

API = "/api/v1/"
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _api_routes() -> list[tuple[str, str]]:
    import secrets
    import tempfile

    from app.main import create_app

    app = create_app(Settings(data_dir=tempfile.mkdtemp(prefix="tapestry-api-routes-"),
                              secret_key=secrets.token_urlsafe(48)))
    return sorted(
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        if context.path.startswith(API)
        for method in context.methods or ()
        if method != "HEAD"
    )


ROUTES = _api_routes()


def _rule(app: FastAPI, method: str, path: str) -> AccessRule:
    context = next(c for c in iter_route_contexts(app.routes)
                   if c.path == path and method in (c.methods or ()))
    rules: set[AccessRule] = set()
    stack = [context.dependant]
    while stack:
        current = stack.pop()
        rule = getattr(current.call, "access_rule", None)
        if isinstance(rule, AccessRule):
            rules.add(rule)
        stack.extend(current.dependencies)
    assert len(rules) == 1, f"{method} {path} declares {rules or 'no'} access rule"
    return next(iter(rules))


def _world(app: FastAPI, db: Session, settings: Settings) -> tuple[dict[str, str], dict[str, Any],
                                                                   str]:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, name="Secret project alpha")
    other = make_project(db, lead=lead, name="Other project")
    item = make_items(db, project, ["a private text"])[0]
    fake_version(db, settings, project)
    run = TrainingRun(project_id=project.id, kind="retrain")
    db.add(run)
    db.flush()
    revoked = make_token(db, lead, scopes=("read", "annotate", "admin"), project=project)
    expired = make_token(db, lead, scopes=("read", "annotate", "admin"), project=project,
                         expires_at=datetime.now(UTC) + timedelta(seconds=1))
    tokens = {
        "other_project": make_token(db, lead, scopes=("read", "annotate", "admin"),
                                    project=other),
        "expired": expired,
        "revoked": revoked,
        "read_only": make_token(db, lead, scopes=("read",), project=project),
    }
    from app.db.models import ApiToken
    from app.security.tokens import hash_token

    token_row = db.query(ApiToken).filter_by(token_hash=hash_token(revoked)).one()
    revoke_token(db, token_row.id)
    expired_row = db.query(ApiToken).filter_by(token_hash=hash_token(expired)).one()
    expired_row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    db.commit()
    values = {"project_id": project.id, "item_id": item.id, "version": 1, "run_id": run.id}
    return tokens, values, project.name


def _expected(rule: AccessRule, who: str) -> tuple[int, str] | None:
    if who in ("expired", "revoked"):
        return 401, "authentication_required"
    assert rule.level is not None
    if who == "read_only":
        return (403, "forbidden") if rule.level > Level.READ else None
    if rule.scope == "project":
        return 404, "project_not_found"
    return (403, "forbidden") if rule.level > Level.READ else None


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_bad_tokens_get_no_data(
    app: FastAPI, db: Session, settings: Settings, method: str, path: str
) -> None:
    rule = _rule(app, method, path)
    assert rule.scope != "public", f"{method} {path} is public; the REST API has no public routes"
    tokens, values, secret_name = _world(app, db, settings)
    url = _PARAM.sub(lambda m: str(values.get(m.group(1), 1)), path)
    client = TestClient(app)
    for who, token in tokens.items():
        response = client.request(method, url, headers=bearer(token), json={})
        expected = _expected(rule, who)
        where = f"{method} {path} as {who}: {response.status_code} {response.text[:200]}"
        if expected is None:
            assert response.status_code < 500, where
            assert secret_name not in response.text or who == "read_only", where
            continue
        status, code = expected
        assert (response.status_code, response.headers.get(ERROR_HEADER)) == (status, code), where
        assert set(response.json()) == {"error"}, where
        assert secret_name not in response.text and "a private text" not in response.text, where


def test_the_walk_covers_the_api() -> None:
    paths = {path for _, path in ROUTES}
    assert {
        "/api/v1/projects/{project_id}/adapter",
        "/api/v1/projects/{project_id}/predict",
        "/api/v1/projects/{project_id}/annotations",
        "/api/v1/projects/{project_id}/queue/lease",
        "/api/v1/projects/{project_id}/runs/{run_id}",
        "/api/v1/projects/{project_id}/model-versions/{version}/promote",
    } <= paths
