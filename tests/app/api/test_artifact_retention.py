"""Retention as users see it: pin (API and page), 410 Gone once swept, disk use on /admin."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR
from app.domain.artifact_hygiene import sweep_artifacts
from tests.app.api.support import caller, fake_version, lead_with_project
from tests.factories import login_client


def test_a_swept_version_answers_410_with_a_clear_message_and_keeps_its_row(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    settings.keep_versions = 1
    lead, project = lead_with_project(app, db)
    first = fake_version(db, settings, project)
    fake_version(db, settings, project)
    report = sweep_artifacts(db, settings)
    db.commit()
    assert report.versions_deleted == [(project.id, 1)]
    base = f"/api/v1/projects/{project.id}/model-versions/1"
    for url in (f"{base}/adapter", f"{base}/adapter/card"):
        gone = lead.get(url)
        assert gone.status_code == 410, (url, gone.text)
        error = gone.json()["error"]
        assert error["code"] == "artifact_deleted"
        assert "retention" in error["message"] and "Pin" in error["message"]
    row = lead.get(base).json()
    assert row["artifact_deleted"] is True and row["metrics"] == dict(first.metrics)
    assert lead.get(f"/api/v1/projects/{project.id}/adapter").status_code == 200  # current: v2
    browser = login_client(app, user=lead.user)
    assert "adapter deleted (retention)" in browser.get(f"/projects/{project.id}/models").text
    web = browser.get(f"/projects/{project.id}/models/{first.id}/download")
    assert web.status_code == 410


def test_a_lead_pins_by_api_and_the_pinned_version_survives_retention(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    settings.keep_versions = 1
    lead, project = lead_with_project(app, db)
    for _ in range(3):
        fake_version(db, settings, project)
    url = f"/api/v1/projects/{project.id}/model-versions/1/pin"
    pinned = lead.post(url)
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["pinned"] is True
    assert sweep_artifacts(db, settings).versions_deleted == [(project.id, 2)]
    db.commit()
    assert lead.get(f"/api/v1/projects/{project.id}/model-versions/1/adapter").status_code == 200
    unpin = url.replace("/pin", "/unpin")
    reader = caller(app, db, scopes=("read",), user=lead.user)
    assert reader.post(unpin).status_code == 403
    other_lead, _other = lead_with_project(app, db)
    assert other_lead.post(unpin).status_code == 404
    assert lead.get(f"/api/v1/projects/{project.id}/model-versions/1").json()["pinned"] is True
    unpinned = lead.post(unpin)
    assert unpinned.status_code == 200 and unpinned.json()["pinned"] is False


def test_a_lead_pins_and_unpins_on_the_models_page(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    version = fake_version(db, settings, project)
    client = login_client(app, user=lead.user)
    url = f"/projects/{project.id}/models/{version.id}/pin"
    assert f'action="{url}"' in client.get(f"/projects/{project.id}/models").text
    response = client.post(url, data={"pinned": "1"}, follow_redirects=False)
    assert response.status_code == 303
    db.refresh(version)
    assert version.pinned is True
    assert ">Unpin<" in client.get(f"/projects/{project.id}/models").text
    client.post(url, data={"pinned": "0"})
    db.refresh(version)
    assert version.pinned is False
    annotator = login_client(app, db, role=ROLE_ANNOTATOR, project=project)
    assert annotator.post(url, data={"pinned": "1"}).status_code in (403, 404)
    db.refresh(version)
    assert version.pinned is False


def test_admin_projects_page_shows_disk_use_per_project(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    _lead, project = lead_with_project(app, db)
    version = fake_version(db, settings, project)
    (settings.artifacts / version.artifact_path / "big.bin").write_bytes(b"x" * 2_500_000)
    db.commit()
    admin = login_client(app, db, role=ROLE_ADMIN)
    page = admin.get("/admin/projects")
    assert page.status_code == 200
    assert "Disk use" in page.text
    assert "2.5 MB" in page.text  # the project's artifacts, rounded (1 MB = 10^6 bytes)
