"""The lead dashboard: budget and stop rule, learning curve, evaluation, agreement, throughput,
current model and its adapter card. Every setting is on the settings page
(:mod:`app.web.project_settings`); the dashboard also renders the budget and stop-rule form (the
same template and the same :class:`~app.domain.policy.BudgetSettings`, so the same bounds), next
to the budget it changes, and the stop/resume labelling button."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Project
from app.deps import ProjectContext, ProjectLead, SessionDep, SettingsDep
from app.domain import adapter_card, dashboard, model_versions
from app.domain import project_setup as setup
from app.domain.agreement import agreement_report
from app.domain.dashboard import SMALL_DEV_SET, gains_per_100, top_confusions
from app.domain.gold import gold_report
from app.domain.live_head import reading, served_summary
from app.errors import DomainError
from app.web.charts import heat_style, learning_curve_chart
from app.web.forms import FormDep, budget_settings_from_form, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


def _url(project: Project) -> str:
    return f"/projects/{project.id}/dashboard"


def _context(db: Session, settings: Settings, access: ProjectContext, *,
             budget_error: str = "") -> dict[str, Any]:
    project = access.project
    current = model_versions.current_version(db, project.id)
    curve = dashboard.learning_curve(db, project.id)
    served = served_summary(db, project.id)
    return {
        "served": served,
        "reading": reading(db, project.id),
        "project": project,
        "active": "dashboard",
        "can_lead": True,
        "budget": dashboard.budget_summary(db, project),
        "curve": curve,
        "chart": learning_curve_chart(curve, served.curve if served else ()),
        "evaluation": dashboard.latest_evaluation(db, project),
        "distribution": dashboard.label_distribution(db, project.id),
        "multi": dashboard.multi_label_summary(db, project),
        "advice": dashboard.stop_advice(db, project),
        "throughput": dashboard.throughput(db, project.id),
        "agreement": agreement_report(db, project.id),
        "gold": gold_report(db, project),
        "current": current,
        "card": adapter_card.read_card(current, settings) if current else None,
        "gains": gains_per_100(curve),
        "top_confusions": top_confusions,
        "small_dev": SMALL_DEV_SET,
        "heat_style": heat_style,
        "budget_error": budget_error,
    }


@router.get("/projects/{project_id}/dashboard")
def dashboard_page(request: Request, db: SessionDep, settings: SettingsDep,
                   access: ProjectLead) -> Response:
    return render_page(request, "dashboard/page.html", _context(db, settings, access))


@router.get("/projects/{project_id}/dashboard/reading")
def reading_fragment(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    """The live head's reading progress (polled by the dashboard while it reads)."""
    context = {"project": access.project, "reading": reading(db, access.project.id)}
    return render_page(request, "dashboard/_reading.html", context)


@router.post("/projects/{project_id}/dashboard/stop")
def toggle_stop(request: Request, db: SessionDep, access: ProjectLead, form: FormDep) -> Response:
    stopped = form_str(form, "stopped") == "true"
    setup.set_stopped(db, access.project, stopped)
    flash(request, "Labelling stopped." if stopped else "Labelling resumed.", "success")
    return RedirectResponse(_url(access.project) + "#stop", status_code=303)


@router.post("/projects/{project_id}/dashboard/budget")
def save_budget(request: Request, db: SessionDep, settings: SettingsDep, access: ProjectLead,
                form: FormDep) -> Response:
    """The settings page's budget form, posted from the dashboard: a refusal re-renders the
    dashboard with the message (nothing written), a success comes back to the budget panel."""
    try:
        setup.update_budget(db, access.project, budget_settings_from_form(form, access.project))
    except DomainError as exc:  # raised before anything is written
        context = _context(db, settings, access, budget_error=exc.message)
        return render_page(request, "dashboard/page.html", context,
                           status_code=exc.status_code)
    flash(request, "Budget and stop rule saved.", "success")
    return RedirectResponse(_url(access.project) + "#budget", status_code=303)
