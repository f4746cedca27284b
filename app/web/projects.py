"""Project pages: list, create, overview with counts, settings and members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import CurrentUser, LeadUser, Level, ProjectLead, ProjectReader, SessionDep
from app.domain import projects as project_service
from app.domain.live_head import (
    label_descriptions_text,
    parse_label_descriptions,
    set_label_descriptions,
)
from app.errors import DomainError, InvalidInput
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
    }
    return render_page(request, "projects/detail.html", context)


def _settings_form(db: SessionDep, access: ProjectLead) -> dict[str, object]:
    project = access.project
    labels = project_service.get_labels(db, project.id)
    return {
        "name": project.name,
        "description": project.description,
        "labels": "\n".join(label.name for label in labels),
        "guidelines": project.guidelines,
        "label_budget": project.label_budget,
        "batch_size": project.batch_size,
        "stop_threshold": project.stop_threshold,
        "annotations_per_item": project.annotations_per_item,
        "label_descriptions": label_descriptions_text(db, project.id),
    }


def _settings_page(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    *,
    form: dict[str, object] | None = None,
    error: str | None = None,
    member_error: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "project": access.project,
        "form": form or _settings_form(db, access),
        "error": error,
        "member_error": member_error,
        "members": project_service.list_members(db, access.project.id),
    }
    return render_page(request, "projects/settings.html", context, status_code=status_code)


@router.get("/projects/{project_id}/settings")
def settings_page(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    return _settings_page(request, db, access)


@router.post("/projects/{project_id}/settings")
def save_settings(
    request: Request, db: SessionDep, access: ProjectLead, form: FormDep
) -> Response:
    try:
        settings = project_settings_from_form(form)
        project_service.update_project(db, access.project, settings)
        if "label_descriptions" in form:
            set_label_descriptions(
                db, access.project.id,
                parse_label_descriptions(str(form.get("label_descriptions") or "")),
            )
    except DomainError as exc:
        return _settings_page(request, db, access, form=echo_form(form), error=exc.message,
                              status_code=exc.status_code)
    flash(request, "Settings saved.", "success")
    return RedirectResponse(f"/projects/{access.project.id}/settings", status_code=303)


@router.post("/projects/{project_id}/members")
def add_member(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=20)] = "annotator",
) -> Response:
    try:
        project_service.add_member(db, access.project.id, email=email, role=role)
    except DomainError as exc:
        return _settings_page(request, db, access, member_error=exc.message,
                              status_code=exc.status_code)
    flash(request, f"{email} is now a {role} of this project.", "success")
    return RedirectResponse(f"/projects/{access.project.id}/settings#members", status_code=303)


@router.post("/projects/{project_id}/members/{user_id}/remove")
def remove_member(
    request: Request, db: SessionDep, access: ProjectLead, user_id: int
) -> Response:
    try:
        project_service.remove_member(db, access.project.id, user_id)
    except DomainError as exc:
        return _settings_page(request, db, access, member_error=exc.message,
                              status_code=exc.status_code)
    flash(request, "Member removed.", "success")
    return RedirectResponse(f"/projects/{access.project.id}/settings#members", status_code=303)
