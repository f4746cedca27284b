"""Project pages: create, overview counts, settings, label changes and members."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, Membership, Project
from app.domain.projects import get_labels
from tests.factories import login_client, make_project, make_user

FORM = {"name": "Tickets", "labels": "billing\nbug\n\nfeature\n", "description": "d",
        "label_budget": "500", "batch_size": "50", "stop_threshold": "0.5",
        "annotations_per_item": "1", "guidelines": "be kind"}


def test_lead_creates_a_project_and_becomes_its_lead(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    response = client.post("/projects", data=FORM, follow_redirects=False)
    assert response.status_code == 303
    project_id = int(response.headers["location"].rsplit("/", 1)[1])
    project = db.get(Project, project_id)
    assert project is not None and project.label_budget == 500
    assert [label.name for label in get_labels(db, project_id)] == ["billing", "bug", "feature"]
    role = db.scalar(select(Membership.role).where(Membership.project_id == project_id,
                                                   Membership.user_id == client.user.id))
    assert role == ROLE_LEAD
    page = client.get(f"/projects/{project_id}")
    assert "Tickets" in page.text and "Import data" in page.text
    assert "created" in page.text  # the flash message


def test_invalid_project_form_is_re_rendered_with_the_problem(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    response = client.post("/projects", data=FORM | {"labels": "only-one"})
    assert response.status_code == 422
    assert "between 2" in response.text and 'value="Tickets"' in response.text
    response = client.post("/projects", data=FORM | {"batch_size": "many"})
    assert response.status_code == 422
    assert "Batch size must be a whole number, got &#39;many&#39;." in response.text
    assert "-2147483647" not in response.text  # the database's range means nothing to a lead
    response = client.post("/projects", data=FORM | {"label_budget": "9" * 12})
    assert response.status_code == 422 and "Label budget is too large (12 digits)." in response.text
    response = client.post("/projects", data=FORM | {"label_budget": "9" * 30})
    assert response.status_code == 422 and "Label budget is too large (30 digits)." in response.text
    response = client.post("/projects", data=FORM | {"label_budget": "-5"})
    assert response.status_code == 422 and "-2147483647" not in response.text


def test_annotators_cannot_create_projects(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_ANNOTATOR)
    assert client.post("/projects", data=FORM).status_code == 403
    assert "New project" not in client.get("/projects").text


def test_settings_update_and_label_in_use_cannot_be_removed(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("a", "b"))
    client = login_client(app, user=lead)
    form = FORM | {"name": "Renamed", "labels": "b\na\nc"}
    response = client.post(f"/projects/{project.id}/settings", data=form, follow_redirects=False)
    assert response.status_code == 303
    db.expire_all()
    assert db.get(Project, project.id).name == "Renamed"  # type: ignore[union-attr]
    assert [label.name for label in get_labels(db, project.id)] == ["b", "a", "c"]
    # give "a" an annotation via an import, then try to drop it
    client.post(f"/projects/{project.id}/import",
                files={"file": ("x.csv", b"text,label\nhello,a\n", "text/csv")},
                data={"text_column": "text", "label_column": "label"})
    refused = client.post(f"/projects/{project.id}/settings", data=form | {"labels": "b\nc"})
    assert refused.status_code == 409
    assert "cannot be removed" in refused.text
    db.expire_all()
    assert [label.name for label in get_labels(db, project.id)] == ["b", "a", "c"]
    assert db.get(Project, project.id).name == "Renamed"  # type: ignore[union-attr]


def test_oversized_description_or_guidelines_are_refused_on_both_forms(
    app: FastAPI, db: Session
) -> None:
    """The caps of PATCH /api/v1/projects hold on the settings page and the new-project form:
    the form comes back (422) with the message, and nothing is saved."""
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("a", "b"))
    client = login_client(app, user=lead)
    before = (project.description, project.guidelines)
    settings = FORM | {"labels": "a\nb"}
    for field, size, message in (
        ("guidelines", 200_000, "The guidelines may be at most 100,000 characters"),
        ("description", 30_000, "The description may be at most 20,000 characters"),
    ):
        refused = client.post(f"/projects/{project.id}/settings",
                              data=settings | {field: "w" * size}, follow_redirects=False)
        assert refused.status_code == 422, (field, refused.status_code)
        assert 'role="alert"' in refused.text and message in refused.text
        db.expire_all()
        saved = db.get(Project, project.id)
        assert saved is not None and (saved.description, saved.guidelines) == before
        created = client.post("/projects", data=FORM | {"name": "Too long", field: "w" * size},
                              follow_redirects=False)
        assert created.status_code == 422 and message in created.text, field
        assert db.scalar(select(Project.id).where(Project.name == "Too long")) is None


def test_lead_adds_and_removes_members(app: FastAPI, db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    newcomer = make_user(db, role=ROLE_ANNOTATOR)
    client = login_client(app, user=lead)
    added = client.post(f"/projects/{project.id}/members",
                        data={"email": newcomer.email.upper(), "role": "annotator"},
                        follow_redirects=False)
    assert added.status_code == 303
    flashed = client.get(added.headers["location"]).text
    assert f"{newcomer.email.lower()} is now an annotator of this project" in flashed
    newcomer_client = login_client(app, user=newcomer)
    assert newcomer_client.get(f"/projects/{project.id}").status_code == 200
    unknown = client.post(f"/projects/{project.id}/members",
                          data={"email": "nobody@example.org", "role": "annotator"})
    assert unknown.status_code == 404 and "No user" in unknown.text
    last_lead = client.post(f"/projects/{project.id}/members/{lead.id}/remove")
    assert last_lead.status_code == 409
    removed = client.post(f"/projects/{project.id}/members/{newcomer.id}/remove",
                          follow_redirects=False)
    assert removed.status_code == 303
    assert newcomer_client.get(f"/projects/{project.id}").status_code == 404


def test_htmx_request_gets_only_the_content_block(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    full = client.get("/projects")
    partial = client.get("/projects", headers={"HX-Request": "true"})
    assert "<html" in full.text and "<html" not in partial.text
    assert "Projects" in partial.text


def test_pages_send_security_headers(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    response = client.get("/projects")
    assert response.headers["X-Frame-Options"] == "DENY"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy and "frame-ancestors 'none'" in policy
    assert 'hx-headers=\'{"X-CSRF-Token": "' + client.csrf_token + '"}\'' in response.text


def test_a_lead_creates_a_multi_label_project_and_cannot_switch_it_once_labelled(
    app: FastAPI, db: Session
) -> None:
    from app.domain.annotation.labels import record_label
    from tests.factories import make_items

    client = login_client(app, db, ROLE_LEAD)
    form = client.get("/projects/new").text
    assert '<option value="multi_label"' in form
    response = client.post("/projects", data=FORM | {"task_type": "multi_label"},
                           follow_redirects=False)
    assert response.status_code == 303
    project = db.get(Project, int(response.headers["location"].rsplit("/", 1)[1]))
    assert project is not None and project.task_type == "multi_label"
    settings = client.get(f"/projects/{project.id}/settings").text
    assert '<option value="multi_label" selected>' in settings
    assert project.strategy == "threshold_margin"
    assert '<option value="threshold_margin" selected>' in settings
    assert 'value="cluster_uncertain"' not in settings  # single-label strategies are not offered
    model_form = {"base_model": "minilm", "adapter_kind": "lora", "adapter_size": "8"}
    saved = client.post(f"/projects/{project.id}/settings/model",
                        data=model_form | {"strategy": "mmc"}, follow_redirects=False)
    assert saved.status_code == 303
    db.refresh(project)
    assert project.strategy == "mmc"
    wrong = client.post(f"/projects/{project.id}/settings/model",
                        data=model_form | {"strategy": "badge"})
    assert wrong.status_code == 422 and "for a multi-label project" in wrong.text
    (item,) = make_items(db, project, ["x"])
    record_label(db, project, make_user(db), item_id=item.id, label_ids=[])
    db.flush()
    refused = client.post(f"/projects/{project.id}/settings", data={
        "name": "Tickets", "labels": "billing\nbug\nfeature", "task_type": "single_label",
        "annotations_per_item": "1"})
    assert refused.status_code == 409
    assert "cannot change once the project has labels" in refused.text
    db.refresh(project)
    assert project.task_type == "multi_label"


def test_every_page_names_an_icon_that_is_served(app: FastAPI, db: Session) -> None:
    client = login_client(app, db, ROLE_LEAD)
    link = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
    assert link in client.get("/projects").text
    assert link in TestClient(app).get("/login").text  # signed out, too
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.lstrip().startswith("<svg")
    legacy = TestClient(app).get("/favicon.ico", follow_redirects=False)  # asked for by tools
    assert legacy.status_code == 301 and legacy.headers["location"] == "/static/favicon.svg"
