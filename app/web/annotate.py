"""The annotator view: one keystroke per label, no page reloads, nothing lost.

The page shows one item; ``static/js/annotate.js`` prefetches the next item's fragment with htmx
and swaps it in on a keystroke, while labels go to the server through a small retrying outbox
(every label carries an idempotency key). Without JavaScript every control is a plain form whose
POST redirects back to the page, so the view still works, one reload per label.

In a multi-label project the label keys toggle labels on and off, Enter submits the set, and a
"None of these" button (with its own key) submits the empty set; the forms send ``label_ids``.

Routes that write commit as soon as the write is done, before they read and render what the
annotator sees next: on SQLite the write lock is then held for the write alone, and it is let go
in the same worker thread that took it (waiting for the session dependency's teardown would need
a second thread from the pool, which under load may be taken by requests queued on that lock).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from sqlalchemy.orm import Session

from app.db.models import Project, User
from app.deps import (
    MAX_DB_INT,
    AnnotatorSlot,
    IdPath,
    Level,
    ProjectAnnotator,
    SessionDep,
    SettingsDep,
)
from app.domain import annotation
from app.domain.annotation.label_sets import is_multi_label
from app.domain.annotation.views import none_of_these_key
from app.domain.projects import get_labels
from app.error_handlers import is_htmx_request
from app.errors import InvalidInput
from app.web.templating import render_page

router = APIRouter(tags=["web"], include_in_schema=False, dependencies=[AnnotatorSlot])

MAX_EXCLUDE_PARAM = 400
MAX_SET_SIZE = 200
LabelIdField = Annotated[int | None, Form(ge=1, le=MAX_DB_INT)]
LabelIdsField = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_DB_INT)]] | None, Form(max_length=MAX_SET_SIZE)
]


def _base(project_id: int) -> str:
    return f"/projects/{project_id}/annotate"


def parse_ids(raw: str, field: str) -> list[int]:
    """``"3,5,8"`` -> [3, 5, 8]; anything else is refused with a message naming ``field``."""
    if len(raw) > MAX_EXCLUDE_PARAM:
        raise InvalidInput(f"Too many item ids in {field!r}.")
    ids = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise InvalidInput(f"{field!r} takes item ids separated by commas, not {part!r}.")
        ids.append(int(part))
    return ids


def _label_context(db: Session, project: Project) -> dict[str, Any]:
    labels = get_labels(db, project.id)
    keys = annotation.label_keys(labels)
    key_of = {label_id: key for key, label_id in keys.items()}
    multi_label = is_multi_label(project)
    return {
        "labels": labels,
        "key_of": key_of,
        "label_by_id": {label.id: label for label in labels},
        "color_of": {label.name: label.color for label in labels},
        "multi_label": multi_label,
        "none_key": none_of_these_key(keys) if multi_label else None,
    }


def _answer(project: Project, label_id: int | None, label_ids: list[int] | None
            ) -> dict[str, Any]:
    """The form's answer for the domain. A form cannot send an empty list, so in a multi-label
    project no ``label_ids`` at all (and no ``label_id``) is the empty set: none of these. A
    wrong shape goes through as sent, for the domain to refuse with its message."""
    if is_multi_label(project) and label_id is None:
        return {"label_ids": label_ids or []}
    return {"label_id": label_id, "label_ids": label_ids}


def _lists(db: Session, project: Project, user: User) -> dict[str, Any]:
    """The user's batch progress and recent labels (the page's two refreshed fragments)."""
    return {"progress": annotation.batch_progress(db, project, user),
            "recent": annotation.recent_labels(db, project, user)}


def _item_response(
    request: Request,
    db: Session,
    project: Project,
    view: annotation.ItemView | annotation.NoItem,
    *,
    status_code: int = 200,
    lists_of: User | None = None,
) -> Response:
    """The item card; with ``lists_of`` (an undo) that user's progress and recent labels too."""
    context = {"project": project, "view": view, "base": _base(project.id)}
    context |= _label_context(db, project)
    template = "annotate/_item.html"
    if lists_of is not None:
        context |= _lists(db, project, lists_of)
        template = "annotate/_undo.html"
    headers = {"X-Item-Id": str(view.item_id)} if isinstance(view, annotation.ItemView) else {}
    return render_page(request, template, context, status_code=status_code, headers=headers)


def _after_write(
    request: Request,
    db: Session,
    project: Project,
    user: User,
    *,
    toast: dict[str, str] | None = None,
) -> Response:
    """htmx: the refreshed progress and recent-labels fragments; plain forms: back to the page."""
    if not is_htmx_request(request):
        return RedirectResponse(_base(project.id), status_code=303)
    context = {"project": project, "base": _base(project.id)} | _lists(db, project, user)
    context |= _label_context(db, project)
    headers = {"HX-Trigger": json.dumps({"toast": toast})} if toast else None
    return render_page(request, "annotate/_after_write.html", context, headers=headers)


