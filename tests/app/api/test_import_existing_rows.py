"""Import through the API and the page: a named column that is missing is refused, and rows that
are already in the project keep their labels (reported by line) unless ``on_existing=apply``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD, Annotation, Item, Label
from tests.factories import login_client, make_project, make_token, make_user

LABELS = ["billing", "bug", "feature"]
FIRST = b"msg_id,text,label\n1,Refund please,billing\n2,App crashes,bug\n"
AGAIN = b"msg_id,text,label\n1,Refund please,feature\n2,App crashes,bug\n3,Brand new,bug\n"


def lead_token_client(app: FastAPI, db: Session) -> tuple[TestClient, int]:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    token = make_token(db, lead, scopes=["admin"])
    return TestClient(app, headers={"Authorization": f"Bearer {token}"}), project.id


def live_labels(db: Session, project_id: int, text: str) -> list[str]:
    return list(db.scalars(
        select(Label.name).join(Annotation, Annotation.label_id == Label.id)
        .join(Item, Item.id == Annotation.item_id)
        .where(Item.project_id == project_id, Item.text == text,
               Annotation.deleted.is_(False), Annotation.superseded_by_id.is_(None))
        .order_by(Annotation.id)
    ))


def test_api_refuses_a_missing_named_column_and_proposes(app: FastAPI, db: Session) -> None:
    client, project_id = lead_token_client(app, db)
    response = client.post(
        f"/api/v1/projects/{project_id}/items",
        files={"file": ("rows.csv", b"msg_id,message\n1,hello\n", "text/csv")},
        data={"text_column": "body", "id_column": "msg_id"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "import_rejected"
    (problem,) = error["details"]["errors"]
    assert problem["line"] == 1 and "has no column 'body'" in problem["message"]
    assert "'message'" in problem["message"]
    assert client.get(f"/api/v1/projects/{project_id}/items").json()["items"] == []


def test_api_keeps_or_applies_labels_of_existing_rows(app: FastAPI, db: Session) -> None:
    client, project_id = lead_token_client(app, db)
    url = f"/api/v1/projects/{project_id}/items"
    params = {"label_column": "label", "id_column": "msg_id"}
    assert client.post(url, params=params, content=FIRST,
                       headers={"Content-Type": "text/csv"}).status_code == 201
    kept = client.post(url, params=params, content=AGAIN, headers={"Content-Type": "text/csv"})
    assert kept.status_code == 201, kept.text
    body = kept.json()
    assert (body["created"], body["duplicates_in_project"]) == (1, 2)
    assert (body["existing_labelled"], body["existing_label_differs"]) == (2, 1)
    assert body["existing_label_differs_lines"] == [2] and body["existing_labels_applied"] == 0
    assert live_labels(db, project_id, "Refund please") == ["billing"]
    applied = client.post(
        url, params=params | {"on_existing": "apply"}, content=AGAIN,
        headers={"Content-Type": "text/csv"},
    ).json()
    assert applied["existing_labels_applied"] == 1 and applied["on_existing"] == "apply"
    assert live_labels(db, project_id, "Refund please") == ["feature"]  # same user: superseded
    wrong = client.post(url, params=params | {"on_existing": "merge"}, content=AGAIN,
                        headers={"Content-Type": "text/csv"})
    assert wrong.status_code == 422


def test_import_page_reports_existing_lines_and_applies_when_ticked(
    app: FastAPI, db: Session
) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    client = login_client(app, user=lead)
    url = f"/projects/{project.id}/import"
    fields = {"text_column": "text", "label_column": "label", "id_column": "msg_id"}

    def upload(content: bytes, **extra: str) -> str:
        response = client.post(url, data=fields | extra,
                               files={"file": ("t.csv", content, "text/csv")})
        assert response.status_code == 201, response.text[:500]
        return response.text

    upload(FIRST)
    kept = upload(AGAIN)
    assert 'data-count="existing_label_differs">1<' in kept
    assert '<span id="existing-lines">2</span>' in kept and "their labels were kept" in kept
    assert live_labels(db, project.id, "Refund please") == ["billing"]
    applied = upload(AGAIN, apply_existing="1")
    assert 'data-count="existing_labels_applied">1<' in applied
    assert live_labels(db, project.id, "Refund please") == ["feature"]
    page = client.get(url).text
    assert 'name="apply_existing"' in page and "data-candidates=" in page
    missing = client.post(url, data=fields | {"text_column": "body"},
                          files={"file": ("t.csv", FIRST, "text/csv")})
    assert missing.status_code == 422 and "has no column &#39;body&#39;" in missing.text
