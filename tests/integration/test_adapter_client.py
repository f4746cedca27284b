"""A real client — transformers + peft, none of Tapestry's code — uses the downloaded adapter.

It downloads the current adapter through the REST API and runs the Python lines of docs/api.md
(read from that file) in a separate, isolated Python process that imports only transformers, peft
and torch: unzip, check the base's sha256, load the base with
``AutoModelForSequenceClassification.from_pretrained`` and the adapter with
``PeftModel.from_pretrained``. They must reproduce the probabilities that ``POST /predict``
returns for the same texts -- for a plain project and for one whose base went through TAPT (its
adapted encoder ships in the zip), and for multi-label adapters (issue 19): sigmoid probabilities,
and label sets at the thresholds the artifact and its card store, equal to /predict's
``label_sets``. The predict path runs first with the inference task body in-process, then through
a real Celery worker on the ``inference`` queue.

Multi-label kinds covered: LoRA and IA3 (peft, served on the worker's shared resident base) and
prompt tuning (peft, served whole through ``load_artifact``). Bottleneck adapters are Tapestry's
own module (``adapter/bottleneck.safetensors``), which plain peft cannot load (docs/api.md).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_LEAD, TASK_MULTI_LABEL
from app.domain.adapters import base_fingerprint
from app.domain.model_versions import relative_artifact_path
from app.main import create_app
from tests.app.api.support import (
    InProcessInference,
    bearer,
    trained_multilabel_version,
    trained_version,
)
from tests.app.domain.runs_support import Db
from tests.factories import make_project, make_token, make_user
from tests.integration.workers import Stack, WorkerProcess
from tests.worker.ml.tiny import LABEL_NAMES

TEXTS = ["goal team match win", "bank stock price loan", "atom cell gene orbit", "the new report"]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ALLOWED_TOP_LEVEL = {"transformers", "peft", "torch"}


def documented_snippet() -> str:
    """The Python block of docs/api.md that loads a downloaded adapter."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    (snippet,) = [b for b in blocks if "PeftModel.from_pretrained" in b]
    return snippet


RUNNER = """
import json, sys
texts = json.loads(sys.argv[1])
{snippet}
loaded = sorted({{name.split(".")[0] for name in sys.modules}})
print(json.dumps({{"probabilities": probs.tolist(), "labels": labels, "modules": loaded}}))
"""


def client_side_probabilities(zip_bytes: bytes, workdir: Path) -> tuple[np.ndarray, list[Any]]:
    """What a user's script does with the zip, in its own process: the documented lines only.
    ``labels``: one name per text (single-label), or one list of names per text (multi-label)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "adapter.zip").write_bytes(zip_bytes)
    script = RUNNER.format(snippet=documented_snippet())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAPESTRY_", "PYTHON"))}
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, json.dumps(TEXTS)],
        cwd=workdir, env=env | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ours = {"app", "worker", "tests"} & set(result["modules"])
    assert not ours, f"the client imported Tapestry code: {ours}"
    return np.array(result["probabilities"]), result["labels"]


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
    local, labels = client_side_probabilities(download.content, tmp_path / "client")

    served = http.post(f"/api/v1/projects/{project_id}/predict", json={"texts": TEXTS})
    assert served.status_code == 200, served.text
    np.testing.assert_allclose(np.array(served.json()["probabilities"]), local, atol=1e-4)
    assert served.json()["labels"] == labels == [LABEL_NAMES[i] for i in local.argmax(axis=1)]
    assert not np.allclose(local, local[0])  # a real model: the texts get different answers
    return download.content


def test_a_tapt_projects_adapter_ships_its_encoder_and_reproduces_predict(
    app: FastAPI, db: Session, settings: Settings, tiny_model: Path, tmp_path: Path
) -> None:
    """TAPT changed the encoder: without it, the documented lines would load silently and give
    other probabilities. The zip carries it as base/, and the card's sha256 checks it."""
    from tests.worker.ml.tiny import make_corpus
    from worker.ml.tapt import TaptConfig, run_tapt

    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABEL_NAMES)
    tapt_out = settings.artifacts / "projects" / str(project.id) / "tapt" / "run-1"
    texts = make_corpus(60, seed=3)[0]
    config = TaptConfig(max_steps=6, lr=5e-3, batch_size=8, eval_every=3, max_length=32,
                        mlm_probability=0.3, device="cpu", seed=1)
    run_tapt(texts, base_model=str(tiny_model), out_dir=tapt_out, config=config)
    project.tapt_model_path = relative_artifact_path(tapt_out, settings)
    trained_version(db, settings, project, tapt_out)
    token = make_token(db, lead, scopes=("read",), project=project)
    db.commit()
    app.state.inference_client = InProcessInference(settings)
    try:
        content = _download_and_compare(app, project.id, token, tiny_model, tmp_path)
    finally:
        del app.state.inference_client
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert "base/model.safetensors" in names and "base/config.json" in names
    meta = json.loads(zipfile.ZipFile(io.BytesIO(content)).read("tapestry.json"))
    assert meta["base_model_sha256"] == base_fingerprint(tapt_out)
    assert meta["base_model_sha256"] != base_fingerprint(tiny_model)  # TAPT changed the weights
    card = TestClient(app, headers=bearer(token)).get(
        f"/api/v1/projects/{project.id}/adapter/card").json()
    assert card["card"]["base_model_sha256"] == meta["base_model_sha256"]


