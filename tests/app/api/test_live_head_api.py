"""The served live head through the API: /predict answers with it, and it downloads as a zip."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import SERVED_ADAPTER, SERVED_LIVE_HEAD, LiveHeadState, Project
from tests.app.api.support import InProcessInference, lead_with_project, trained_version
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus


def _live_head(db: Session, settings: Settings, project: Project, base: Path, served: str
               ) -> tuple[object, object]:
    from worker.ml.live_head import LiveHead
    from worker.ml.sentence_encoder import SentenceEncoder

    encoder = SentenceEncoder(str(base), max_length=32)
    texts, labels = make_corpus(30, seed=2)
    head = LiveHead().fit(encoder.embed(texts), np.asarray(labels), len(LABEL_NAMES))
    directory = settings.artifacts / "live" / f"project-{project.id}" / "head"
    head.save(directory, extra={"encoder": str(base), "encoder_fingerprint": encoder.fingerprint,
                                "max_length": 32, "label_names": LABEL_NAMES})
    db.add(LiveHeadState(project_id=project.id, artifact_path=str(directory), served=served,
                         served_reason="best dev macro-F1 (test)", labels_used=30,
                         history=[{"labels": 30, "live_head": 0.9}]))
    db.flush()
    from app.db.base import utcnow

    db.query(LiveHeadState).filter_by(project_id=project.id).update({"fitted_at": utcnow()})
    db.flush()
    return head, encoder


def test_predict_answers_with_the_live_head_when_it_is_served(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path, inference: InProcessInference
) -> None:
    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    head, encoder = _live_head(db, settings, project, tiny_base, SERVED_LIVE_HEAD)
    texts = ["goal team match", "bank stock price"]
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "live_head" and body["model_version"] is None
    expected = head.predict_proba(encoder.embed(texts))  # type: ignore[attr-defined]
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-4)
    assert body["labels"] == [LABEL_NAMES[i] for i in expected.argmax(axis=1)]


def test_predict_uses_the_adapter_when_the_adapter_is_served(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path, inference: InProcessInference
) -> None:
    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    version = trained_version(db, settings, project, tiny_base)
    _live_head(db, settings, project, tiny_base, SERVED_ADAPTER)
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json={"texts": ["goal"]})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "adapter"
    assert response.json()["model_version_id"] == version.id


def test_live_head_downloads_as_a_numpy_loadable_zip(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path
) -> None:
    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    url = f"/api/v1/projects/{project.id}/live-head"
    assert lead.get(url).status_code == 409
    head, encoder = _live_head(db, settings, project, tiny_base, SERVED_LIVE_HEAD)
    response = lead.get(url)
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    meta = json.loads(archive.read("live-head/live_head.json"))
    assert meta["extra"]["encoder_fingerprint"] == encoder.fingerprint  # type: ignore[attr-defined]
    W = np.load(io.BytesIO(archive.read("live-head/embed_W.npy")), allow_pickle=False)
    b = np.load(io.BytesIO(archive.read("live-head/embed_b.npy")), allow_pickle=False)
    e = encoder.embed(["goal team match"])  # type: ignore[attr-defined]
    logits = e @ W.T + b
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(probs, head.predict_proba(e), atol=1e-4)  # type: ignore[attr-defined]


def test_dashboard_says_which_model_is_served_and_why(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path
) -> None:
    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    _live_head(db, settings, project, tiny_base, SERVED_LIVE_HEAD)
    page = lead.get(f"/projects/{project.id}/dashboard")
    assert page.status_code == 200
    assert "Serving: <strong>live head</strong>" in page.text
    assert "best dev macro-F1 (test)" in page.text
    assert 'data-series="live head macro-F1"' in page.text


def test_a_multi_label_head_answers_predict_with_sets_and_downloads_with_its_thresholds(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path, inference: InProcessInference
) -> None:
    from worker.ml.multilabel import MultiLabelHead, fit_with_thresholds, label_matrix
    from worker.ml.sentence_encoder import SentenceEncoder

    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    project.task_type = "multi_label"
    encoder = SentenceEncoder(str(tiny_base), max_length=32)
    texts, labels = make_corpus(30, seed=2)
    sets = [[y] if i % 5 else [y, (y + 1) % 3] for i, y in enumerate(labels)]
    head = fit_with_thresholds(encoder.embed(texts), label_matrix(sets, len(LABEL_NAMES)))
    directory = settings.artifacts / "live" / f"project-{project.id}" / "head"
    head.save(directory, extra={"encoder": str(tiny_base), "max_length": 32,
                                "encoder_fingerprint": encoder.fingerprint,
                                "label_names": LABEL_NAMES})
    db.add(LiveHeadState(project_id=project.id, artifact_path=str(directory),
                         served=SERVED_LIVE_HEAD, labels_used=30))
    db.flush()
    asked = ["goal team match bank", "atom cell", "the of"]
    response = lead.post(f"/api/v1/projects/{project.id}/predict", json={"texts": asked})
    assert response.status_code == 200, response.text
    body = response.json()
    probs = head.predict_proba(encoder.embed(asked))
    np.testing.assert_allclose(body["probabilities"], probs, atol=1e-4)
    assert body["thresholds"] == [round(float(t), 4) for t in head.thresholds]
    expected_sets = [[LABEL_NAMES[j] for j in range(3) if row[j] >= head.thresholds[j]]
                     for row in probs]
    assert body["label_sets"] == expected_sets
    # the download: plain numpy arrays and the thresholds reproduce /predict's sets
    archive = zipfile.ZipFile(io.BytesIO(lead.get(f"/api/v1/projects/{project.id}/live-head")
                                         .content))
    W = np.load(io.BytesIO(archive.read("live-head/W.npy")), allow_pickle=False)
    b = np.load(io.BytesIO(archive.read("live-head/b.npy")), allow_pickle=False)
    thresholds = np.load(io.BytesIO(archive.read("live-head/thresholds.npy")), allow_pickle=False)
    meta = json.loads(archive.read("live-head/multilabel_head.json"))
    assert meta["extra"]["label_names"] == LABEL_NAMES
    p = 1 / (1 + np.exp(-(encoder.embed(asked) @ W.T + b)))
    names = meta["extra"]["label_names"]
    assert [[names[j] for j in np.flatnonzero(row >= thresholds)] for row in p] == expected_sets
    assert MultiLabelHead.load(directory).n_labels == 3


def test_the_dashboard_of_a_multi_label_project_shows_set_metrics_and_co_occurrence(
    app: FastAPI, db: Session, settings: Settings, tiny_base: Path
) -> None:
    from app.db.models import AnnotationLabel, Item, Label
    from app.domain.annotation.labels import record_label
    from tests.factories import make_items, make_user
    from worker.ml.multilabel import fit_with_thresholds, label_matrix
    from worker.ml.sentence_encoder import SentenceEncoder

    lead, project = lead_with_project(app, db, labels=LABEL_NAMES)
    project.task_type = "multi_label"
    ids = {label.name: label.id for label in db.query(Label).filter_by(project_id=project.id)}
    user = make_user(db)
    items = make_items(db, project, ["goal bank <script>x</script>", "goal", "atom", "the"])
    for item, names in zip(items, [["sports", "finance"], ["sports"], ["science"], []],
                           strict=True):
        record_label(db, project, user, item_id=item.id, label_ids=[ids[n] for n in names])
    encoder = SentenceEncoder(str(tiny_base), max_length=32)
    texts, labels = make_corpus(30, seed=2)
    head = fit_with_thresholds(encoder.embed(texts), label_matrix([[y] for y in labels], 3))
    head.extra["evaluation"] = {"dev_n": 12, "micro_f1": 0.8125, "macro_f1": 0.75,
                                "subset_accuracy": 0.5, "hamming_loss": 0.125,
                                "per_label": [{"label": n, "f1": 0.5, "support": 4}
                                              for n in LABEL_NAMES]}
    directory = settings.artifacts / "live" / f"project-{project.id}" / "head"
    head.save(directory, extra={"label_names": LABEL_NAMES})
    db.query(LiveHeadState).filter_by(project_id=project.id).update(  # made by record_label
        {"artifact_path": str(directory), "served": SERVED_LIVE_HEAD, "labels_used": 4})
    db.flush()
    page = lead.get(f"/projects/{project.id}/dashboard")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'id="confusion"' not in html and 'id="multi-label"' in html
    for figure in ("0.812", "0.750", "0.500", "0.125"):
        assert figure in html
    assert "4 items, 1.00 labels each, 1 with none" in html
    assert 'title="sports and finance: 1 items">1</td>' in html
    assert 'title="sports and sports: 2 items">2</td>' in html
    assert "<script>x</script>" not in html
    assert db.query(AnnotationLabel).count() == 4 and db.query(Item).count() >= 4
