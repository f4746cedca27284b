"""Schemathesis fuzzes EVERY operation of the app's own OpenAPI schema (``/api/v1`` and
``/healthz``; the HTML pages are not in the schema), authenticated, with rate limits raised.

The app runs in-process (ASGI) on its own SQLite file with a seeded project (items, labels,
annotations, a model version with an artifact on disk, a queue entry, a run) and an admin's
token with every scope, so generated requests reach real code paths, not just 401s. Every
response must be a non-5xx that matches its documented status, content type and schema.
Examples per operation are bounded (``MAX_EXAMPLES``) so the run takes a few minutes on 2 cores.

``/predict`` answers through a stub inference client (no torch here): the worker path is covered
by ``test_adapter_client.py``; what is fuzzed is the request validation and error handling.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import allow_header_conformance, positive_data_acceptance

from app.config import Settings
from app.db.base import Base
from app.db.models import (
    ROLE_ADMIN,
    Annotation,
    Label,
    ModelVersion,
    Project,
    QueueEntry,
    TrainingRun,
)
from app.db.session import make_engine, session_factory
from app.domain.model_versions import register_version, switch_current
from app.main import create_app
from tests.factories import make_items, make_project, make_token, make_user

MAX_EXAMPLES = int(os.environ.get("TAPESTRY_FUZZ_EXAMPLES", "25"))  # more for a deeper local run
ARTIFACT_CARD = "---\nadapter_type: lora\nlabels: [positive, negative]\n---\n\n# card\n"


class StubInference:
    """Answers like the inference worker would (uniform probabilities), without torch."""

    def predict(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        names = ["positive", "negative"]
        texts = request["texts"]
        return {
            "label_names": names,
            "labels": [names[0]] * len(texts),
            "probabilities": [[0.5, 0.5] for _ in texts],
        }


def _write_artifact(root: Path) -> None:
    (root / "adapter").mkdir(parents=True)
    (root / "tapestry.json").write_text(json.dumps({"format": 1, "kind": "lora"}))
    (root / "README.md").write_text(ARTIFACT_CARD)
    (root / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 64)


def _build() -> tuple[Any, str]:
    data_dir = Path(tempfile.mkdtemp(prefix="tapestry-fuzz-"))
    app_settings = Settings(
        data_dir=data_dir,
        secret_key=secrets.token_urlsafe(48),
        write_rate_limit_per_minute=1_000_000,
        inference_timeout_seconds=1.0,
    )
    engine = make_engine(app_settings.database_url)
    Base.metadata.create_all(engine)
    with session_factory(engine)() as db:
        admin = make_user(db, role=ROLE_ADMIN)
        project = make_project(db, lead=admin)
        items = make_items(db, project, [f"seeded text number {i}" for i in range(6)])
        label = db.query(Label).filter_by(project_id=project.id).first()
        assert label is not None
        db.add(Annotation(project_id=project.id, item_id=items[0].id, annotator_id=admin.id,
                          label_id=label.id, source="seed"))
        _write_artifact(app_settings.artifacts / "projects" / "1" / "versions" / "v0001")
        version = register_version(db, project.id, version=1, run_id=None, data_version=0,
                                   artifact_path="projects/1/versions/v0001", sha256="ab" * 32,
                                   adapter_kind="lora")
        switch_current(db, project.id, version.id, settings=app_settings)
        db.add(QueueEntry(project_id=project.id, queue_version=project.queue_version,
                          item_id=items[1].id, rank=0, score=0.9, reason="uncertain"))
        db.add(TrainingRun(project_id=project.id, kind="retrain"))
        token = make_token(db, admin, scopes=("read", "annotate", "admin"))
        db.commit()
        assert db.get(ModelVersion, version.id) is not None and db.get(Project, project.id)
    application = create_app(app_settings)
    application.state.inference_client = StubInference()
    return application, token


# Schema-valid requests may still be refused for what the schema cannot say (an item id that
# does not exist, a label outside the project's label set, a file that is not a Label Studio
# export): documented 4xx answers, so they count as accepted handling. 5xx never does.
CONFIG = SchemathesisConfig.from_dict({
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "304", "401", "403", "404", "409", "413", "422", "429"]
        }
    }
})
APP, TOKEN = _build()
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP, config=CONFIG)


def test_the_schema_run_covers_every_operation() -> None:
    """Nothing is filtered out: every path and method of the schema is a test case above."""
    document = APP.openapi()
    operations = {(path, method.upper()) for path, methods in document["paths"].items()
                  for method in methods}
    fuzzed = {(op.path, op.method.upper()) for op in (r.ok() for r in schema.get_all_operations())}
    assert fuzzed == operations and len(operations) > 20


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_operations_never_fail_and_match_their_schema(case: Any) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = case.call(headers=headers)
    # Starlette answers OPTIONS/405 with the methods of the FIRST route matching the path
    # (FastAPI registers GET and POST of one path as two routes), so `Allow` under-reports.
    # A framework limitation, unrelated to what the API does; every other check applies.
    excluded: list[Any] = [allow_header_conformance]
    if is_documented_refusal(case, response):
        excluded += [not_a_server_error, positive_data_acceptance]
    case.validate_response(response, headers=headers, excluded_checks=excluded)


def is_documented_refusal(case: Any, response: Any) -> bool:
    """A 501 ``not_supported`` that the operation documents: a feature the project cannot use
    yet (gold items in a multi-label project, say), refused with a message that names it. It
    counts as handled, like the documented 4xx answers; any other 5xx, and a 501 the operation
    does not document, still fail (the status and schema checks apply to it as to any answer)."""
    if response.status_code != 501:
        return False
    documented = case.operation.definition.raw.get("responses", {})
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return "501" in documented and code == "not_supported"
