"""The review queue page (reviewers, leads, admins), the audit log and the guideline history
(leads). Keyboard: ``j``/``k`` move, ``a`` accept, ``c`` then a number change the label, ``s``
send back with a note (see ``static/js/review.js``); every control also works as a plain form."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import MAX_DB_INT, IdPath, Level, ProjectLead, ProjectReviewer, SessionDep
from app.domain import audit, guidelines, review
from app.domain.annotation import label_keys
from app.domain.annotation.common import project_item, project_labels
from app.domain.annotation.label_sets import is_multi_label
from app.errors import DomainError
from app.web.forms import FormDep, form_ids, form_int, form_str
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)

ACTION_WORDS = {"accept": "accepted", "change": "relabelled", "send_back": "sent back"}


def _url(project_id: int) -> str:
    return f"/projects/{project_id}/review"


@router.get("/projects/{project_id}/review")
def review_page(request: Request, db: SessionDep, access: ProjectReviewer) -> Response:
    project = access.project
    labels = project_labels(db, project.id)
    return render_page(
        request,
        "review/page.html",
        {
            "project": project,
            "active": "review",
            "can_lead": access.can(Level.LEAD),
            "can_review": True,
            "labels": labels,
            "key_of": {label_id: key for key, label_id in label_keys(labels).items()},
            "queue": review.review_queue(db, project),
            "multi_label": is_multi_label(project),  # change: checkboxes, a set
            "recent": review.recent_decisions(db, project, limit=10),
            "max_note": review.MAX_NOTE_CHARS,
        },
    )


@router.post("/projects/{project_id}/review/items/{item_id}")
def decide(
    request: Request, item_id: IdPath, db: SessionDep, access: ProjectReviewer, form: FormDep
) -> Response:
    project_item(db, access.project, item_id)  # another project's item: a 404 page, no flash
    label_id = form_int(form, "label_id", 0)
    # Multi-label change: the ticked labels are the new set (none ticked: none of these).
    multi_change = is_multi_label(access.project) and form_str(form, "action") == "change"
    try:
        decision = review.decide(
            db,
            access.project,
            access.user,
            item_id=item_id,
            action=form_str(form, "action"),
            label_id=label_id or None,
            label_ids=form_ids(form, "label_ids") if multi_change else None,
            note=form_str(form, "note"),
            reason=form_str(form, "reason"),
            may_change_gold=access.can(Level.LEAD),
        )
    except DomainError as exc:  # every check runs before anything is written
        flash(request, exc.message, "error")
        return RedirectResponse(_url(access.project.id), status_code=303)
    word = ACTION_WORDS.get(decision.action, decision.action)
    label = f" as {decision.label}" if decision.label and decision.action != "send_back" else ""
    flash(request, f"Item {decision.item_id} {word}{label}.", "success")
    return RedirectResponse(_url(access.project.id), status_code=303)


@router.get("/projects/{project_id}/audit")
def audit_page(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    before: int | None = Query(default=None, ge=1, le=MAX_DB_INT),
) -> Response:
    page = audit.audit_page(db, access.project.id, before=before)
    return render_page(
        request,
        "review/audit.html",
        {
            "project": access.project,
            "active": "audit",
            "can_lead": True,
            "can_review": True,
            "page": page,
        },
    )


@router.get("/projects/{project_id}/guidelines")
def guidelines_page(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    return render_page(
        request,
        "review/guidelines.html",
        {
            "project": access.project,
            "active": "guidelines",
            "can_lead": True,
            "can_review": True,
            "versions": guidelines.guideline_history(db, access.project),
        },
    )
