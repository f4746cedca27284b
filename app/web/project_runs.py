"""A project's training runs, for its leads (and admins): launch TAPT, a retrain or a queue
rebuild, and watch each run's live progress. A multi-label project has no queue rebuild to launch
(its live head builds the queue); its retrain trains a multi-label adapter.

A running run is shown by a fragment that re-polls itself every second (htmx ``load delay:1s``)
until the run ends, then stops polling: no page-wide timers, no websockets. Every route goes
through the same domain functions as the REST API (:mod:`app.domain.runs`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.db.models import RUN_LAUNCHABLE, RUN_QUEUE, RUN_RETRAIN, RUN_SCORE, RUN_TAPT, Project
from app.deps import IdPath, ProjectContext, ProjectLead, SessionDep
from app.domain import model_versions, runs, tapt
from app.domain.annotation.label_sets import is_multi_label
from app.error_handlers import is_htmx_request
from app.errors import InvalidInput
from app.web.forms import FormDep, form_int, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)

KIND_TITLES = {RUN_TAPT: "TAPT (continued pretraining)", RUN_RETRAIN: "Retrain adapter",
               RUN_QUEUE: "Recompute queue", RUN_SCORE: "Score the rest of the pool"}
MAX_TAPT_STEPS = int(tapt.BUDGET_BOUNDS["max_steps"][2])
MAX_TAPT_MINUTES = int(tapt.BUDGET_BOUNDS["max_minutes"][2])  # as worker.ml.tapt.MAX_MINUTES


def _runs_url(project_id: int) -> str:
    return f"/projects/{project_id}/runs"


def _overrides(steps: int | None, minutes: int | None) -> dict[str, Any] | None:
    overrides = ({"max_steps": steps} if steps else {}) | (
        {"max_minutes": minutes} if minutes else {})
    return overrides or None


def _estimate_context(db: Session, project: Project, steps: int | None,
                      minutes: int | None = None) -> dict[str, Any]:
    """``steps`` None: the worker's default budget for the device the estimate was measured on;
    ``minutes``: the lead's time budget, which the steps are fitted to."""
    estimate = tapt.estimate_tapt_seconds(db, project, steps, _overrides(steps, minutes))
    return {"estimate": estimate, "duration": tapt.format_duration, "minutes": minutes}


def _project_run(db: Session, access: ProjectContext, run_id: int) -> runs.RunProgress:
    return runs.run_progress(db, access.project.id, run_id, include_error=True)


def _steps(raw: int) -> int | None:
    """The lead's step budget; None (an empty box) leaves the worker's default."""
    if not 0 <= raw <= MAX_TAPT_STEPS:
        raise InvalidInput(f"TAPT steps must be between 1 and {MAX_TAPT_STEPS:,}.",
                           details={"field": "max_steps"})
    return raw or None


def _minutes(raw: int) -> int | None:
    """The lead's time budget in minutes; None (an empty box) for none."""
    if not 0 <= raw <= MAX_TAPT_MINUTES:
        raise InvalidInput(f"The TAPT time budget must be between 1 and {MAX_TAPT_MINUTES:,} "
                           "minutes.", details={"field": "max_minutes"})
    return raw or None


@router.get("/projects/{project_id}/runs")
def runs_page(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    project = access.project
    history = [runs.RunProgress.of(r, include_error=True)
               for r in runs.list_runs(db, project.id, limit=50)]
    context: dict[str, Any] = {
        "project": project,
        "active": "runs",
        "can_lead": True,
        "kinds": KIND_TITLES,
        "detail": False,
        "live": [r for r in history if r.active],
        "history": history,
        "version_of": {v.id: v.version for v in model_versions.list_versions(db, project.id)},
        "cpu_steps": tapt.CPU_DEFAULTS["max_steps"],
        "gpu_steps": tapt.GPU_DEFAULTS["max_steps"],
        "gpu_min_steps": tapt.GPU_DEFAULTS["min_steps"],
        "gpu_epochs": tapt.GPU_DEFAULTS["epochs"],
        "max_steps": MAX_TAPT_STEPS,
        "max_minutes": MAX_TAPT_MINUTES,
        "multi_label": is_multi_label(project),
    } | _estimate_context(db, project, None)
    return render_page(request, "runs/page.html", context)


@router.get("/projects/{project_id}/runs/tapt-estimate")
def tapt_estimate_fragment(request: Request, db: SessionDep, access: ProjectLead,
                           max_steps: str = Query("", max_length=12),
                           max_minutes: str = Query("", max_length=12)) -> Response:
    """The estimate next to the steps and minutes boxes, re-asked by htmx as the lead types."""
    steps = _steps(form_int({"max_steps": max_steps}, "max_steps", 0))
    minutes = _minutes(form_int({"max_minutes": max_minutes}, "max_minutes", 0))
    context = _estimate_context(db, access.project, steps, minutes)
    return render_page(request, "runs/_tapt_estimate.html", context)


@router.post("/projects/{project_id}/runs")
def launch_run(request: Request, db: SessionDep, access: ProjectLead, form: FormDep) -> Response:
    kind = form_str(form, "kind")
    if kind not in RUN_LAUNCHABLE:
        raise InvalidInput(f"Unknown run kind {kind!r}; use one of {', '.join(RUN_LAUNCHABLE)}.")
    who = access.user
    reason = f"launched by {who.email}"
    if kind == RUN_TAPT:
        steps = _steps(form_int(form, "max_steps", 0))
        minutes = _minutes(form_int(form, "max_minutes", 0))
        run = runs.request_tapt(db, access.project, requested_by=who, reason=reason,
                                config=_overrides(steps, minutes))
    elif kind == RUN_RETRAIN:
        run = runs.request_retrain(db, access.project, requested_by=who, reason=reason,
                                   force=form_str(form, "force") == "on")
    else:
        run = runs.request_queue_recompute(db, access.project, requested_by=who, reason=reason)
    flash(request, f"{KIND_TITLES[kind]} requested (run {run.id}).", "success")
    return RedirectResponse(f"{_runs_url(access.project.id)}/{run.id}", status_code=303)


@router.get("/projects/{project_id}/runs/{run_id}")
def run_page(request: Request, db: SessionDep, access: ProjectLead, run_id: IdPath) -> Response:
    run = _project_run(db, access, run_id)
    context = {"project": access.project, "active": "runs", "can_lead": True, "run": run,
               "kinds": KIND_TITLES, "detail": True}
    return render_page(request, "runs/run.html", context)


@router.get("/projects/{project_id}/runs/{run_id}/progress")
def run_progress(request: Request, db: SessionDep, access: ProjectLead, run_id: IdPath,
                 detail: bool = False) -> Response:
    """The run's live fragment: the progress bar, or (``detail``) bar, details and log."""
    run = _project_run(db, access, run_id)
    context = {"project": access.project, "run": run, "kinds": KIND_TITLES, "detail": detail}
    template = "runs/_detail.html" if detail else "runs/_progress.html"
    return render_page(request, template, context)


@router.post("/projects/{project_id}/runs/{run_id}/cancel")
def cancel_run(request: Request, db: SessionDep, access: ProjectLead, run_id: IdPath,
               detail: bool = False) -> Response:
    runs.cancel_run(db, access.project.id, run_id)
    if is_htmx_request(request):
        return run_progress(request, db, access, run_id, detail=detail)
    flash(request, f"Cancel requested for run {run_id}.", "success")
    return RedirectResponse(f"{_runs_url(access.project.id)}/{run_id}", status_code=303)