def test_the_documented_check_refuses_the_wrong_base(
    app: FastAPI, db: Session, settings: Settings, tiny_model: Path, tmp_path: Path
) -> None:
    """A plain project's zip names its base; pointing the lines at another base fails loudly."""
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABEL_NAMES)
    trained_version(db, settings, project, tiny_model)
    token = make_token(db, lead, scopes=("read",), project=project)
    db.commit()
    content = TestClient(app, headers=bearer(token)).get(
        f"/api/v1/projects/{project.id}/adapter").content
    assert not any(n.startswith("base/") for n in zipfile.ZipFile(io.BytesIO(content)).namelist())
    archive = zipfile.ZipFile(io.BytesIO(content))
    meta = json.loads(archive.read("tapestry.json"))
    other = tmp_path / "other-base"
    other.mkdir()
    for file in tiny_model.iterdir():
        if file.is_file():
            data = file.read_bytes()
            if file.suffix == ".safetensors":
                data = data[:-1] + bytes([data[-1] ^ 1])  # one bit of one weight differs
            (other / file.name).write_bytes(data)
    meta["base_model"] = str(other)
    rewritten = io.BytesIO()
    with zipfile.ZipFile(rewritten, "w") as out:
        for name in archive.namelist():
            out.writestr(name, json.dumps(meta) if name == "tapestry.json" else archive.read(name))
    with pytest.raises(AssertionError, match="is not the base this adapter was trained on"):
        client_side_probabilities(rewritten.getvalue(), tmp_path / "client")


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
    local, _labels = client_side_probabilities(download.content, tmp_path / "client")
    np.testing.assert_allclose(np.array(served.json()["probabilities"]), local, atol=1e-4)
    celery.close()


MULTI_LABEL_KINDS = ["lora", "ia3", "prompt"]
"""The multi-label adapter kinds plain peft loads (bottleneck is Tapestry's own module)."""


