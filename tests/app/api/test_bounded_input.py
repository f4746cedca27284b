"""Bad input is a 422 with the error envelope, never a 5xx: integers beyond what the database
stores (every parameter, cursor and form field is bounded) and JSON nested 100,000 levels deep
(JSONL, Label Studio and Prodigy imports). The tests using ``db`` also run on Postgres (-m db)."""

from __future__ import annotations

import base64
import json
import types
import typing
from typing import Any

import annotated_types
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.db.models import ROLE_ADMIN
from app.deps import MAX_DB_INT
from app.domain.json_input import MAX_JSON_DEPTH
from tests.app.api.support import lead_with_project
from tests.factories import login_client, make_items

HUGE = (2**63, 2**31, 10**30)
DEEP = 100_000


def _assert_422(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, (response.status_code, response.text[:300])
    body: dict[str, Any] = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    return body


def _cursor(after: int) -> str:
    raw = json.dumps({"after": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------- integers


@pytest.mark.parametrize("after_id", ["9223372036854775808", "2147483648", str(10**30)])
def test_items_after_id_beyond_the_database_is_422(
    app: FastAPI, db: Session, after_id: str
) -> None:
    lead, project = lead_with_project(app, db)
    make_items(db, project, ["one item"])
    db.commit()
    answer = lead.get(f"/api/v1/projects/{project.id}/items", params={"after_id": after_id})
    _assert_422(answer)
    assert lead.get(f"/api/v1/projects/{project.id}/items",
                    params={"after_id": str(MAX_DB_INT)}).json()["items"] == []


@pytest.mark.parametrize("after", HUGE)
def test_annotation_cursor_with_a_huge_integer_is_422(
    app: FastAPI, db: Session, after: int
) -> None:
    lead, project = lead_with_project(app, db)
    answer = lead.get(f"/api/v1/projects/{project.id}/annotations",
                      params={"cursor": _cursor(after)})
    body = _assert_422(answer)
    assert body["error"]["details"]["errors"][0]["loc"] == ["query", "cursor"]


def test_other_integer_parameters_beyond_the_database_are_422(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    item = make_items(db, project, ["one item"])[0]
    db.commit()
    huge = str(2**63)
    base = f"/api/v1/projects/{project.id}"
    _assert_422(lead.get(f"{base}/annotations", params={"item_id": huge}))
    _assert_422(lead.get(f"{base}/runs/{huge}"))
    _assert_422(lead.get(f"/api/v1/projects/{huge}"))
    _assert_422(lead.post("/api/v1/projects", json={
        "name": "p", "labels": ["a", "b"], "label_budget": 2**63}))
    _assert_422(lead.post(f"{base}/items", params={"seed": huge}, content=b"text\nx\n",
                          headers={"Content-Type": "text/csv"}))
    _assert_422(lead.post(f"{base}/runs", json={"kind": "tapt",
                                                "tapt_config": {"max_steps": 2**63}}))
    _assert_422(lead.post(f"{base}/annotations", json={"annotations": [
        {"item_id": 2**63, "label": "positive"}]}))
    browser = login_client(app, db, user=lead.user)
    web = f"/projects/{project.id}/annotate"
    for response in (
        browser.post(f"{web}/items/{huge}/label", data={"label_id": "1"}),
        browser.post(f"{web}/items/{item.id}/label", data={"label_id": huge}),
        browser.post(f"{web}/items/{item.id}/label", data={"label_id": "1", "duration_ms": huge}),
        browser.get(f"{web}/status", params={"v": huge}),
        browser.post(f"/projects/{project.id}/members/{huge}/remove"),
    ):
        assert response.status_code == 422, (response.request.url, response.status_code)
    budget_form = {"label_budget": huge, "batch_size": "10"}
    assert browser.post(f"/projects/{project.id}/settings/budget",
                        data=budget_form).status_code == 422


def test_admin_paths_with_huge_ids_are_422(app: FastAPI, db: Session) -> None:
    admin = login_client(app, db, ROLE_ADMIN)
    huge = str(2**63)
    for url in (f"/admin/users/{huge}", f"/projects/{huge}/runs"):
        assert admin.get(url).status_code == 422, url
    assert admin.post(f"/admin/tokens/{huge}/revoke").status_code == 422
    assert admin.post(f"/admin/users/{admin.user.id}/memberships",
                      data={"project_id": huge, "role": "lead"}).status_code == 422


def _unbounded(annotation: Any, metadata: list[Any], where: str) -> list[str]:
    """Places where an ``int`` is accepted without an upper bound within the database's."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        flat: list[Any] = []
        for item in extra:
            flat.extend(getattr(item, "metadata", [item]))
        return _unbounded(inner, flat, where)
    if annotation is int:
        highs = [m.le for m in metadata if isinstance(m, annotated_types.Le)]
        highs += [m.lt for m in metadata if isinstance(m, annotated_types.Lt)]
        return [] if highs and min(highs) <= MAX_DB_INT else [where]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found: list[str] = []
        for name, field in annotation.model_fields.items():
            found += _unbounded(field.annotation, list(field.metadata), f"{where}.{name}")
        return found
    # A union (``int | None``) carries the field's bounds; a container's items carry their own.
    union = origin in (typing.Union, types.UnionType)
    found = []
    for arg in typing.get_args(annotation):
        found += _unbounded(arg, metadata if union else [], where)
    return found


def test_every_integer_a_route_accepts_is_bounded(app: FastAPI) -> None:
    from fastapi.routing import iter_route_contexts

    assert _unbounded(int | None, [], "probe") == ["probe"]  # the walker does see a bare int
    problems: list[str] = []
    for context in iter_route_contexts(app.routes):
        stack = [getattr(context, "dependant", None)]
        while stack:
            dependant = stack.pop()
            if dependant is None:
                continue
            stack.extend(dependant.dependencies)
            params = (dependant.path_params + dependant.query_params + dependant.header_params
                      + dependant.cookie_params + dependant.body_params)
            for param in params:
                info = param.field_info
                where = f"{sorted(context.methods or ())} {context.path} {param.name}"
                problems += _unbounded(info.annotation, list(info.metadata), where)
    assert problems == []


# --------------------------------------------------------------------------- nesting


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_jsonl_import_nested_100000_levels_is_a_line_numbered_422(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    lines = [json.dumps({"text": "fine"}), '{"text": "deep", "x": ' + _deep(DEEP) + "}"]
    answer = lead.post(f"/api/v1/projects/{project.id}/items",
                       content=("\n".join(lines) + "\n").encode(),
                       headers={"Content-Type": "application/x-ndjson"})
    body = _assert_422(answer)
    assert body["error"]["code"] == "import_rejected"
    assert body["error"]["details"]["errors"][0]["line"] == 2
    assert f"nested more than {MAX_JSON_DEPTH} levels deep" in body["error"]["message"]


def test_label_studio_import_nested_100000_levels_is_a_line_numbered_422(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    document = '[\n{"data": {"text": "ok"}},\n{"data": {"text": "x"}, "meta": ' + _deep(DEEP)
    document += "}\n]"
    answer = lead.post(f"/api/v1/projects/{project.id}/imports/label-studio",
                       files={"file": ("export.json", document.encode(), "application/json")})
    body = _assert_422(answer)
    assert body["error"]["details"]["errors"][0]["line"] == 3
    assert "nested more than" in body["error"]["message"]


def test_prodigy_import_nested_100000_levels_is_a_line_numbered_422(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    content = '{"text": "a", "answer": "accept", "label": "positive"}\n' + _deep(DEEP) + "\n"
    answer = lead.post(f"/api/v1/projects/{project.id}/imports/prodigy",
                       files={"file": ("db-out.jsonl", content.encode(), "application/json")})
    body = _assert_422(answer)
    assert body["error"]["details"]["errors"][0]["line"] == 2
    assert "nested more than" in body["error"]["message"]


def test_jsonl_integer_of_5000_digits_is_a_line_numbered_422(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    content = '{"text": "x", "n": ' + "9" * 5000 + "}\n"
    answer = lead.post(f"/api/v1/projects/{project.id}/items", content=content.encode(),
                       headers={"Content-Type": "application/x-ndjson"})
    assert _assert_422(answer)["error"]["details"]["errors"][0]["line"] == 1


def test_a_body_that_is_not_json_is_a_422_saying_where(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    answer = lead.post("/api/v1/projects", content=b'{"name": "x",',
                       headers={"Content-Type": "application/json"})
    body = _assert_422(answer)
    message = body["error"]["message"]
    assert message.startswith("The request body is not valid JSON (") and "character" in message
    assert "JSON decode error" not in message
    answer = lead.request("PATCH", f"/api/v1/projects/{project.id}", content=b"lots",
                          headers={"Content-Type": "application/json"})
    assert _assert_422(answer)["error"]["message"] == (
        "The request body is not valid JSON (Expecting value at character 0).")
