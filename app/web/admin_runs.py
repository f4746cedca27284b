"""Admin pages for one project's machinery: training runs with live progress, model versions.

A running run is shown by a fragment that re-polls itself every second (htmx ``load delay:1s``)
until the run ends, then stops polling: no page-wide timers, no websockets.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.db.models import RUN_KINDS, RUN_QUEUE, RUN_RETRAIN, RUN_TAPT
from app.deps import (
    AdminUser,
    IdPath,
    ProjectAdmin,
    ProjectContext,
    SessionDep,
    SettingsDep,
)
from app.domain import adapter_card, model_versions, runs
from app.domain.adapters import adapter_zip, artifact_of
from app.domain.admin import list_projects
from app.errors import InvalidInput, NotFound, is_htmx_request
from app.web.forms import FormDep, form_int, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)

KIND_TITLES = {RUN_TAPT: "TAPT (continued pretraining)", RUN_RETRAIN: "Retrain adapter",
               RUN_QUEUE: "Recompute queue"}
MAX_TAPT_STEPS = 100_000


def _runs_url(project_id: int) -> str:
    return f"/admin/projects/{project_id}/runs"


def _project_run(db: Session, access: ProjectContext, run_id: int) -> runs.RunProgress:
    progress = runs.run_progress(db, run_id, include_error=True)
    if progress.project_id != access.project.id:
        raise runs.RunNotFound(run_id)
    return progress


@router.get("/admin/projects")
def projects_page(request: Request, db: SessionDep, _caller: AdminUser) -> Response:
    rows = [{"project": p, "active": runs.active_runs(db, p.id),
             "current": model_versions.current_version(db, p.id)} for p in list_projects(db)]
    return render_page(request, "admin/projects.html", {"section": "projects", "rows": rows})


@router.get("/admin/projects/{project_id}/runs")
def runs_page(request: Request, db: SessionDep, access: ProjectAdmin) -> Response:
    project = access.project
    history = runs.list_runs(db, project.id, limit=50)
    context: dict[str, Any] = {
        "section": "projects",
        "project": project,
        "active": "runs",
        "can_lead": True,
        "kinds": KIND_TITLES,
        "detail": False,
        "live": [runs.RunProgress.of(r, include_error=True) for r in history
                 if r.status in ("queued", "running")],
        "history": [runs.RunProgress.of(r, include_error=True) for r in history],
    }
    return render_page(request, "admin/runs.html", context)


@router.post("/admin/projects/{project_id}/runs")
def launch_run(request: Request, db: SessionDep, access: ProjectAdmin, form: FormDep) -> Response:
    kind = form_str(form, "kind")
    if kind not in RUN_KINDS:
        raise InvalidInput(f"Unknown run kind {kind!r}; use one of {', '.join(RUN_KINDS)}.")
    who = access.user
    reason = f"launched by {who.email}"
    if kind == RUN_TAPT:
        steps = form_int(form, "max_steps", 0)
        if not 0 <= steps <= MAX_TAPT_STEPS:
            raise InvalidInput(f"TAPT steps must be between 1 and {MAX_TAPT_STEPS:,}.")
        config = {"max_steps": steps} if steps else None
        run = runs.request_tapt(db, access.project, requested_by=who, reason=reason,
                                config=config)
    elif kind == RUN_RETRAIN:
        run = runs.request_retrain(db, access.project, requested_by=who, reason=reason,
                                   force=form_str(form, "force") == "on")
    else:
        run = runs.request_queue_recompute(db, access.project, requested_by=who, reason=reason)
    flash(request, f"{KIND_TITLES[kind]} requested (run {run.id}).", "success")
    return RedirectResponse(f"{_runs_url(access.project.id)}/{run.id}", status_code=303)


@router.get("/admin/projects/{project_id}/runs/{run_id}")
def run_page(request: Request, db: SessionDep, access: ProjectAdmin, run_id: IdPath) -> Response:
    run = _project_run(db, access, run_id)
    context = {"section": "projects", "project": access.project, "active": "runs",
               "can_lead": True, "run": run, "kinds": KIND_TITLES, "detail": True}
    return render_page(request, "admin/run.html", context)


@router.get("/admin/projects/{project_id}/runs/{run_id}/progress")
def run_progress(request: Request, db: SessionDep, access: ProjectAdmin, run_id: IdPath,
                 detail: bool = False) -> Response:
    """The run's live fragment: the progress bar, or (``detail``) bar, details and log."""
    run = _project_run(db, access, run_id)
    context = {"project": access.project, "run": run, "kinds": KIND_TITLES, "detail": detail}
    template = "admin/_run_detail.html" if detail else "admin/_run_progress.html"
    return render_page(request, template, context)


@router.post("/admin/projects/{project_id}/runs/{run_id}/cancel")
def cancel_run(request: Request, db: SessionDep, access: ProjectAdmin, run_id: IdPath,
               detail: bool = False) -> Response:
    _project_run(db, access, run_id)
    runs.cancel_run(db, run_id)
    if is_htmx_request(request):
        return run_progress(request, db, access, run_id, detail=detail)
    flash(request, f"Cancel requested for run {run_id}.", "success")
    return RedirectResponse(f"{_runs_url(access.project.id)}/{run_id}", status_code=303)


@router.get("/admin/projects/{project_id}/models")
def models_page(request: Request, db: SessionDep, settings: SettingsDep,
                access: ProjectAdmin) -> Response:
    project = access.project
    versions = model_versions.list_versions(db, project.id)
    current = model_versions.current_version(db, project.id)
    context = {
        "section": "projects",
        "project": project,
        "active": "models",
        "can_lead": True,
        "versions": [(v, model_versions.artifact_is_complete(v, settings)) for v in versions],
        "current": current,
        "card": adapter_card.read_card(current, settings) if current else None,
    }
    return render_page(request, "admin/models.html", context)


@router.post("/admin/projects/{project_id}/models/{version_id}/promote")
def promote(request: Request, db: SessionDep, settings: SettingsDep, access: ProjectAdmin,
            version_id: IdPath) -> Response:
    version = model_versions.promote(db, access.project.id, version_id, settings=settings)
    flash(request, f"Model v{version.version} is now current; the queue is being rebuilt.",
          "success")
    return RedirectResponse(f"/admin/projects/{access.project.id}/models", status_code=303)


@router.post("/admin/projects/{project_id}/models/rollback")
def rollback(request: Request, db: SessionDep, settings: SettingsDep,
             access: ProjectAdmin) -> Response:
    version = model_versions.rollback(db, access.project.id, settings=settings)
    flash(request, f"Rolled back to model v{version.version}.", "success")
    return RedirectResponse(f"/admin/projects/{access.project.id}/models", status_code=303)


@router.get("/admin/projects/{project_id}/models/{version_id}/download")
def download(db: SessionDep, settings: SettingsDep, access: ProjectAdmin,
             version_id: IdPath) -> Response:
    """The version's artifact as a zip, through the same domain function as the REST API."""
    version = model_versions.get_version(db, access.project.id, version_id)
    artifact = artifact_of(version, settings)
    path = adapter_zip(artifact, settings)
    if not path.is_file():
        raise NotFound("The adapter archive could not be built.")
    return FileResponse(path, media_type="application/zip", filename=artifact.download_name)
