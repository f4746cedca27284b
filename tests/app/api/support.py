"""Helpers for the REST API tests: callers with tokens, model versions (fake or trained), inference.

Setup helpers commit: an error response rolls the request session back to the last commit (the
`db` fixture still rolls everything back after the test).

``fake_version`` writes a small artifact directory by hand (no torch): enough for download, ETag
and card tests. ``trained_version`` trains a real adapter on the tiny BERT (about a second) and
writes it with the ML core, for the tests that check predictions; ``trained_multilabel_version``
does the same for a multi-label project (sigmoid outputs, thresholds tuned on a dev split).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ADMIN, ROLE_LEAD, ModelVersion, Project, User
from app.domain.model_versions import (
    next_version_number,
    register_version,
    relative_artifact_path,
    switch_current,
)
from app.domain.projects import get_labels
from tests.factories import make_project, make_token, make_user

CARD = """---
base_model: /models/tiny
base_model_sha256: abc123
adapter_type: lora
labels: [positive, negative]
dev_metrics: {accuracy: 0.9, macro_f1: 0.88}
---

# lora adapter
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Caller:
    """A user with a token, and a client that sends it."""

    user: User
    token: str
    client: TestClient

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers={**bearer(self.token), **kw.pop("headers", {})}, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.client.post(url, headers={**bearer(self.token), **kw.pop("headers", {})}, **kw)

    def request(self, method: str, url: str, **kw: Any) -> Any:
        headers = {**bearer(self.token), **kw.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kw)


def caller(
    app: FastAPI,
    db: Session,
    *,
    role: str = ROLE_LEAD,
    scopes: Sequence[str] = ("read", "annotate", "admin"),
    project: Project | None = None,
    user: User | None = None,
) -> Caller:
    who = user or make_user(db, role=role)
    token = make_token(db, who, scopes=scopes, project=project)
    db.commit()  # an error response rolls the request's session back; keep the setup
    return Caller(user=who, token=token, client=TestClient(app))


def lead_with_project(
    app: FastAPI, db: Session, *, labels: Sequence[str] = ("positive", "negative")
) -> tuple[Caller, Project]:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=labels)
    return caller(app, db, user=lead), project


def admin_caller(app: FastAPI, db: Session) -> Caller:
    return caller(app, db, role=ROLE_ADMIN)


def fake_version(
    db: Session,
    settings: Settings,
    project: Project,
    *,
    card: str = CARD,
    make_current: bool = True,
) -> ModelVersion:
    """A hand-written artifact directory (valid layout, fake weights) registered as a version."""
    number = next_version_number(db, project.id)
    root = settings.artifacts / "projects" / str(project.id) / "versions" / f"v{number:04d}-t"
    (root / "adapter").mkdir(parents=True)
    (root / "tapestry.json").write_text(json.dumps({"format": 1, "kind": "lora"}))
    (root / "labels.json").write_text(json.dumps({"labels": ["positive", "negative"]}))
    (root / "adapter" / "adapter_model.safetensors").write_bytes(secrets.token_bytes(256))
    (root / "README.md").write_text(card)
    row = register_version(
        db,
        project.id,
        version=number,
        run_id=None,
        data_version=project.data_version,
        artifact_path=relative_artifact_path(root, settings),
        sha256=secrets.token_hex(32),
        adapter_kind="lora",
    )
    if make_current:
        switch_current(db, project.id, row.id, settings=settings)
    db.commit()
    return row


def trained_version(
    db: Session,
    settings: Settings,
    project: Project,
    base: Path,
    *,
    kind: str = "lora",
    seed: int = 0,
    make_current: bool = True,
) -> ModelVersion:
    """Train a real adapter on the tiny BERT for the project's labels and register it."""
    from contract.adapter_config import AdapterConfig
    from tests.worker.ml.tiny import make_corpus
    from worker.ml.training import TrainConfig, train_classifier

    names = [label.name for label in get_labels(db, project.id)]
    texts, labels = make_corpus(30, seed=seed)
    result = train_classifier(
        texts,
        [y % len(names) for y in labels],
        label_names=names,
        base_model=str(base),
        adapter=AdapterConfig(kind=kind, r=4),  # type: ignore[arg-type]
        config=TrainConfig(epochs=2, batch_size=8, device="cpu", seed=seed),
    )
    return _register_trained(db, settings, project, result.classifier, kind, make_current)


MULTILABEL_DEV = 21
"""Items of :func:`trained_multilabel_version`'s corpus held out to tune the thresholds on."""


def trained_multilabel_version(
    db: Session,
    settings: Settings,
    project: Project,
    base: Path,
    *,
    kind: str = "lora",
    seed: int = 0,
    make_current: bool = True,
) -> ModelVersion:
    """Train a real multi-label adapter (sigmoid outputs, binary cross-entropy) on the tiny BERT
    for the project's labels, with a dev split so that each label's threshold is tuned there
    (not the default 0.5), and register it. Needs a project with at least three labels."""
    from contract.adapter_config import AdapterConfig
    from tests.worker.ml.tiny import make_multilabel_corpus
    from worker.ml.training import TrainConfig, train_classifier

    names = [label.name for label in get_labels(db, project.id)]
    if len(names) < 3:
        raise ValueError("the multi-label corpus has three topics: give the project 3 labels")
    texts, sets = make_multilabel_corpus(84, seed=2)
    adapter = (AdapterConfig(kind="prompt", num_virtual_tokens=4) if kind == "prompt"
               else AdapterConfig(kind=kind, r=4))  # type: ignore[arg-type]
    result = train_classifier(
        texts[MULTILABEL_DEV:],
        sets[MULTILABEL_DEV:],
        label_names=names,
        base_model=str(base),
        adapter=adapter,
        config=TrainConfig(epochs=8, patience=8, batch_size=8, lr_adapter=1e-2, lr_head=1e-2,
                           device="cpu", seed=seed),
        dev=(texts[:MULTILABEL_DEV], sets[:MULTILABEL_DEV]),
        multi_label=True,
    )
    return _register_trained(db, settings, project, result.classifier, kind, make_current)


def _register_trained(
    db: Session, settings: Settings, project: Project, classifier: Any, kind: str,
    make_current: bool,
) -> ModelVersion:
    """Write a trained classifier's artifact the way a round does and register it."""
    from worker.ml.artifacts import write_artifact
    from worker.tasks.artifact_store import tree_sha256

    number = next_version_number(db, project.id)
    root = settings.artifacts / "projects" / str(project.id) / "versions" / f"v{number:04d}-t"
    write_artifact(classifier, root)
    row = register_version(
        db,
        project.id,
        version=number,
        run_id=None,
        data_version=project.data_version,
        artifact_path=relative_artifact_path(root, settings),
        sha256=tree_sha256(root),
        adapter_kind=kind,
    )
    if make_current:
        switch_current(db, project.id, row.id, settings=settings)
    db.commit()
    return row


class InProcessInference:
    """Runs the real ``inference.predict`` body in this process (no broker, no worker)."""

    def __init__(self, settings: Settings) -> None:
        from worker.ml.adapter_router import AdapterRouter

        self.settings = settings
        self.router = AdapterRouter(device="cpu")
        self.requests: list[dict[str, Any]] = []

    def predict(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        from worker.tasks.inference import predict_body

        self.requests.append(request)
        return predict_body(json.loads(json.dumps(request)), self.router, self.settings)
