"""The lead dashboard over HTTP: plots with data, settings forms, the adapter card, access."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, ModelVersion, Project
from tests.app.domain.annotation_data import add_rounds
from tests.factories import login_client, make_project


def _lead(app: FastAPI, db: Session) -> tuple[Project, object]:
    project = make_project(db, labels=("sports", "finance", "science"))
    client = login_client(app, db, role=ROLE_LEAD, project=project)
    return project, client


def test_dashboard_draws_the_learning_curve_confusion_and_stop_advice(
    app: FastAPI, db: Session
) -> None:
    project, client = _lead(app, db)
    add_rounds(db, project, [(100, 0.6, 0.52), (200, 0.7, 0.64), (300, 0.74, 0.7)], stop=True)
    page = client.get(f"/projects/{project.id}/dashboard")  # type: ignore[attr-defined]
    assert page.status_code == 200
    polylines = re.findall(r'<polyline class="line-(\w+)" points="([^"]+)"', page.text)
    assert [name for name, _ in polylines] == ["f1", "acc"]
    assert all(len(points.split()) == 3 for _, points in polylines)
    assert page.text.count('<td class="diag"') == 3  # 3x3 matrix diagonal
    assert "Consider stopping" in page.text and "per 100 labels" in page.text
    assert "0.700" in page.text  # latest macro-F1


def test_empty_dashboard_explains_what_will_appear(app: FastAPI, db: Session) -> None:
    project, client = _lead(app, db)
    page = client.get(f"/projects/{project.id}/dashboard")  # type: ignore[attr-defined]
    assert page.status_code == 200
    assert "after the first retrain" in page.text and "<polyline" not in page.text


def test_stop_and_resume(app: FastAPI, db: Session) -> None:
    project, client = _lead(app, db)
    client.post(f"/projects/{project.id}/dashboard/stop", data={"stopped": "true"})  # type: ignore[attr-defined]
    assert project.stopped
    client.post(f"/projects/{project.id}/dashboard/stop", data={"stopped": "false"})  # type: ignore[attr-defined]
    assert not project.stopped


def test_adapter_card_is_shown_as_a_table_and_escaped_text(
    app: FastAPI, db: Session, settings: Settings, tmp_path: Path
) -> None:
    project, client = _lead(app, db)
    artifact = tmp_path / "v1"
    artifact.mkdir()
    (artifact / "tapestry.json").write_text("{}")
    (artifact / "README.md").write_text(
        "---\nadapter_type: lora\nadapter_config: {r: 8}\n---\n\n"
        "# Card\n<script>alert(1)</script> <img src=x onerror=alert(1)>\n"
    )
    version = ModelVersion(project_id=project.id, version=1, artifact_path=str(artifact),
                           adapter_kind="lora", labels_used=120)
    db.add(version)
    db.flush()
    project.current_model_version_id = version.id
    page = client.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    assert "adapter_config.r" in page and "v1" in page
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_annotators_cannot_reach_the_dashboard_or_its_settings(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    client = login_client(app, db, role=ROLE_ANNOTATOR, project=project)
    budget = project.label_budget
    assert client.get(f"/projects/{project.id}/dashboard").status_code == 403
    response = client.post(f"/projects/{project.id}/dashboard/stop", data={"stopped": "true"})
    assert response.status_code == 403
    assert project.label_budget == budget and not project.stopped
