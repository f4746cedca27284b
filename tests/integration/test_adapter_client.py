"""A real client — transformers + peft, none of Tapestry's code — uses the downloaded adapter.

It downloads the current adapter through the REST API, unzips it, loads the base with
``AutoModelForSequenceClassification.from_pretrained`` and the adapter with
``PeftModel.from_pretrained`` (exactly the lines in docs/api.md), and must reproduce the
probabilities that ``POST /predict`` returns for the same texts. The predict path runs first with
the inference task body in-process, then through a real Celery worker on the ``inference`` queue.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_LEAD
from app.main import create_app
from tests.app.api.support import InProcessInference, bearer, trained_version
from tests.app.domain.runs_support import Db
from tests.factories import make_project, make_token, make_user
from tests.integration.workers import Stack, WorkerProcess
from tests.worker.ml.tiny import LABEL_NAMES

TEXTS = ["goal team match win", "bank stock price loan", "atom cell gene orbit", "the new report"]


def client_side_probabilities(zip_bytes: bytes, base: Path, workdir: Path) -> np.ndarray:
    """What a user's script does with the zip: transformers + peft only."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    zipfile.ZipFile(io.BytesIO(zip_bytes)).extractall(workdir)
    labels = json.loads((workdir / "labels.json").read_text())["labels"]
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=len(labels))
    model = PeftModel.from_pretrained(model, str(workdir / "adapter")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(workdir / "tokenizer"))
    with torch.no_grad():
        batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
        return model(**batch).logits.softmax(-1).numpy()


def test_peft_client_reproduces_the_servers_predictions(
    app: FastAPI, db: Session, settings: Settings, tiny_model: Path, tmp_path: Path
) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABEL_NAMES)
    trained_version(db, settings, project, tiny_model)
    token = make_token(db, lead, scopes=("read",), project=project)
    db.commit()
    app.state.inference_client = InProcessInference(settings)
    try:
        _download_and_compare(app, project.id, token, tiny_model, tmp_path)
    finally:
        del app.state.inference_client  # the test app is shared between tests


def _download_and_compare(
    app: FastAPI, project_id: int, token: str, tiny_model: Path, tmp_path: Path
) -> None:
    http = TestClient(app, headers=bearer(token))

    download = http.get(f"/api/v1/projects/{project_id}/adapter")
    assert download.status_code == 200
    local = client_side_probabilities(download.content, tiny_model, tmp_path / "adapter")

    served = http.post(f"/api/v1/projects/{project_id}/predict", json={"texts": TEXTS})
    assert served.status_code == 200, served.text
    np.testing.assert_allclose(np.array(served.json()["probabilities"]), local, atol=1e-5)
    assert served.json()["labels"] == [LABEL_NAMES[i] for i in local.argmax(axis=1)]
    assert not np.allclose(local, local[0])  # a real model: the texts get different answers


def test_predict_through_a_real_inference_worker(
    stack: Stack, stack_db: Db, tiny_model: Path, tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    from app.api.inference_client import CeleryInferenceClient
    from worker.celery_app import make_celery

    settings = stack.settings()
    with stack_db.session() as session:
        lead = make_user(session, role=ROLE_LEAD)
        project = make_project(session, lead=lead, labels=LABEL_NAMES)
        trained_version(session, settings, project, tiny_model)
        token = make_token(session, lead, scopes=("read",), project=project)
        session.commit()
        project_id = project.id
    app = create_app(settings)
    celery = make_celery(settings)
    app.state.inference_client = CeleryInferenceClient(celery)
    http = TestClient(app, headers=bearer(token))
    url = f"/api/v1/projects/{project_id}/predict"

    app.state.settings.inference_timeout_seconds = 1.0
    nobody = http.post(url, json={"texts": TEXTS})
    assert nobody.status_code == 503
    assert nobody.json()["error"]["code"] == "inference_unavailable"

    workers()
    app.state.settings.inference_timeout_seconds = 120.0
    served = http.post(url, json={"texts": TEXTS})
    assert served.status_code == 200, served.text
    download = http.get(f"/api/v1/projects/{project_id}/adapter")
    local = client_side_probabilities(download.content, tiny_model, tmp_path / "adapter")
    np.testing.assert_allclose(np.array(served.json()["probabilities"]), local, atol=1e-5)
    celery.close()