@pytest.mark.parametrize("kind", MULTI_LABEL_KINDS)
def test_peft_client_reproduces_a_multi_label_adapters_predictions(
    app: FastAPI, db: Session, settings: Settings, tiny_model: Path, tmp_path: Path, kind: str
) -> None:
    """Issue 19: a downloaded multi-label adapter, loaded with plain transformers + peft, gives
    /predict's sigmoid probabilities and -- at the thresholds its card stores -- its label sets."""
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=LABEL_NAMES, task_type=TASK_MULTI_LABEL)
    trained_multilabel_version(db, settings, project, tiny_model, kind=kind)
    token = make_token(db, lead, scopes=("read",), project=project)
    db.commit()
    app.state.inference_client = InProcessInference(settings)
    try:
        served = _download_and_compare_multi_label(app, project.id, token, tmp_path)
    finally:
        del app.state.inference_client  # the test app is shared between tests
    assert served["model"] == "adapter" and served["model_version"] == 1
    if kind == "lora":  # LoRA learns the tiny corpus: the texts get different sets
        assert len({tuple(labels) for labels in served["label_sets"]}) > 1, served


def _download_and_compare_multi_label(
    app: FastAPI, project_id: int, token: str, tmp_path: Path
) -> dict[str, Any]:
    """The documented lines against /predict, and the thresholds of tapestry.json, the card and
    /predict against each other; returns /predict's answer."""
    http = TestClient(app, headers=bearer(token))

    download = http.get(f"/api/v1/projects/{project_id}/adapter")
    assert download.status_code == 200
    meta = json.loads(zipfile.ZipFile(io.BytesIO(download.content)).read("tapestry.json"))
    assert meta["task_type"] == "multi_label"
    thresholds = meta["thresholds"]
    assert len(thresholds) == len(LABEL_NAMES)
    assert thresholds != [0.5] * len(LABEL_NAMES)  # tuned on the dev split, not the default
    local, label_sets = client_side_probabilities(download.content, tmp_path / "client")

    card = http.get(f"/api/v1/projects/{project_id}/adapter/card")
    assert card.status_code == 200, card.text
    front = card.json()["card"]
    assert front["task_type"] == "multi_label"
    assert list(front["thresholds"]) == meta["label_names"] == LABEL_NAMES  # label order
    assert list(front["thresholds"].values()) == pytest.approx(thresholds, abs=1e-9)

    served = http.post(f"/api/v1/projects/{project_id}/predict", json={"texts": TEXTS})
    assert served.status_code == 200, served.text
    answer = served.json()
    assert answer["label_names"] == LABEL_NAMES
    np.testing.assert_allclose(np.array(answer["probabilities"]), local, atol=1e-4)
    assert answer["thresholds"] == pytest.approx(thresholds, abs=1e-9)
    assert answer["label_sets"] == label_sets
    # the client's sets are the card's thresholds applied to its own sigmoids
    by_card = [[name for name, p in zip(LABEL_NAMES, row, strict=True)
                if p >= front["thresholds"][name]] for row in local.tolist()]
    assert label_sets == by_card
    assert not np.allclose(local.sum(axis=1), 1.0, atol=1e-3)  # independent sigmoids, no softmax
    assert answer["labels"] == [LABEL_NAMES[i] for i in local.argmax(axis=1)]
    return dict(answer)


def test_a_multi_label_adapter_predicts_through_a_real_inference_worker(
    stack: Stack, stack_db: Db, tiny_model: Path, tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    """The /predict path of a multi-label adapter version through a real Celery worker on the
    ``inference`` queue: label_sets and thresholds come back over the result backend."""
    from app.api.inference_client import CeleryInferenceClient
    from worker.celery_app import make_celery

    settings = stack.settings()
    with stack_db.session() as session:
        lead = make_user(session, role=ROLE_LEAD)
        project = make_project(session, lead=lead, labels=LABEL_NAMES,
                               task_type=TASK_MULTI_LABEL)
        trained_multilabel_version(session, settings, project, tiny_model)
        token = make_token(session, lead, scopes=("read",), project=project)
        session.commit()
        project_id = project.id
    app = create_app(settings)
    celery = make_celery(settings)
    app.state.inference_client = CeleryInferenceClient(celery)
    try:
        workers()
        app.state.settings.inference_timeout_seconds = 120.0
        served = _download_and_compare_multi_label(app, project_id, token, tmp_path)
        assert served["model"] == "adapter"
    finally:
        celery.close()
