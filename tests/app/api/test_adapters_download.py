"""Adapter download: zip of the artifact directory, ETag = artifact sha256, 304, pinned versions."""

from __future__ import annotations

import io
import zipfile

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.adapters import etag_matches
from tests.app.api.support import caller, fake_version, lead_with_project


def test_current_adapter_is_the_artifact_zipped_with_its_sha256_as_etag(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    version = fake_version(db, settings, project)
    response = lead.get(f"/api/v1/projects/{project.id}/adapter")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["etag"] == f'"{version.sha256}"'
    assert response.headers["cache-control"] == "private, no-cache"
    names = set(zipfile.ZipFile(io.BytesIO(response.content)).namelist())
    expected = {"tapestry.json", "labels.json", "README.md", "adapter/adapter_model.safetensors"}
    assert names == expected
    again = lead.get(f"/api/v1/projects/{project.id}/adapter")
    assert again.content == response.content  # cached, deterministic bytes


def test_if_none_match_answers_304_until_a_new_version_is_promoted(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    first = fake_version(db, settings, project)
    etag = f'"{first.sha256}"'
    url = f"/api/v1/projects/{project.id}/adapter"
    not_modified = lead.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    second = fake_version(db, settings, project)
    changed = lead.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] == f'"{second.sha256}"'


def test_pinned_version_stays_downloadable_and_is_immutable(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    first = fake_version(db, settings, project)
    fake_version(db, settings, project)
    response = lead.get(f"/api/v1/projects/{project.id}/model-versions/1/adapter")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{first.sha256}"'
    assert "immutable" in response.headers["cache-control"]
    missing = lead.get(f"/api/v1/projects/{project.id}/model-versions/9/adapter")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_version_not_found"


def test_card_endpoint_returns_the_front_matter(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    fake_version(db, settings, project)
    body = lead.get(f"/api/v1/projects/{project.id}/adapter/card").json()
    assert body["version"] == 1
    assert body["card"]["adapter_type"] == "lora"
    assert body["card"]["dev_metrics"]["macro_f1"] == 0.88
    pinned = lead.get(f"/api/v1/projects/{project.id}/model-versions/1/adapter/card")
    assert pinned.json()["card"] == body["card"]


def test_broken_card_is_a_clear_conflict_not_a_crash(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    fake_version(db, settings, project, card="no front matter here")
    response = lead.get(f"/api/v1/projects/{project.id}/adapter/card")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "card_unreadable"


def test_project_without_adapter_answers_409(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    for path in ("adapter", "adapter/card"):
        response = lead.get(f"/api/v1/projects/{project.id}/{path}")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "no_adapter"


def test_read_scope_token_may_download(app: FastAPI, db: Session, settings: Settings) -> None:
    lead, project = lead_with_project(app, db)
    fake_version(db, settings, project)
    reader = caller(app, db, user=lead.user, scopes=("read",), project=project)
    assert reader.get(f"/api/v1/projects/{project.id}/adapter").status_code == 200


def test_symlinks_in_an_artifact_are_not_followed(
    app: FastAPI, db: Session, settings: Settings, tmp_path: object
) -> None:
    lead, project = lead_with_project(app, db)
    version = fake_version(db, settings, project)
    secret = settings.data_dir / "secret_key"
    secret.write_text("do not ship me")
    (settings.artifacts / version.artifact_path / "leak.txt").symlink_to(secret)
    response = lead.get(f"/api/v1/projects/{project.id}/adapter")
    assert "leak.txt" not in zipfile.ZipFile(io.BytesIO(response.content)).namelist()


def test_etag_matching_follows_rfc_9110() -> None:
    assert etag_matches('"a", "b"', '"b"')
    assert etag_matches('W/"b"', '"b"')
    assert etag_matches("*", '"b"')
    assert not etag_matches('"a"', '"b"')
    assert not etag_matches(None, '"b"')
