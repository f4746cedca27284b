"""A project lead who is not an admin runs the project on its own pages: runs with live progress,
TAPT with a time estimate, model versions (promote, roll back, download), one settings page with
every setting, members. Annotators get 403; another project's lead and objects get 404."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import utcnow
from app.db.models import (
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    RUN_TAPT,
    Membership,
    ModelVersion,
    Project,
    TrainingRun,
)
from app.domain.projects import get_labels
from app.jobs import Job, recording_jobs
from tests.factories import login_client, make_project, make_user

HTMX = {"HX-Request": "true"}


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


def _lead(app: FastAPI, db: Session) -> tuple[Project, object]:
    """A project whose only lead is a user with the global role "lead" (not an admin)."""
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("sports", "finance", "science"))
    return project, login_client(app, user=lead)


def test_lead_launches_a_retrain_and_watches_its_progress(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    project, lead = _lead(app, db)
    page = lead.get(f"/projects/{project.id}/runs")  # type: ignore[attr-defined]
    assert page.status_code == 200 and "Run TAPT" in page.text and "Retrain adapter" in page.text
    budgets = " ".join(page.text.split())  # the device defaults, as app.domain.tapt has them
    assert "200 steps on a CPU worker; on a GPU 3 passes over the pool, within 3,000–20,000" \
        in budgets and "never starts TAPT by itself" in budgets
    response = lead.post(f"/projects/{project.id}/runs", data={"kind": "retrain"},  # type: ignore[attr-defined]
                         follow_redirects=False)
    assert response.status_code == 303
    run = db.scalars(select(TrainingRun)).one()
    assert run.kind == RUN_RETRAIN
    assert response.headers["location"] == f"/projects/{project.id}/runs/{run.id}"
    run.status, run.step, run.total = "running", 30, 120
    run.metrics = {"loss": 0.4321, "epoch": 2}
    run.eta_seconds = 95.0
    url = f"/projects/{project.id}/runs/{run.id}/progress"
    progress = lead.get(url, headers=HTMX)  # type: ignore[attr-defined]
    assert progress.status_code == 200
    assert f'hx-get="{url}"' in progress.text and 'hx-trigger="load delay:1s"' in progress.text
    assert "30 / 120" in progress.text and "0.4321" in progress.text and "1m 35s" in progress.text
    detail = lead.get(url + "?detail=true", headers=HTMX)  # type: ignore[attr-defined]
    assert 'id="run-detail"' in detail.text and detail.text.count("hx-trigger") == 1
    run.status, run.step = RUN_SUCCEEDED, 120
    done = lead.get(url, headers=HTMX)  # type: ignore[attr-defined]
    assert "hx-trigger" not in done.text and "succeeded" in done.text
    assert f"#{run.id}" in lead.get(f"/projects/{project.id}/runs").text  # type: ignore[attr-defined]


def test_background_pool_scoring_shows_on_the_runs_page_but_cannot_be_launched(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    from app.domain.runs import request_pool_scoring

    project, lead = _lead(app, db)
    run = request_pool_scoring(db, project.id, 3, reason="queue v2 scored candidates only")
    db.commit()
    page = lead.get(f"/projects/{project.id}/runs/{run.id}")  # type: ignore[attr-defined]
    assert page.status_code == 200 and "Score the rest of the pool" in page.text
    refused = lead.post(f"/projects/{project.id}/runs", data={"kind": "score_pool"})  # type: ignore[attr-defined]
    assert refused.status_code == 422 and "Unknown run kind" in refused.text
    assert db.scalars(select(TrainingRun)).all() == [run]


def test_tapt_launch_records_its_steps_and_shows_a_measured_estimate(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    project, lead = _lead(app, db)
    estimate = lead.get(f"/projects/{project.id}/runs/tapt-estimate?max_steps=40",  # type: ignore[attr-defined]
                        headers=HTMX)
    assert estimate.status_code == 200 and "no time estimate yet" in estimate.text
    lead.post(f"/projects/{project.id}/runs", data={"kind": "tapt", "max_steps": "40"})  # type: ignore[attr-defined]
    run = db.scalars(select(TrainingRun).where(TrainingRun.kind == RUN_TAPT)).one()
    assert run.params["tapt_config"] == {"max_steps": 40}
    start = utcnow()
    run.status, run.step, run.total = RUN_SUCCEEDED, 40, 40
    run.started_at, run.finished_at = start, start + timedelta(seconds=100)
    run.timings = {"tapt_seconds": 100.0, "tapt_steps": 40, "tapt_tokens_per_step": 16 * 128,
                   "tapt_on_gpu": False}
    db.flush()
    estimate = lead.get(f"/projects/{project.id}/runs/tapt-estimate?max_steps=1000",  # type: ignore[attr-defined]
                        headers=HTMX)
    assert "1,000 steps ≈ <strong>42 min</strong> on this machine" in estimate.text
    assert "2.50 s/step" in estimate.text
    page = lead.get(f"/projects/{project.id}/runs").text  # type: ignore[attr-defined]
    assert "200 steps ≈ <strong>" in page and 'hx-get="/projects/' in page  # CPU default
    lead.post(f"/projects/{project.id}/runs", data={"kind": "tapt", "max_steps": ""})  # type: ignore[attr-defined]
    newest = db.scalars(select(TrainingRun).where(TrainingRun.kind == RUN_TAPT)
                        .order_by(TrainingRun.id.desc())).first()
    assert newest is not None and newest.id != run.id
    assert "tapt_config" not in newest.params  # an empty box leaves the worker's default
    refused = lead.post(f"/projects/{project.id}/runs",  # type: ignore[attr-defined]
                        data={"kind": "tapt", "max_steps": "-3"})
    assert refused.status_code == 422 and "between 1 and" in refused.text
    assert lead.get(f"/projects/{project.id}/runs/tapt-estimate?max_steps=abc",  # type: ignore[attr-defined]
                    headers=HTMX).status_code == 422


def test_a_tapt_time_budget_fits_the_estimate_and_travels_with_the_run(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    project, lead = _lead(app, db)
    url = f"/projects/{project.id}/runs/tapt-estimate"
    unmeasured = lead.get(f"{url}?max_steps=&max_minutes=15", headers=HTMX)  # type: ignore[attr-defined]
    assert "stopping within 15 min" in unmeasured.text
    assert "fits its steps to the 15 min budget" in unmeasured.text
    page = lead.get(f"/projects/{project.id}/runs").text  # type: ignore[attr-defined]
    assert 'name="max_minutes"' in page and 'hx-include="#tapt-steps, #tapt-minutes"' in page
    lead.post(f"/projects/{project.id}/runs",  # type: ignore[attr-defined]
              data={"kind": "tapt", "max_steps": "", "max_minutes": "15"})
    run = db.scalars(select(TrainingRun).where(TrainingRun.kind == RUN_TAPT)).one()
    assert run.params["tapt_config"] == {"max_minutes": 15}
    run.status = RUN_SUCCEEDED
    run.timings = {"tapt_seconds": 100.0, "tapt_steps": 40, "tapt_tokens_per_step": 16 * 128,
                   "tapt_on_gpu": False}
    db.flush()
    fitted = lead.get(f"{url}?max_steps=1000&max_minutes=10", headers=HTMX)  # type: ignore[attr-defined]
    assert "About 240 steps ≈ <strong>10 min</strong>" in fitted.text  # 600 s at 2.5 s a step
    assert "fitted to the 10 min budget" in fitted.text
    short = lead.get(f"{url}?max_steps=100&max_minutes=10", headers=HTMX)  # type: ignore[attr-defined]
    assert "100 steps ≈ <strong>4 min</strong>" in short.text  # the steps end first
    for bad in ("-1", "20000", "soon"):
        refused = lead.post(f"/projects/{project.id}/runs",  # type: ignore[attr-defined]
                            data={"kind": "tapt", "max_minutes": bad})
        assert refused.status_code == 422, bad
    assert db.scalars(select(TrainingRun).where(TrainingRun.kind == RUN_TAPT)).all() == [run]


def test_cancel_a_queued_run_and_show_its_error_log(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    project, lead = _lead(app, db)
    lead.post(f"/projects/{project.id}/runs", data={"kind": "tapt"})  # type: ignore[attr-defined]
    run = db.scalars(select(TrainingRun)).one()
    cancelled = lead.post(f"/projects/{project.id}/runs/{run.id}/cancel", headers=HTMX)  # type: ignore[attr-defined]
    assert cancelled.status_code == 200 and "cancelled" in cancelled.text
    run.error = "Traceback: <b>boom</b>"
    run.log_tail = "step 1 loss 9.1"
    page = lead.get(f"/projects/{project.id}/runs/{run.id}").text  # type: ignore[attr-defined]
    assert "&lt;b&gt;boom&lt;/b&gt;" in page and "step 1 loss 9.1" in page


def _artifact(root: Path, name: str) -> Path:
    path = root / name
    (path / "adapter").mkdir(parents=True)
    (path / "tapestry.json").write_text("{}")
    (path / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    (path / "README.md").write_text("---\nadapter_type: lora\n---\nbody\n")
    return path


def _versions(db: Session, settings: Settings, project: Project, count: int) -> list[ModelVersion]:
    versions = []
    for number in range(1, count + 1):
        path = _artifact(settings.artifacts, f"p{project.id}-v{number}")
        version = ModelVersion(project_id=project.id, version=number,
                               artifact_path=path.name, sha256=f"sha{number}-{project.id}")
        db.add(version)
        versions.append(version)
    db.flush()
    return versions


def test_lead_promotes_rolls_back_and_downloads(
    app: FastAPI, db: Session, settings: Settings, sent: list[Job]
) -> None:
    project, lead = _lead(app, db)
    versions = _versions(db, settings, project, 2)
    for version in versions:
        assert lead.post(f"/projects/{project.id}/models/{version.id}/promote",  # type: ignore[attr-defined]
                         follow_redirects=False).status_code == 303
    assert project.current_model_version_id == versions[1].id
    page = lead.get(f"/projects/{project.id}/models").text  # type: ignore[attr-defined]
    assert "current" in page and f"/projects/{project.id}/models/{versions[0].id}/download" in page
    lead.post(f"/projects/{project.id}/models/rollback")  # type: ignore[attr-defined]
    assert project.current_model_version_id == versions[0].id
    again = lead.post(f"/projects/{project.id}/models/rollback")  # type: ignore[attr-defined]
    assert again.status_code == 200 and "no earlier complete model version" in again.text
    assert project.current_model_version_id == versions[0].id
    download = lead.get(f"/projects/{project.id}/models/{versions[0].id}/download")  # type: ignore[attr-defined]
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert "tapestry.json" in names and "adapter/adapter_model.safetensors" in names
    run = TrainingRun(project_id=project.id, kind=RUN_RETRAIN, status=RUN_SUCCEEDED,
                      data_version=0, model_version_id=versions[1].id)
    db.add(run)
    db.flush()
    history = lead.get(f"/projects/{project.id}/runs").text  # type: ignore[attr-defined]
    row = history[history.index(f">#{run.id}</a>"):]
    assert "<td>v2</td>" in row[:400]


def test_other_projects_objects_answer_404(
    app: FastAPI, db: Session, settings: Settings, sent: list[Job]
) -> None:
    project, lead = _lead(app, db)
    other = make_project(db)
    version = _versions(db, settings, other, 1)[0]
    run = TrainingRun(project_id=other.id, kind=RUN_RETRAIN, status="queued", data_version=0)
    db.add(run)
    db.flush()
    base = f"/projects/{project.id}"
    for path in (f"{base}/models/{version.id}/download", f"{base}/runs/{run.id}",
                 f"{base}/runs/{run.id}/progress"):
        assert lead.get(path).status_code == 404, path  # type: ignore[attr-defined]
    for path in (f"{base}/models/{version.id}/promote", f"{base}/runs/{run.id}/cancel"):
        assert lead.post(path).status_code == 404, path  # type: ignore[attr-defined]
    assert other.current_model_version_id is None and run.status == "queued"
    assert lead.get(f"/projects/{other.id}/runs").status_code == 404  # type: ignore[attr-defined]


def test_annotators_cannot_reach_the_workspace(app: FastAPI, db: Session, sent: list[Job]) -> None:
    project = make_project(db)
    client = login_client(app, db, role=ROLE_ANNOTATOR, project=project)
    for path in ("runs", "models", "settings", "runs/tapt-estimate"):
        assert client.get(f"/projects/{project.id}/{path}").status_code == 403, path
    for path in ("runs", "models/rollback", "settings", "settings/budget", "settings/model",
                 "settings/labels", "members", "dashboard/budget"):
        response = client.post(f"/projects/{project.id}/{path}",
                               data={"kind": "retrain", "label_budget": "1", "email": "x@y.z"})
        assert response.status_code == 403, path
    assert db.scalars(select(TrainingRun)).first() is None


def test_one_settings_page_holds_every_setting(app: FastAPI, db: Session) -> None:
    project, lead = _lead(app, db)
    page = lead.get(f"/projects/{project.id}/settings").text  # type: ignore[attr-defined]
    for field in ("name", "labels", "guidelines", "annotations_per_item", "label_budget",
                  "batch_size", "reserve_percent", "stop_threshold", "auto_stop", "base_model",
                  "adapter_kind", "adapter_size", "strategy"):
        assert f'name="{field}"' in page, field
    for label in get_labels(db, project.id):
        assert f'name="color_{label.id}"' in page and f'name="shortcut_{label.id}"' in page
    assert f'action="/projects/{project.id}/members"' in page
    dashboard = lead.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    assert 'name="base_model"' not in dashboard  # model settings live on the settings page only


def _budget_form(page: str) -> str:
    start = page.index('id="budget-form"')
    return page[page.index("<div", start):page.index("</form>", start)]


def test_the_dashboard_changes_the_budget_through_the_same_form_and_bounds(
    app: FastAPI, db: Session
) -> None:
    project, lead = _lead(app, db)
    settings_page = lead.get(f"/projects/{project.id}/settings").text  # type: ignore[attr-defined]
    dashboard = lead.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    assert f'action="/projects/{project.id}/dashboard/budget"' in dashboard
    assert _budget_form(dashboard) == _budget_form(settings_page)  # same fields, same bounds
    form = {"label_budget": "700", "batch_size": "35", "reserve_percent": "20",
            "stop_threshold": "0.3"}
    response = lead.post(f"/projects/{project.id}/dashboard/budget", data=form,  # type: ignore[attr-defined]
                         follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/projects/{project.id}/dashboard#budget"
    assert (project.label_budget, project.batch_size, project.reserve_fraction,
            project.stop_threshold, project.auto_stop) == (700, 35, 0.2, 0.3, False)
    for field, value, message in (("batch_size", "0", "batch size"),
                                  ("label_budget", "10000001", "label budget"),
                                  ("reserve_percent", "80", "polish reserve")):
        from_dashboard = lead.post(f"/projects/{project.id}/dashboard/budget",  # type: ignore[attr-defined]
                                   data=form | {field: value})
        from_settings = lead.post(f"/projects/{project.id}/settings/budget",  # type: ignore[attr-defined]
                                  data=form | {field: value})
        assert from_dashboard.status_code == from_settings.status_code == 422, field
        assert message in from_dashboard.text and message in from_settings.text, field
        assert 'role="alert"' in from_dashboard.text
    assert (project.label_budget, project.batch_size) == (700, 35)  # nothing written


def test_lead_changes_general_settings_without_touching_the_budget(
    app: FastAPI, db: Session
) -> None:
    project, lead = _lead(app, db)
    project.label_budget, project.batch_size = 640, 40
    form = {"name": "Renamed", "labels": "sports\nfinance\nscience\nhealth",
            "guidelines": "Be quick.", "annotations_per_item": "2"}
    response = lead.post(f"/projects/{project.id}/settings", data=form,  # type: ignore[attr-defined]
                         follow_redirects=False)
    assert response.status_code == 303
    assert (project.name, project.guidelines, project.annotations_per_item) == (
        "Renamed", "Be quick.", 2)
    assert (project.label_budget, project.batch_size) == (640, 40)
    assert [label.name for label in get_labels(db, project.id)][-1] == "health"
    bad = lead.post(f"/projects/{project.id}/settings", data=form | {"labels": "one"})  # type: ignore[attr-defined]
    assert bad.status_code == 422 and "between 2 and" in bad.text and "Renamed" in bad.text


def test_lead_changes_budget_model_and_label_keys(app: FastAPI, db: Session) -> None:
    project, lead = _lead(app, db)
    form = {"label_budget": "640", "batch_size": "40", "reserve_percent": "10",
            "stop_threshold": "0.5", "auto_stop": "on"}
    response = lead.post(f"/projects/{project.id}/settings/budget", data=form,  # type: ignore[attr-defined]
                         follow_redirects=False)
    assert response.status_code == 303
    assert (project.label_budget, project.batch_size, project.reserve_fraction,
            project.stop_threshold, project.auto_stop) == (640, 40, 0.1, 0.5, True)
    bad = lead.post(f"/projects/{project.id}/settings/budget",  # type: ignore[attr-defined]
                    data=form | {"batch_size": "0"})
    assert bad.status_code == 422 and "batch size" in bad.text and project.batch_size == 40
    response = lead.post(f"/projects/{project.id}/settings/model",  # type: ignore[attr-defined]
                         data={"base_model": "minilm", "adapter_kind": "lora",
                               "adapter_size": "16", "strategy": "badge"},
                         follow_redirects=False)
    assert response.status_code == 303
    assert project.adapter_config["r"] == 16 and project.strategy == "badge"
    labels = get_labels(db, project.id)
    styles = {f"color_{label.id}": "#123456" for label in labels}
    styles |= {f"shortcut_{label.id}": key for label, key in zip(labels, "qwe", strict=True)}
    assert lead.post(f"/projects/{project.id}/settings/labels", data=styles,  # type: ignore[attr-defined]
                     follow_redirects=False).status_code == 303
    assert [label.shortcut for label in labels] == ["q", "w", "e"]
    styles[f"shortcut_{labels[0].id}"] = "s"
    refused = lead.post(f"/projects/{project.id}/settings/labels", data=styles)  # type: ignore[attr-defined]
    assert refused.status_code == 422 and "reserved" in refused.text
    assert labels[0].shortcut == "q"


def test_lead_adds_changes_and_removes_members_but_keeps_a_lead(
    app: FastAPI, db: Session
) -> None:
    project, lead = _lead(app, db)
    person = make_user(db, role=ROLE_LEAD)  # only global leads may lead a project
    base = f"/projects/{project.id}/members"
    lead.post(base, data={"email": person.email, "role": "annotator"})  # type: ignore[attr-defined]

    def role_of(user_id: int) -> str | None:
        return db.scalar(select(Membership.role).where(Membership.project_id == project.id,
                                                       Membership.user_id == user_id))

    assert role_of(person.id) == "annotator"
    lead.post(base, data={"email": person.email, "role": "lead"})  # type: ignore[attr-defined]
    assert role_of(person.id) == "lead"
    lead.post(f"{base}/{person.id}/remove")  # type: ignore[attr-defined]
    assert role_of(person.id) is None
    me = lead.user  # type: ignore[attr-defined]
    refused = lead.post(base, data={"email": me.email, "role": "annotator"})  # type: ignore[attr-defined]
    assert refused.status_code == 409 and "last lead" in refused.text
    assert role_of(me.id) == "lead"
    unknown = lead.post(base, data={"email": "nobody@example.org", "role": "annotator"})  # type: ignore[attr-defined]
    assert unknown.status_code == 404 and "an admin creates accounts" in unknown.text


def test_project_tabs_lead_to_the_workspace_for_a_lead(app: FastAPI, db: Session) -> None:
    project, lead = _lead(app, db)
    page = lead.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    for tab in ("runs", "models", "settings", "dashboard"):
        assert f'href="/projects/{project.id}/{tab}"' in page, tab
    assert "/admin/" not in page
