"""The gold page of a project (leads): gold items with their answers, how each annotator does on
them, and the gold settings. Annotators never reach it (their queue hands gold out unmarked)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import IdPath, ProjectLead, SessionDep
from app.domain import gold
from app.domain.annotation.common import project_labels
from app.domain.annotation.label_sets import is_multi_label
from app.errors import DomainError
from app.web.forms import FormDep, form_float, form_ids, form_int, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


def _url(project_id: int) -> str:
    return f"/projects/{project_id}/gold"


@router.get("/projects/{project_id}/gold")
def gold_page(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    project = access.project
    return render_page(request, "gold/page.html", {
        "project": project,
        "active": "gold",
        "can_lead": True,
        "labels": project_labels(db, project.id),
        "rows": gold.gold_items(db, project),
        "report": gold.gold_report(db, project),
        "max_rows": gold.MAX_GOLD_LIST,
        "multi_label": is_multi_label(project),
    })


@router.post("/projects/{project_id}/gold")
def add_gold(request: Request, db: SessionDep, access: ProjectLead, form: FormDep) -> Response:
    try:
        item_id = form_int(form, "item_id", 0)
        # Multi-label: the ticked labels are the gold set (none ticked: none of these).
        answer: gold.GoldAnswer = (form_ids(form, "label_ids") if is_multi_label(access.project)
                                   else form_str(form, "label"))
        gold.mark_gold(db, access.project, item_id, answer, by=access.user)
    except DomainError as exc:  # raised before anything is written
        flash(request, exc.message, "error")
        return RedirectResponse(_url(access.project.id), status_code=303)
    flash(request, f"Item {item_id} is gold.", "success")
    return RedirectResponse(_url(access.project.id), status_code=303)


@router.post("/projects/{project_id}/gold/{item_id}/remove")
def remove_gold(request: Request, item_id: IdPath, db: SessionDep,
                access: ProjectLead) -> Response:
    gold.unmark_gold(db, access.project, item_id, by=access.user)
    flash(request, f"Item {item_id} is no longer gold.", "success")
    return RedirectResponse(_url(access.project.id), status_code=303)


@router.post("/projects/{project_id}/gold/settings")
def save_gold_settings(request: Request, db: SessionDep, access: ProjectLead,
                       form: FormDep) -> Response:
    project = access.project
    try:
        gold.update_gold_settings(
            project,
            rate=form_float(form, "rate_percent", project.gold_rate * 100) / 100,
            min_accuracy=form_float(form, "min_accuracy_percent",
                                    project.gold_min_accuracy * 100) / 100,
            min_count=form_int(form, "min_count", project.gold_min_count),
        )
    except DomainError as exc:  # checked before anything changes
        flash(request, exc.message, "error")
        return RedirectResponse(_url(project.id), status_code=303)
    flash(request, "Gold settings saved.", "success")
    return RedirectResponse(_url(project.id), status_code=303)
