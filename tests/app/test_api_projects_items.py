"""The API endpoints of the foundation: projects (list/read/create) and items (import/list)."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD
from app.domain.projects import MAX_DESCRIPTION_CHARS, MAX_GUIDELINES_CHARS, ProjectSettings
from app.errors import InvalidInput
from tests.factories import make_project, make_token, make_user

LABELS = ["billing", "bug"]


def lead_client(app: FastAPI, db: Session) -> tuple[TestClient, int]:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    token = make_token(db, lead, scopes=["admin"])
    return TestClient(app, headers={"Authorization": f"Bearer {token}"}), project.id


def test_create_and_read_a_project(app: FastAPI, db: Session) -> None:
    client, _ = lead_client(app, db)
    created = client.post("/api/v1/projects", json={"name": "API", "labels": ["x", "y", "z"],
                                                    "label_budget": 300})
    assert created.status_code == 201
    body = created.json()
    assert [label["name"] for label in body["labels"]] == ["x", "y", "z"]
    assert body["counts"]["items"] == 0 and body["label_budget"] == 300
    read = client.get(f"/api/v1/projects/{body['id']}").json()
    assert read["name"] == "API"


def test_invalid_project_body_is_a_422_in_the_error_shape(app: FastAPI, db: Session) -> None:
    client, _ = lead_client(app, db)
    response = client.post("/api/v1/projects", json={"name": "x", "labels": ["only"]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "labels" in error["message"]
    duplicate = client.post("/api/v1/projects", json={"name": "x", "labels": ["a", "A"]})
    assert duplicate.status_code == 422
    assert duplicate.json()["error"]["code"] == "invalid_input"
    huge = client.post("/api/v1/projects",  # found by schemathesis: was a 500 OverflowError
                       json={"name": "x", "labels": ["a", "b"], "label_budget": 2**63})
    assert huge.status_code == 422 and "label_budget" in huge.json()["error"]["message"]


def test_project_create_is_strict_like_the_other_bodies(app: FastAPI, db: Session) -> None:
    """docs/api.md: unknown fields and wrong JSON types are refused (PATCH already was)."""
    client, _ = lead_client(app, db)
    for extra, field in (({"lable_budget": 5}, "lable_budget"), ({"label_budget": "5"},
                                                                  "label_budget")):
        response = client.post("/api/v1/projects",
                               json={"name": "x", "labels": ["a", "b"]} | extra)
        assert response.status_code == 422, (extra, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and field in error["message"]
        assert error["details"]["errors"][0]["loc"] == ["body", field]
    ok = client.post("/api/v1/projects", json={"name": "x", "labels": ["a", "b"],
                                               "label_budget": 5, "reserve_fraction": 0})
    assert ok.status_code == 201, ok.text  # an integer is still a number


def test_project_create_caps_description_and_guidelines_like_patch(
    app: FastAPI, db: Session
) -> None:
    client, project_id = lead_client(app, db)
    for field, cap in (("description", MAX_DESCRIPTION_CHARS),
                       ("guidelines", MAX_GUIDELINES_CHARS)):
        body = {"name": "x", "labels": ["a", "b"], field: "w" * (cap + 1)}
        created = client.post("/api/v1/projects", json=body)
        assert created.status_code == 422, (field, created.status_code)
        assert created.json()["error"]["details"]["errors"][0]["loc"] == ["body", field]
        patched = client.patch(f"/api/v1/projects/{project_id}", json={field: "w" * (cap + 1)})
        assert patched.status_code == 422, field
        at_cap = client.post("/api/v1/projects", json=body | {field: "w" * cap})
        assert at_cap.status_code == 201, field
    with pytest.raises(InvalidInput, match="at most 20,000 characters"):
        ProjectSettings(name="x", labels=("a", "b"), description="w" * 30_000)


def test_multipart_import_then_keyset_pages(app: FastAPI, db: Session) -> None:
    client, project_id = lead_client(app, db)
    content = "text,label,split\n" + "".join(f"text {i},billing,\n" for i in range(25))
    response = client.post(
        f"/api/v1/projects/{project_id}/items",
        files={"file": ("rows.csv", content.encode(), "text/csv")},
        data={"label_column": "label", "split_column": "split", "dev_fraction": "0.2",
              "seed": "1"},
    )
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["created"] == 25 and report["annotations"] == 25 and report["carved_dev"] == 5
    seen: list[int] = []
    after = 0
    while True:
        page = client.get(f"/api/v1/projects/{project_id}/items",
                          params={"after_id": after, "limit": 10}).json()
        seen += [item["id"] for item in page["items"]]
        if page["next_after_id"] is None:
            break
        after = page["next_after_id"]
    assert len(seen) == 25 and seen == sorted(seen)
    dev = client.get(f"/api/v1/projects/{project_id}/items", params={"split": "dev"}).json()
    assert len(dev["items"]) == 5


def test_raw_jsonl_body_import_with_query_mapping(app: FastAPI, db: Session) -> None:
    client, project_id = lead_client(app, db)
    body = "\n".join(json.dumps({"body": f"b {i}", "cat": "bug"}) for i in range(3))
    response = client.post(
        f"/api/v1/projects/{project_id}/items",
        params={"text_column": "body", "label_column": "cat"},
        content=body.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["annotations"] == 3


def test_api_import_errors_carry_line_numbers(app: FastAPI, db: Session) -> None:
    client, project_id = lead_client(app, db)
    response = client.post(
        f"/api/v1/projects/{project_id}/items",
        files={"file": ("rows.csv", b"text,label\nok,bug\nbad,nope\n", "text/csv")},
        data={"label_column": "label"},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "import_rejected"
    assert error["details"]["errors"][0]["line"] == 3
    listed = client.get(f"/api/v1/projects/{project_id}/items").json()
    assert listed["items"] == []


def test_unknown_format_and_missing_file_are_clear(app: FastAPI, db: Session) -> None:
    client, project_id = lead_client(app, db)
    unknown = client.post(f"/api/v1/projects/{project_id}/items", content=b"x",
                          headers={"Content-Type": "application/octet-stream"})
    assert unknown.status_code == 422 and "format" in unknown.json()["error"]["message"]
    missing = client.post(f"/api/v1/projects/{project_id}/items", data={"label_column": "x"},
                          files={"other": ("a.csv", b"text\nx\n", "text/csv")})
    assert missing.status_code == 422 and "'file'" in missing.json()["error"]["message"]


def test_unknown_api_route_uses_the_error_shape(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert "/api/v1/projects/{project_id}/items" in schema["paths"]
