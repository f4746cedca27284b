"""A project's model versions, for its leads (and admins): the history with metrics, promote a
version, roll back to the previous one, download any complete version's adapter as a zip.

The same domain functions as the REST API (:mod:`app.domain.model_versions`,
:mod:`app.domain.adapters`); a version of another project answers 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.deps import IdPath, ProjectLead, SessionDep, SettingsDep
from app.domain import adapter_card, model_versions
from app.domain.adapters import adapter_zip, artifact_of
from app.domain.artifact_hygiene import set_pinned
from app.errors import Conflict, NotFound
from app.web.forms import FormDep, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


def _models_url(project_id: int) -> str:
    return f"/projects/{project_id}/models"


@router.get("/projects/{project_id}/models")
def models_page(request: Request, db: SessionDep, settings: SettingsDep,
                access: ProjectLead) -> Response:
    project = access.project
    current = model_versions.current_version(db, project.id)
    context = {
        "project": project,
        "active": "models",
        "can_lead": True,
        "versions": [(v, model_versions.artifact_is_complete(v, settings))
                     for v in model_versions.list_versions(db, project.id)],
        "current": current,
        "card": adapter_card.read_card(current, settings) if current else None,
    }
    return render_page(request, "models/page.html", context)


@router.post("/projects/{project_id}/models/{version_id}/promote")
def promote(request: Request, db: SessionDep, settings: SettingsDep, access: ProjectLead,
            version_id: IdPath) -> Response:
    try:
        version = model_versions.promote(db, access.project.id, version_id, settings=settings)
    except Conflict as exc:  # nothing was written: say why on the page the lead is on
        flash(request, exc.message, "error")
    else:
        flash(request, f"Model v{version.version} is now current; the queue is being rebuilt.",
              "success")
    return RedirectResponse(_models_url(access.project.id), status_code=303)


@router.post("/projects/{project_id}/models/{version_id}/pin")
def pin(request: Request, db: SessionDep, access: ProjectLead, version_id: IdPath,
        form: FormDep) -> Response:
    """Pin or unpin (form field ``pinned``: 1 or 0): retention never deletes a pinned one."""
    version = model_versions.get_version(db, access.project.id, version_id)
    pinned = form_str(form, "pinned") != "0"
    set_pinned(db, version, pinned)
    state = "pinned: retention keeps its adapter" if pinned else "no longer pinned"
    flash(request, f"Model v{version.version} is {state}.", "success")
    return RedirectResponse(_models_url(access.project.id), status_code=303)


@router.post("/projects/{project_id}/models/rollback")
def rollback(request: Request, db: SessionDep, settings: SettingsDep,
             access: ProjectLead) -> Response:
    try:
        version = model_versions.rollback(db, access.project.id, settings=settings)
    except Conflict as exc:
        flash(request, exc.message, "error")
    else:
        flash(request, f"Rolled back to model v{version.version}.", "success")
    return RedirectResponse(_models_url(access.project.id), status_code=303)


@router.get("/projects/{project_id}/models/{version_id}/download")
def download(db: SessionDep, settings: SettingsDep, access: ProjectLead,
             version_id: IdPath) -> Response:
    """The version's artifact as a zip, through the same domain function as the REST API."""
    version = model_versions.get_version(db, access.project.id, version_id)
    artifact = artifact_of(version, settings)
    path = adapter_zip(artifact, settings)
    if not path.is_file():
        raise NotFound("The adapter archive could not be built.")
    return FileResponse(path, media_type="application/zip", filename=artifact.download_name)
