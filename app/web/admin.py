"""Admin pages: users and roles, project memberships, API tokens, and every project's runs and
models at a glance (each project's own runs and models pages are its leads').

Secrets (a generated password, a new token) are rendered once in the response that creates them
and never put into the session or a flash message (the session cookie is signed, not encrypted).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.db.models import PROJECT_ROLES, ROLES, SCOPES
from app.deps import AdminUser, IdPath, SessionDep, SettingsDep
from app.domain import admin as admin_service
from app.domain import artifact_hygiene, model_versions, runs
from app.domain.users import revoke_token
from app.errors import DomainError, InvalidInput
from app.web.forms import FormDep, form_int, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


def _users_page(request: Request, db: Session, **extra: Any) -> Response:
    context = {"section": "users", "users": admin_service.list_users(db), "roles": ROLES,
               "new_account": None, "error": None, "form": {}} | extra
    status = extra.get("status_code", 200)
    return render_page(request, "admin/users.html", context, status_code=status)


@router.get("/admin")
def admin_home(_caller: AdminUser) -> Response:
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/projects")
def projects_page(request: Request, db: SessionDep, settings: SettingsDep,
                  _caller: AdminUser) -> Response:
    """Cross-project view: current model, active runs and artifact disk use of every project."""
    projects = admin_service.list_projects(db)
    use = artifact_hygiene.disk_use([p.id for p in projects], settings)
    rows = [{"project": p, "active": runs.active_runs(db, p.id),
             "current": model_versions.current_version(db, p.id), "disk": use[p.id]}
            for p in projects]
    return render_page(request, "admin/projects.html", {
        "section": "projects", "rows": rows, "human_bytes": artifact_hygiene.human_bytes,
        "total_bytes": sum(u.total_bytes for u in use.values()),
        "keep_versions": settings.keep_versions})


@router.get("/admin/users")
def users_page(request: Request, db: SessionDep, _caller: AdminUser) -> Response:
    return _users_page(request, db)


@router.post("/admin/users")
def create_user(request: Request, db: SessionDep, _caller: AdminUser, form: FormDep) -> Response:
    values = {k: form_str(form, k) for k in ("email", "name", "role")}
    try:
        account = admin_service.create_account(db, email=values["email"], name=values["name"],
                                               role=values["role"] or "annotator")
    except DomainError as exc:  # validation happens before the insert
        return _users_page(request, db, error=exc.message, form=values,
                           status_code=exc.status_code)
    return _users_page(request, db, new_account=account, status_code=201)


def _user_page(request: Request, db: Session, user_id: int, **extra: Any) -> Response:
    context = {
        "section": "users",
        "user": admin_service.get_user(db, user_id),
        "memberships": admin_service.memberships_of(db, user_id),
        "projects": admin_service.list_projects(db),
        "roles": ROLES,
        "project_roles": PROJECT_ROLES,
        "new_password": None,
        "error": None,
    } | extra
    return render_page(request, "admin/user.html", context,
                       status_code=extra.get("status_code", 200))


@router.get("/admin/users/{user_id}")
def user_page(request: Request, db: SessionDep, _caller: AdminUser, user_id: IdPath) -> Response:
    return _user_page(request, db, user_id)


@router.post("/admin/users/{user_id}/role")
def change_role(request: Request, db: SessionDep, caller: AdminUser, user_id: IdPath,
                form: FormDep) -> Response:
    try:
        admin_service.set_role(db, acting=caller.user, user_id=user_id,
                               role=form_str(form, "role"))
    except DomainError as exc:
        return _user_page(request, db, user_id, error=exc.message, status_code=exc.status_code)
    flash(request, "Role changed.", "success")
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


@router.post("/admin/users/{user_id}/active")
def change_active(request: Request, db: SessionDep, caller: AdminUser, user_id: IdPath,
                  form: FormDep) -> Response:
    active = form_str(form, "active") == "true"
    try:
        admin_service.set_active(db, acting=caller.user, user_id=user_id, active=active)
    except DomainError as exc:
        return _user_page(request, db, user_id, error=exc.message, status_code=exc.status_code)
    flash(request, "Account activated." if active else "Account deactivated.", "success")
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


@router.post("/admin/users/{user_id}/password")
def reset_password(request: Request, db: SessionDep, _caller: AdminUser,
                   user_id: IdPath) -> Response:
    account = admin_service.reset_password(db, user_id)
    return _user_page(request, db, user_id, new_password=account.password)


@router.post("/admin/users/{user_id}/memberships")
def set_membership(request: Request, db: SessionDep, caller: AdminUser, user_id: IdPath,
                   form: FormDep) -> Response:
    try:
        admin_service.set_membership(db, user_id=user_id,
                                     project_id=form_int(form, "project_id", 0),
                                     role=form_str(form, "role"), by=caller.user)
    except DomainError as exc:
        return _user_page(request, db, user_id, error=exc.message, status_code=exc.status_code)
    flash(request, "Membership saved.", "success")
    return RedirectResponse(f"/admin/users/{user_id}#memberships", status_code=303)


@router.post("/admin/users/{user_id}/memberships/{project_id}/remove")
def remove_membership(request: Request, db: SessionDep, caller: AdminUser, user_id: IdPath,
                      project_id: IdPath) -> Response:
    admin_service.remove_membership(db, user_id=user_id, project_id=project_id, by=caller.user)
    flash(request, "Membership removed.", "success")
    return RedirectResponse(f"/admin/users/{user_id}#memberships", status_code=303)


def _tokens_page(request: Request, db: Session, **extra: Any) -> Response:
    context = {
        "section": "tokens",
        "tokens": admin_service.list_all_tokens(db),
        "users": admin_service.list_users(db),
        "projects": admin_service.list_projects(db),
        "scopes": SCOPES,
        "issued": None,
        "error": None,
    } | extra
    return render_page(request, "admin/tokens.html", context,
                       status_code=extra.get("status_code", 200))


@router.get("/admin/tokens")
def tokens_page(request: Request, db: SessionDep, _caller: AdminUser) -> Response:
    return _tokens_page(request, db)


@router.post("/admin/tokens")
def create_token(request: Request, db: SessionDep, _caller: AdminUser, form: FormDep) -> Response:
    try:
        project_id = form_int(form, "project_id", 0) or None
        days = form_int(form, "expires_in_days", 0) or None
        scopes = tuple(s for s in form.getlist("scopes") if isinstance(s, str))
        if not form_str(form, "user_id"):
            raise InvalidInput("Pick the user the token acts as.", details={"field": "user_id"})
        issued = admin_service.issue_token(db, admin_service.TokenRequest(
            user_id=form_int(form, "user_id", 0), name=form_str(form, "name"), scopes=scopes,
            project_id=project_id, expires_in_days=days,
        ))
    except DomainError as exc:
        return _tokens_page(request, db, error=exc.message, status_code=exc.status_code)
    return _tokens_page(request, db, issued=issued, status_code=201)


@router.post("/admin/tokens/{token_id}/revoke")
def revoke(request: Request, db: SessionDep, _caller: AdminUser, token_id: IdPath) -> Response:
    token = revoke_token(db, token_id)
    flash(request, f"Token “{token.name}” revoked; clients using it now get 401.", "success")
    return RedirectResponse("/admin/tokens", status_code=303)
