"""Project pages: list, create, overview with counts (settings and members: project_settings)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import CurrentUser, LeadUser, Level, ProjectReader, SessionDep
from app.domain import projects as project_service
from app.errors import InvalidInput
from app.web.forms import FormDep, blank_project_form, echo_form, project_settings_from_form
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/projects")
def list_projects(request: Request, db: SessionDep, caller: CurrentUser) -> Response:
    visible = project_service.list_visible_projects(
        db, caller.user, only_project_id=caller.bound_project_id
    )
    rows = [{"project": p, "counts": project_service.project_counts(db, p.id)} for p in visible]
    can_create = caller.global_level >= Level.LEAD and caller.bound_project_id is None
    return render_page(request, "projects/list.html", {"projects": rows, "can_create": can_create})


@router.get("/projects/new")
def new_project_page(request: Request, _caller: LeadUser) -> Response:
    return render_page(request, "projects/new.html", {"form": blank_project_form(), "error": None})


@router.post("/projects")
def create_project(request: Request, db: SessionDep, caller: LeadUser, form: FormDep) -> Response:
    try:
        settings = project_settings_from_form(form)
    except InvalidInput as exc:
        context = {"form": echo_form(form), "error": exc.message}
        return render_page(request, "projects/new.html", context, status_code=422)
    project = project_service.create_project(db, creator=caller.user, settings=settings)
    flash(request, f"Project “{project.name}” created. Import data to get started.", "success")
    return RedirectResponse(f"/projects/{project.id}", status_code=303)


@router.get("/projects/{project_id}")
def project_overview(request: Request, db: SessionDep, access: ProjectReader) -> Response:
    project = access.project
    context = {
        "project": project,
        "counts": project_service.project_counts(db, project.id),
        "labels": project_service.get_labels(db, project.id),
        "can_lead": access.can(Level.LEAD),
        "can_review": access.can(Level.REVIEW),
    }
    return render_page(request, "projects/detail.html", context)
