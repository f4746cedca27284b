"""Every setting of a project on one page, for its leads (and admins): general (name, labels,
guidelines), budget and stop rule, model and strategy, label colours and keys, members.

Each section is its own form and POST, validated by the domain before anything is written; a
refused section re-renders the page with its message and the submitted values, the other
sections unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.db.models import PROJECT_ROLES, TASK_MULTI_LABEL
from app.deps import IdPath, ProjectContext, ProjectLead, SessionDep, SettingsDep
from app.domain import project_setup as setup
from app.domain import projects as project_service
from app.domain.agreement import update_overlap_settings
from app.domain.live_head import (
    label_descriptions_text,
    parse_label_descriptions,
    set_label_descriptions,
)
from app.errors import DomainError
from app.web.forms import (
    FormDep,
    budget_settings_from_form,
    echo_form,
    form_float,
    form_int,
    general_settings_from_form,
    label_styles_from_form,
    model_settings_from_form,
)
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


def _url(access: ProjectContext, section: str = "") -> str:
    return f"/projects/{access.project.id}/settings" + (f"#{section}" if section else "")


def _general_form(db: Session, access: ProjectContext) -> dict[str, object]:
    project = access.project
    return {
        "name": project.name,
        "description": project.description,
        "labels": "\n".join(label.name for label in project_service.get_labels(db, project.id)),
        "guidelines": project.guidelines,
        "annotations_per_item": project.annotations_per_item,
        "task_type": project.task_type,
        "label_descriptions": label_descriptions_text(db, project.id),
    }


def _page(request: Request, db: Session, access: ProjectContext, *,
          form: dict[str, Any] | None = None, section: str = "",
          error: DomainError | None = None) -> Response:
    project = access.project
    config = dict(project.adapter_config or {})
    context = {
        "project": project,
        "active": "settings",
        "can_lead": True,
        "form": form or _general_form(db, access),
        "errors": {section: error.message} if error is not None else {},
        "labels": project_service.get_labels(db, project.id),
        "members": project_service.list_members(db, project.id),
        "project_roles": PROJECT_ROLES,
        "strategies": (setup.MULTI_LABEL_CHOICES if project.task_type == TASK_MULTI_LABEL
                       else setup.STRATEGY_CHOICES),
        "adapter_kinds": setup.ADAPTER_DESCRIPTIONS,
        "adapter_size": setup.adapter_size(config),
        "adapter_kind": str(config.get("kind", "lora")),
    }
    status = error.status_code if error is not None else 200
    return render_page(request, "projects/settings.html", context, status_code=status)


@router.get("/projects/{project_id}/settings")
def settings_page(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    return _page(request, db, access)


@router.post("/projects/{project_id}/settings")
def save_general(request: Request, db: SessionDep, access: ProjectLead,
                 form: FormDep) -> Response:
    try:
        project_service.update_project(db, access.project,
                                       general_settings_from_form(form, access.project),
                                       by=access.user)
        if "label_descriptions" in form:
            set_label_descriptions(db, access.project.id, parse_label_descriptions(
                str(form.get("label_descriptions") or "")))
    except DomainError as exc:  # the label change is checked before anything is written
        return _page(request, db, access, form=echo_form(form), section="general", error=exc)
    flash(request, "Settings saved.", "success")
    return RedirectResponse(_url(access, "general"), status_code=303)


@router.post("/projects/{project_id}/settings/budget")
def save_budget(request: Request, db: SessionDep, access: ProjectLead,
                form: FormDep) -> Response:
    try:
        setup.update_budget(db, access.project, budget_settings_from_form(form, access.project))
    except DomainError as exc:  # raised before anything is written
        return _page(request, db, access, section="budget", error=exc)
    flash(request, "Budget and stop rule saved.", "success")
    return RedirectResponse(_url(access, "budget"), status_code=303)


@router.post("/projects/{project_id}/settings/overlap")
def save_overlap(request: Request, db: SessionDep, access: ProjectLead,
                 form: FormDep) -> Response:
    """Overlap routing and the agreement flag (issue 16); percent fields on the page."""
    project = access.project
    try:
        update_overlap_settings(
            project,
            rate=form_float(form, "overlap_percent", project.overlap_rate * 100) / 100,
            k=form_int(form, "overlap_k", project.overlap_k),
            min_kappa=form_float(form, "agreement_min_kappa", project.agreement_min_kappa),
            min_items=form_int(form, "agreement_min_items", project.agreement_min_items),
        )
    except DomainError as exc:  # checked before anything changes
        return _page(request, db, access, section="overlap", error=exc)
    flash(request, "Overlap and agreement settings saved.", "success")
    return RedirectResponse(_url(access, "overlap"), status_code=303)


@router.post("/projects/{project_id}/settings/model")
def save_model(request: Request, db: SessionDep, settings: SettingsDep, access: ProjectLead,
               form: FormDep) -> Response:
    try:
        setup.update_model(db, access.project,
                           model_settings_from_form(
                               form, model_root=settings.models,
                               multi_label=access.project.task_type == TASK_MULTI_LABEL))
    except DomainError as exc:  # raised before anything is written
        return _page(request, db, access, section="model", error=exc)
    flash(request, "Model settings saved; they apply from the next training round.", "success")
    return RedirectResponse(_url(access, "model"), status_code=303)


@router.post("/projects/{project_id}/settings/labels")
def save_label_styles(request: Request, db: SessionDep, access: ProjectLead,
                      form: FormDep) -> Response:
    try:
        labels = project_service.get_labels(db, access.project.id)
        setup.update_label_styles(db, access.project, label_styles_from_form(form, labels))
    except DomainError as exc:  # raised before anything is written
        return _page(request, db, access, section="labels", error=exc)
    flash(request, "Label colours and keys saved.", "success")
    return RedirectResponse(_url(access, "labels"), status_code=303)


@router.post("/projects/{project_id}/members")
def add_member(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=20)] = "annotator",
) -> Response:
    """Add a member by e-mail, or change the role of one already in the project."""
    try:
        project_service.add_member(db, access.project.id, email=email, role=role,
                                   by=access.user)
    except DomainError as exc:
        return _page(request, db, access, section="members", error=exc)
    article = "an" if role[:1] in "aeiou" else "a"
    flash(request, f"{email.strip().lower()} is now {article} {role} of this project.",
          "success")
    return RedirectResponse(_url(access, "members"), status_code=303)


@router.post("/projects/{project_id}/members/{user_id}/remove")
def remove_member(request: Request, db: SessionDep, access: ProjectLead,
                  user_id: IdPath) -> Response:
    try:
        project_service.remove_member(db, access.project.id, user_id, by=access.user)
    except DomainError as exc:
        return _page(request, db, access, section="members", error=exc)
    flash(request, "Member removed.", "success")
    return RedirectResponse(_url(access, "members"), status_code=303)
