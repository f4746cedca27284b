"""Admin pages over HTTP: users and roles, memberships, tokens, runs with live progress, models."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import (
    ROLE_ADMIN,
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    ApiToken,
    Membership,
    ModelVersion,
    TrainingRun,
    User,
)
from app.jobs import Job, recording_jobs
from app.security.passwords import verify_password
from tests.factories import login_client, make_project, make_user

HTMX = {"HX-Request": "true"}


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


def test_only_admins_reach_admin_pages(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    for role in (ROLE_LEAD, ROLE_ANNOTATOR):
        client = login_client(app, db, role=role, project=project)
        for path in ("/admin/users", "/admin/tokens", "/admin/projects",
                     f"/admin/projects/{project.id}/runs", f"/admin/projects/{project.id}/models"):
            assert client.get(path).status_code == 403, (role, path)
        assert client.post("/admin/users", data={"email": "x@example.org"}).status_code == 403
        assert client.post(f"/admin/projects/{project.id}/runs",
                           data={"kind": "retrain"}).status_code == 403
    assert db.scalar(select(User).where(User.email == "x@example.org")) is None


def test_admin_creates_a_user_whose_password_is_shown_once(app: FastAPI, db: Session) -> None:
    admin = login_client(app, db, role=ROLE_ADMIN)
    response = admin.post("/admin/users", data={"email": "New.Person@Example.org",
                                                "name": "New Person", "role": "lead"})
    assert response.status_code == 201
    password = re.search(r"<code>([^<]+)</code>", response.text)
    assert password is not None
    user = db.scalars(select(User).where(User.email == "new.person@example.org")).one()
    assert user.role == "lead" and verify_password(user.password_hash, password.group(1))
    assert password.group(1) not in admin.get("/admin/users").text
    duplicate = admin.post("/admin/users", data={"email": "new.person@example.org",
                                                 "role": "lead"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.text


def test_roles_memberships_and_the_last_admin_guard(app: FastAPI, db: Session) -> None:
    admin = login_client(app, db, role=ROLE_ADMIN)
    person = make_user(db, role=ROLE_ANNOTATOR)
    project = make_project(db)
    assert admin.post(f"/admin/users/{person.id}/role", data={"role": "lead"},
                      follow_redirects=False).status_code == 303
    assert person.role == "lead"
    admin.post(f"/admin/users/{person.id}/memberships",
               data={"project_id": str(project.id), "role": "annotator"})
    membership = db.scalars(select(Membership).where(Membership.user_id == person.id)).one()
    assert membership.role == "annotator"
    page = admin.get(f"/admin/users/{person.id}")
    assert project.name in page.text
    admin.post(f"/admin/users/{person.id}/memberships/{project.id}/remove")
    assert db.scalars(select(Membership).where(Membership.user_id == person.id)).first() is None
    refused = admin.post(f"/admin/users/{admin.user.id}/role", data={"role": "lead"})
    assert refused.status_code == 409 and admin.user.role == "admin"
    assert admin.post(f"/admin/users/{admin.user.id}/active",
                      data={"active": "false"}).status_code == 409


def test_token_is_shown_once_works_and_revocation_locks_it_out(
    app: FastAPI, db: Session
) -> None:
    admin = login_client(app, db, role=ROLE_ADMIN)
    lead = make_user(db, role=ROLE_LEAD)
    response = admin.post("/admin/tokens", data={"name": "nightly export",
                                                 "user_id": str(lead.id), "scopes": ["read"]})
    assert response.status_code == 201
    match = re.search(r'<code id="token-secret">(tap_[^<]+)</code>', response.text)
    assert match is not None
    secret = match.group(1)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert admin.get("/api/v1/projects", headers=bearer).status_code == 200
    listing = admin.get("/admin/tokens").text
    assert secret not in listing and "nightly export" in listing
    token = db.scalars(select(ApiToken).where(ApiToken.name == "nightly export")).one()
    assert admin.post(f"/admin/tokens/{token.id}/revoke",
                      follow_redirects=False).status_code == 303
    assert admin.get("/api/v1/projects", headers=bearer).status_code == 401
    no_scope = admin.post("/admin/tokens", data={"name": "x", "user_id": str(lead.id)})
    assert no_scope.status_code == 422 and "scope" in no_scope.text


def test_launch_a_retrain_and_watch_its_progress_until_it_ends(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    project = make_project(db)
    admin = login_client(app, db, role=ROLE_ADMIN)
    response = admin.post(f"/admin/projects/{project.id}/runs", data={"kind": "retrain"},
                          follow_redirects=False)
    assert response.status_code == 303
    run = db.scalars(select(TrainingRun)).one()
    assert run.kind == RUN_RETRAIN and response.headers["location"].endswith(f"/runs/{run.id}")
    run.status, run.step, run.total = "running", 30, 120
    run.metrics = {"loss": 0.4321, "epoch": 2}
    run.eta_seconds = 95.0
    progress = admin.get(f"/admin/projects/{project.id}/runs/{run.id}/progress", headers=HTMX)
    assert progress.status_code == 200
    assert 'hx-trigger="load delay:1s"' in progress.text
    assert "30 / 120" in progress.text and "0.4321" in progress.text and "1m 35s" in progress.text
    detail = admin.get(f"/admin/projects/{project.id}/runs/{run.id}/progress?detail=true",
                       headers=HTMX)
    assert 'id="run-detail"' in detail.text and detail.text.count("hx-trigger") == 1
    assert "metrics.loss" in detail.text
    run.status, run.step = RUN_SUCCEEDED, 120
    done = admin.get(f"/admin/projects/{project.id}/runs/{run.id}/progress", headers=HTMX)
    assert "hx-trigger" not in done.text and "succeeded" in done.text
    assert f"#{run.id}" in admin.get(f"/admin/projects/{project.id}/runs").text


def test_cancel_a_queued_run_and_show_its_error_log(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    project = make_project(db)
    admin = login_client(app, db, role=ROLE_ADMIN)
    admin.post(f"/admin/projects/{project.id}/runs", data={"kind": "tapt"})
    run = db.scalars(select(TrainingRun)).one()
    cancelled = admin.post(f"/admin/projects/{project.id}/runs/{run.id}/cancel", headers=HTMX)
    assert cancelled.status_code == 200 and "cancelled" in cancelled.text
    run.error = "Traceback: <b>boom</b>"
    run.log_tail = "step 1 loss 9.1"
    page = admin.get(f"/admin/projects/{project.id}/runs/{run.id}").text
    assert "&lt;b&gt;boom&lt;/b&gt;" in page and "step 1 loss 9.1" in page
    other = make_project(db)
    assert admin.get(f"/admin/projects/{other.id}/runs/{run.id}").status_code == 404


def _artifact(root: Path, name: str) -> Path:
    path = root / name
    (path / "adapter").mkdir(parents=True)
    (path / "tapestry.json").write_text("{}")
    (path / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    (path / "README.md").write_text("---\nadapter_type: lora\n---\nbody\n")
    return path


def test_models_promote_roll_back_and_download(
    app: FastAPI, db: Session, settings: Settings, sent: list[Job]
) -> None:
    project = make_project(db)
    admin = login_client(app, db, role=ROLE_ADMIN)
    versions = []
    for number in (1, 2):
        path = _artifact(settings.artifacts, f"p{project.id}-v{number}")
        version = ModelVersion(project_id=project.id, version=number,
                               artifact_path=path.name, sha256=f"sha{number}-{project.id}")
        db.add(version)
        versions.append(version)
    db.flush()
    for version in versions:
        assert admin.post(f"/admin/projects/{project.id}/models/{version.id}/promote",
                          follow_redirects=False).status_code == 303
    assert project.current_model_version_id == versions[1].id
    page = admin.get(f"/admin/projects/{project.id}/models").text
    assert "current" in page and "adapter_type" in page
    admin.post(f"/admin/projects/{project.id}/models/rollback")
    assert project.current_model_version_id == versions[0].id
    download = admin.get(f"/admin/projects/{project.id}/models/{versions[0].id}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert "tapestry.json" in names and "adapter/adapter_model.safetensors" in names
