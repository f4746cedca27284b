"""POST /predict: the real inference task body behind the route, and its failure modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from tests.app.api.support import (
    InProcessInference,
    caller,
    fake_version,
    lead_with_project,
    trained_version,
)
from tests.worker.ml.tiny import LABEL_NAMES


def test_predict_returns_the_current_adapters_probabilities(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path, inference: InProcessInference
) -> None:
    from worker.ml.artifacts import load_artifact

    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    version = trained_version(db, settings, project, tiny_base)
    texts = ["goal team match", "bank stock price", "atom cell energy theory"]
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == 1 and body["model_version_id"] == version.id
    assert body["label_names"] == LABEL_NAMES
    probs = np.array(body["probabilities"])
    reference = load_artifact(settings.artifacts / version.artifact_path, device="cpu")
    np.testing.assert_allclose(probs, reference.predict_proba(texts), atol=1e-5)
    assert body["labels"] == [LABEL_NAMES[i] for i in probs.argmax(axis=1)]
    assert inference.requests[0]["artifact_path"] == version.artifact_path  # relative: portable


def test_two_projects_share_one_base_and_keep_their_own_heads(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path, inference: InProcessInference
) -> None:
    lead3, three = lead_with_project(app, db, labels=LABEL_NAMES)
    lead2, two = lead_with_project(app, db, labels=LABEL_NAMES[:2])
    trained_version(db, settings, three, tiny_base, seed=1)
    trained_version(db, settings, two, tiny_base, seed=2)
    texts = ["goal bank", "orbit gene lab"]
    answers = []
    for who, project in ((lead3, three), (lead2, two), (lead3, three)):
        response = who.post(f"/api/v1/projects/{project.id}/predict", json={"texts": texts})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert len(answers[0]["label_names"]) == 3 and len(answers[1]["label_names"]) == 2
    assert answers[0]["probabilities"] == answers[2]["probabilities"]  # swapping back is exact
    assert inference.router.stats()["bases"] == 1
    assert inference.router.stats()["shared_adapters"] == 2


def test_pinned_model_version_is_used_when_asked(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path, inference: InProcessInference
) -> None:
    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    first = trained_version(db, settings, project, tiny_base, seed=1)
    trained_version(db, settings, project, tiny_base, seed=2)
    url = f"/api/v1/projects/{project.id}/predict"
    pinned = lead.post(url, json={"texts": ["goal"], "model_version": 1}).json()
    current = lead.post(url, json={"texts": ["goal"]}).json()
    assert pinned["model_version_id"] == first.id and current["model_version"] == 2
    assert pinned["probabilities"] != current["probabilities"]


def test_no_worker_answering_gives_503(app: FastAPI, db: Session, settings: Settings) -> None:
    lead, project = lead_with_project(app, db)
    fake_version(db, settings, project)
    app.state.settings.inference_timeout_seconds = 0.3
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json={"texts": ["hello"]})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "inference_unavailable"
    assert "No inference worker answered" in error["message"]


def test_missing_artifact_in_the_worker_store_is_a_conflict(
    app: FastAPI, db: Session, settings: Settings, inference: InProcessInference
) -> None:
    lead, project = lead_with_project(app, db)
    fake_version(db, settings, project)
    inference.settings = Settings(data_dir=settings.data_dir / "elsewhere",
                                  database_url=settings.database_url,
                                  secret_key=settings.secret_key)
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json={"texts": ["hello"]})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "artifact_missing"


def test_without_a_model_predict_is_a_409(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json={"texts": ["x"]})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_adapter"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"texts": []}, ["body", "texts"]),
        ({"texts": [""]}, ["body", "texts", "0"]),
        ({"texts": ["ok", 3]}, ["body", "texts", "1"]),
        ({"texts": ["x"] * 257}, ["body", "texts"]),
        ({"texts": ["x"], "model_version": 0}, ["body", "model_version"]),
        ({}, ["body", "texts"]),
    ],
)
def test_bad_input_is_a_422_with_the_field_path(
    app: FastAPI, db: Session, body: dict[str, object], loc: list[str]
) -> None:
    lead, project = lead_with_project(app, db)
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json=body)
    assert response.status_code == 422
    errors = response.json()["error"]["details"]["errors"]
    assert any(error["loc"] == loc for error in errors), errors


def test_texts_over_the_servers_limit_are_rejected_by_position(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    app.state.settings.max_text_chars = 10
    response = lead.post(f"/api/v1/projects/{project.id}/predict",
                         json={"texts": ["short", "x" * 11]})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["loc"] == ["body", "texts", "1"]


def test_oversized_body_is_a_413(db: Session, settings: Settings) -> None:
    from app.deps import get_db
    from app.main import create_app

    small = create_app(settings.model_copy(update={"max_upload_bytes": 2048}))
    small.dependency_overrides[get_db] = lambda: db
    lead, project = lead_with_project(small, db)
    response = lead.post(f"/api/v1/projects/{project.id}/predict",
                         json={"texts": ["x" * 1000] * 3})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_token_of_another_project_gets_404(app: FastAPI, db: Session, settings: Settings) -> None:
    lead, project = lead_with_project(app, db)
    _, other = lead_with_project(app, db)
    bound = caller(app, db, user=lead.user, project=other)
    response = bound.post(f"/api/v1/projects/{project.id}/predict", json={"texts": ["x"]})
    assert response.status_code == 404
