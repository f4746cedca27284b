"""The import page: 10,000 rows with counts, a bad file with line numbers and nothing imported,
and oversized uploads refused with 413."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_LEAD, Annotation, Item
from app.deps import get_db
from app.main import create_app
from tests.factories import login_client, make_project, make_user

LABELS = ("billing", "bug", "feature")


def csv_rows(n: int) -> bytes:
    lines = ["id,text,label"]
    for i in range(n):
        label = LABELS[i % 3] if i % 10 == 0 else ""
        lines.append(f"{i},ticket number {i} about something,{label}")
    return ("\n".join(lines) + "\n").encode()


def upload(client: TestClient, project_id: int, content: bytes, **fields: str):
    data = {"text_column": "text", "label_column": "label", "id_column": "id"} | fields
    return client.post(f"/projects/{project_id}/import", data=data,
                       files={"file": ("tickets.csv", content, "text/csv")})


def test_lead_imports_ten_thousand_rows_and_sees_the_counts(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    client = login_client(app, user=lead)
    assert client.get(f"/projects/{project.id}/import").status_code == 200
    response = upload(client, project.id, csv_rows(10_000), dev_fraction="0.2", seed="3")
    assert response.status_code == 201, response.text[:500]
    assert 'data-count="created">10000<' in response.text
    assert 'data-count="annotations">1000<' in response.text
    total = db.scalar(select(func.count()).select_from(Item).where(Item.project_id == project.id))
    assert total == 10_000
    dev = db.scalar(select(func.count()).select_from(Item)
                    .where(Item.project_id == project.id, Item.split == "dev"))
    assert dev == 3 * 67  # per label round(0.2 * 334 or 333) = 67: stratified, not global
    overview = client.get(f"/projects/{project.id}")
    assert ">10000<" in overview.text


def test_bad_csv_lists_line_numbers_and_imports_nothing(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    client = login_client(app, user=lead)
    content = b"id,text,label\n1,fine,bug\n2,,bug\n3,odd,unknown-label\n4,fine too,feature\n"
    response = upload(client, project.id, content)
    assert response.status_code == 422
    assert "Line 3 has an empty text" in response.text
    assert "Line 4 has label &#39;unknown-label&#39;" in response.text
    assert "Nothing was imported" in response.text
    count = db.scalar(select(func.count()).select_from(Item).where(Item.project_id == project.id))
    assert count == 0
    assert db.scalar(select(func.count()).select_from(Annotation)
                     .where(Annotation.project_id == project.id)) == 0


def test_import_report_counts_duplicates(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    client = login_client(app, user=lead)
    upload(client, project.id, b"id,text,label\n1,a,\n")
    response = upload(client, project.id, b"id,text,label\n1,a,\n2,b,\n3,b,\n")
    assert 'data-count="duplicates_in_project">1<' in response.text
    assert 'data-count="duplicates_in_file">1<' in response.text


def test_oversized_upload_is_refused_with_413(
    db: Session, settings: Settings, db_url: str
) -> None:
    small = Settings(**(settings.model_dump() | {"max_upload_bytes": 4096}))
    app = create_app(small)

    def _db():  # type: ignore[no-untyped-def]
        db.commit()
        yield db

    app.dependency_overrides[get_db] = _db
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    client = login_client(app, user=lead)
    response = upload(client, project.id, csv_rows(2_000))
    assert response.status_code == 413
    assert "larger than this server accepts" in response.text
    api = client.post(f"/api/v1/projects/{project.id}/items", content=csv_rows(2_000),
                      headers={"Content-Type": "text/csv"})
    assert api.status_code == 413
    assert api.json()["error"]["code"] == "payload_too_large"
    assert db.scalar(select(func.count()).select_from(Item)
                     .where(Item.project_id == project.id)) == 0


def test_the_separator_field_shows_only_for_multi_label_projects(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    single = make_project(db, lead=lead, labels=LABELS)
    multi = make_project(db, lead=lead, labels=(*LABELS, "<script>alert(1)</script>"),
                         task_type="multi_label")
    client = login_client(app, user=lead)
    plain = client.get(f"/projects/{single.id}/import").text
    assert 'name="label_separator"' not in plain and 'name="gold_column"' in plain
    page = client.get(f"/projects/{multi.id}/import").text
    assert 'name="label_separator"' in page and 'placeholder="|"' in page
    assert 'name="gold_column"' in page  # gold sets import too
    assert "the cell <code>[]</code> means none of them applies" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_multi_label_csv_imports_sets_through_the_form(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS, task_type="multi_label")
    client = login_client(app, user=lead)
    content = b"id,text,label\n1,crash and refund,bug;billing\n2,hello,[]\n3,later,\n"
    response = upload(client, project.id, content, label_separator=";")
    assert response.status_code == 201, response.text[:500]
    assert 'data-count="annotations">2<' in response.text
    assert 'data-count="none_of_these">1<' in response.text
    refused = upload(client, project.id, b"id,text,label\n9,x,bug|nope\n")
    assert refused.status_code == 422
    assert "Line 2 has label &#39;nope&#39;, which is not in the label set" in refused.text
    kept = client.post(f"/projects/{project.id}/import", data={
        "text_column": "text", "label_column": "label", "label_separator": ",,,,"},
        files={"file": ("t.csv", b"text,label\ny,bug\n", "text/csv")})
    assert kept.status_code == 422
    assert "The label separator" in kept.text and 'value=",,,,"' in kept.text
    assert db.scalar(select(func.count()).select_from(Item)
                     .where(Item.project_id == project.id)) == 3


def test_a_bad_option_is_shown_on_the_form_not_a_server_error(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABELS)
    client = login_client(app, user=lead)
    response = upload(client, project.id, b"id,text,label\n1,a,bug\n", dev_fraction="1.5")
    assert response.status_code == 422
    assert "The dev fraction must be at least 0 and below 1" in response.text