@router.get("/projects/{project_id}/annotate")
def annotator_page(
    request: Request, db: SessionDep, settings: SettingsDep, access: ProjectAnnotator
) -> Response:
    project, user = access.project, access.user
    leased = annotation.lease_next(db, project, user, lease_seconds=settings.lease_seconds)
    db.commit()  # the lease is saved; reading and rendering need no write lock (module doc)
    view = annotation.show(db, project, leased)
    context = {
        "project": project,
        "base": _base(project.id),
        "view": view,
        **_lists(db, project, user),
        "status": annotation.queue_status(db, project),
        "seen_version": project.queue_version,
        "can_lead": access.can(Level.LEAD),
        "can_review": access.can(Level.REVIEW),
    } | _label_context(db, project)
    return render_page(request, "annotate/page.html", context)


@router.get("/projects/{project_id}/annotate/next")
def next_item_fragment(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    access: ProjectAnnotator,
    exclude: Annotated[str, Query(max_length=MAX_EXCLUDE_PARAM)] = "",
) -> Response:
    leased = annotation.lease_next(db, access.project, access.user,
                                   lease_seconds=settings.lease_seconds,
                                   exclude=parse_ids(exclude, "exclude"))
    db.commit()
    return _item_response(request, db, access.project, annotation.show(db, access.project, leased))


@router.post("/projects/{project_id}/annotate/items/{item_id}/label")
def label_item(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    access: ProjectAnnotator,
    item_id: IdPath,
    label_id: LabelIdField = None,
    label_ids: LabelIdsField = None,
    duration_ms: Annotated[int | None, Form(ge=0, le=MAX_DB_INT)] = None,
    key: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    result = annotation.record_label(
        db, access.project, access.user, item_id=item_id,
        **_answer(access.project, label_id, label_ids), duration_ms=duration_ms,
        idempotency_key=key, lease_seconds=settings.lease_seconds,
        token_id=access.principal.token.id if access.principal.token is not None else None,
    )
    db.commit()
    toast = None
    if result.submitted_run is not None:
        toast = {"level": "success",
                 "message": "Batch complete: the model is retraining. Keep labelling."}
    return _after_write(request, db, access.project, access.user, toast=toast)


@router.post("/projects/{project_id}/annotate/items/{item_id}/skip")
def skip_item(
    request: Request, db: SessionDep, access: ProjectAnnotator, item_id: IdPath
) -> Response:
    annotation.skip_item(db, access.project, access.user, item_id=item_id)
    db.commit()
    return _after_write(request, db, access.project, access.user)


@router.post("/projects/{project_id}/annotate/undo")
def undo_last(
    request: Request, db: SessionDep, settings: SettingsDep, access: ProjectAnnotator
) -> Response:
    view = annotation.undo_last(db, access.project, access.user,
                                lease_seconds=settings.lease_seconds)
    db.commit()
    if not is_htmx_request(request):
        return RedirectResponse(_base(access.project.id), status_code=303)
    return _item_response(request, db, access.project, view, lists_of=access.user)


@router.post("/projects/{project_id}/annotate/submit")
def submit_batch(request: Request, db: SessionDep, access: ProjectAnnotator) -> Response:
    run = annotation.submit_batch(db, access.project, access.user,
                                  reason=f"batch submitted by {access.user.email}")
    db.commit()
    message = "Batch submitted: the model is retraining." if run is not None else (
        "Batch submitted.")
    toast = {"level": "success", "message": message}
    return _after_write(request, db, access.project, access.user, toast=toast)


@router.post("/projects/{project_id}/annotate/release")
def release_items(
    db: SessionDep,
    access: ProjectAnnotator,
    item_ids: Annotated[str, Form(max_length=MAX_EXCLUDE_PARAM)] = "",
) -> Response:
    """Give back prefetched items when the page goes away (``navigator.sendBeacon``)."""
    annotation.release_leases(db, access.project, access.user, parse_ids(item_ids, "item_ids"))
    db.commit()
    return Response(status_code=204)


@router.get("/projects/{project_id}/annotate/status")
def queue_status(
    request: Request,
    db: SessionDep,
    access: ProjectAnnotator,
    v: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> Response:
    context = {
        "project": access.project,
        "base": _base(access.project.id),
        "status": annotation.queue_status(db, access.project),
        "seen_version": v,
    }
    return render_page(request, "annotate/_status.html", context)


@router.post("/projects/{project_id}/annotate/annotations/{annotation_id}")
def edit_label(
    request: Request,
    db: SessionDep,
    access: ProjectAnnotator,
    annotation_id: IdPath,
    label_id: LabelIdField = None,
    label_ids: LabelIdsField = None,
) -> Response:
    annotation.edit_annotation(db, access.project, access.user, annotation_id=annotation_id,
                               **_answer(access.project, label_id, label_ids))
    db.commit()
    return _after_write(request, db, access.project, access.user,
                        toast={"level": "success", "message": "Label changed."})
