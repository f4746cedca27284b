"""The lead dashboard: budget and stop rule, learning curve, evaluation, agreement, throughput,
current model and its adapter card, and the lead's settings forms (budget, model, labels)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Project
from app.deps import Level, ProjectContext, ProjectLead, SessionDep, SettingsDep
from app.domain import adapter_card, dashboard, model_versions
from app.domain import project_setup as setup
from app.domain.agreement import agreement_report
from app.domain.live_head import served_summary
from app.domain.projects import get_labels
from app.errors import DomainError, InvalidInput
from app.web.charts import heat_style, learning_curve_chart
from app.web.forms import FormDep, form_float, form_int, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


def _url(project: Project) -> str:
    return f"/projects/{project.id}/dashboard"


def _context(db: Session, settings: Settings, access: ProjectContext) -> dict[str, Any]:
    project = access.project
    current = model_versions.current_version(db, project.id)
    curve = dashboard.learning_curve(db, project.id)
    served = served_summary(db, project.id)
    return {
        "served": served,
        "project": project,
        "active": "dashboard",
        "can_lead": True,
        "is_admin": access.can(Level.ADMIN),
        "budget": dashboard.budget_summary(db, project),
        "curve": curve,
        "chart": learning_curve_chart(curve, served.curve if served else ()),
        "evaluation": dashboard.latest_evaluation(db, project),
        "distribution": dashboard.label_distribution(db, project.id),
        "advice": dashboard.stop_advice(db, project),
        "throughput": dashboard.throughput(db, project.id),
        "agreement": agreement_report(db, project.id),
        "current": current,
        "card": adapter_card.read_card(current, settings) if current else None,
        "labels": get_labels(db, project.id),
        "strategies": setup.STRATEGY_CHOICES,
        "adapter_kinds": setup.ADAPTER_DESCRIPTIONS,
        "adapter_size": setup.adapter_size(dict(project.adapter_config or {})),
        "adapter_kind": str((project.adapter_config or {}).get("kind", "lora")),
        "heat_style": heat_style,
        "errors": {},
    }


def _page(request: Request, db: Session, settings: Settings, access: ProjectContext, *,
          error: DomainError | None = None, section: str = "") -> Response:
    context = _context(db, settings, access)
    if error is not None:
        context["errors"] = {section: error.message}
    status = error.status_code if error else 200
    return render_page(request, "dashboard/page.html", context, status_code=status)


@router.get("/projects/{project_id}/dashboard")
def dashboard_page(request: Request, db: SessionDep, settings: SettingsDep,
                   access: ProjectLead) -> Response:
    return _page(request, db, settings, access)


@router.post("/projects/{project_id}/dashboard/budget")
def save_budget(request: Request, db: SessionDep, settings: SettingsDep, access: ProjectLead,
                form: FormDep) -> Response:
    project = access.project
    try:
        values = setup.BudgetSettings(
            label_budget=form_int(form, "label_budget", project.label_budget),
            batch_size=form_int(form, "batch_size", project.batch_size),
            reserve_fraction=form_float(form, "reserve_percent", project.reserve_fraction * 100)
            / 100.0,
            stop_threshold=form_float(form, "stop_threshold", project.stop_threshold),
            auto_stop=form_str(form, "auto_stop") == "on",
        )
        setup.update_budget(db, project, values)
    except DomainError as exc:  # raised before anything is written
        return _page(request, db, settings, access, error=exc, section="budget")
    flash(request, "Budget and stop rule saved.", "success")
    return RedirectResponse(_url(project) + "#budget", status_code=303)


@router.post("/projects/{project_id}/dashboard/stop")
def toggle_stop(request: Request, db: SessionDep, access: ProjectLead, form: FormDep) -> Response:
    stopped = form_str(form, "stopped") == "true"
    setup.set_stopped(db, access.project, stopped)
    flash(request, "Labelling stopped." if stopped else "Labelling resumed.", "success")
    return RedirectResponse(_url(access.project) + "#stop", status_code=303)


@router.post("/projects/{project_id}/dashboard/model")
def save_model(request: Request, db: SessionDep, settings: SettingsDep, access: ProjectLead,
               form: FormDep) -> Response:
    try:
        size_raw = form_str(form, "adapter_size").strip()
        values = setup.ModelSettings(
            base_model=form_str(form, "base_model"),
            adapter_kind=form_str(form, "adapter_kind"),
            adapter_size=form_int(form, "adapter_size", 0) if size_raw else None,
            strategy=form_str(form, "strategy"),
        )
        setup.update_model(db, access.project, values)
    except DomainError as exc:  # raised before anything is written
        return _page(request, db, settings, access, error=exc, section="model")
    flash(request, "Model settings saved; they apply from the next training round.", "success")
    return RedirectResponse(_url(access.project) + "#model", status_code=303)


@router.post("/projects/{project_id}/dashboard/labels")
def save_labels(request: Request, db: SessionDep, settings: SettingsDep, access: ProjectLead,
                form: FormDep) -> Response:
    try:
        styles = [
            setup.LabelStyle(
                label_id=label.id,
                color=form_str(form, f"color_{label.id}") or label.color,
                shortcut=form_str(form, f"shortcut_{label.id}"),
            )
            for label in get_labels(db, access.project.id)
        ]
        if not styles:
            raise InvalidInput("This project has no labels.")
        setup.update_label_styles(db, access.project, styles)
    except DomainError as exc:  # raised before anything is written
        return _page(request, db, settings, access, error=exc, section="labels")
    flash(request, "Label colours and keys saved.", "success")
    return RedirectResponse(_url(access.project) + "#labels", status_code=303)
