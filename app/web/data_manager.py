"""The data manager pages: browse, filter and search items, act on many, open one, export.

Leads and admins only (``ProjectLead``): the browser shows every annotator's labels. Filters live
in the query string, so a filtered view is a link; htmx swaps the results when a filter changes
and appends the next page (keyset) when asked.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from app.api.data_manager import stream_file
from app.db.models import SPLITS
from app.deps import MAX_DB_INT, ProjectLead, SessionDep
from app.domain import data_export
from app.domain import data_manager as dm
from app.domain.annotation.common import project_labels
from app.domain.annotation.label_sets import is_multi_label
from app.domain.imports import LABEL_SEPARATOR, proposed_separator
from app.errors import InvalidInput
from app.web.forms import FormDep, form_ids
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)
ItemId = Annotated[int, Path(ge=1, le=2_147_483_647)]


def _raw_filters(source: Any) -> dict[str, str]:
    """The registered filters present (non-blank) in a query string or a form, as strings."""
    raw: dict[str, str] = {}
    for name in dm.FILTERS:
        value = source.get(name)
        if isinstance(value, str) and value.strip():
            raw[name] = value.strip()
    return raw


def _page_url(project_id: int, raw: dict[str, str]) -> str:
    query = urlencode(raw)
    return f"/projects/{project_id}/data" + (f"?{query}" if query else "")


def _context(db: SessionDep, access: ProjectLead, raw: dict[str, str], after: int = 0
             ) -> dict[str, Any]:
    project = access.project
    error = None
    try:
        filters = dm.parse_filters(raw)
    except InvalidInput as exc:
        filters, error = {}, exc.message
    page = dm.browse(db, project, filters, after_id=after)
    labels = project_labels(db, project.id)
    separator = LABEL_SEPARATOR  # a multi-label CSV's: one that no label name contains
    if is_multi_label(project) and any(LABEL_SEPARATOR in label.name for label in labels):
        separator = proposed_separator([label.name for label in labels]) or LABEL_SEPARATOR
    return {
        "project": project,
        "active": "data",
        "can_lead": True,
        "raw": raw,
        "query": urlencode(raw),
        "filter_error": error,
        "page": page,
        "total": dm.count_matching(db, project, filters, cap=dm.COUNT_CAP),
        "labels": labels,
        "annotators": dm.annotators(db, project),
        "splits": SPLITS,
        "formats": data_export.FORMATS,
        "actions": dm.ACTIONS,
        "multi_label": is_multi_label(project),
        "default_separator": separator,
        "separator_moved": separator != LABEL_SEPARATOR,
    }


@router.get("/projects/{project_id}/data")
def data_page(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    raw = _raw_filters(request.query_params)
    context = _context(db, access, raw)
    block = "results" if request.headers.get("HX-Target") == "data-results" else None
    return render_page(request, "data/page.html", context, block=block)


@router.get("/projects/{project_id}/data/rows")
def more_rows(request: Request, db: SessionDep, access: ProjectLead,
              after: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0) -> Response:
    """The next page's rows (htmx appends them in place of the "load more" row)."""
    context = _context(db, access, _raw_filters(request.query_params), after=max(after, 0))
    return render_page(request, "data/page.html", context, block="rows")


def _selected_ids(form: FormData) -> tuple[int, ...] | None:
    if form.get("all_matching") == "yes":
        return None
    ids = []
    for value in form.getlist("item_ids"):
        try:
            ids.append(int(str(value)))
        except ValueError:
            raise InvalidInput("Invalid item selection.", details={"field": "item_ids"}) from None
    return tuple(ids)


@router.post("/projects/{project_id}/data/bulk")
def bulk_action(request: Request, db: SessionDep, access: ProjectLead, form: FormDep
                ) -> Response:
    raw = _raw_filters(form)
    target = dm.Target(filters=dm.parse_filters(raw), item_ids=_selected_ids(form))
    action = str(form.get("action") or "")
    try:
        result = dm.run_bulk_action(
            db, access.project, access.user, target, action,
            # Not "label"/"split": those names are filters (the target), these are the new values.
            label=str(form.get("new_label") or "") or None,
            # Multi-label: the ticked labels are the new set (none ticked: none of these).
            label_ids=form_ids(form, "new_label_ids") if is_multi_label(access.project) else None,
            split=str(form.get("new_split") or "") or None,
            confirm=form.get("confirm") == "yes",
        )
    except dm.ConfirmationRequired as exc:
        context = {
            "project": access.project, "active": "data", "can_lead": True,
            "message": exc.message, "impact": exc.details, "raw": raw,
            "item_ids": target.item_ids, "back": _page_url(access.project.id, raw),
        }
        return render_page(request, "data/confirm_delete.html", context, status_code=409)
    flash(request, result.summary(), "success")
    return RedirectResponse(_page_url(access.project.id, raw), status_code=303)


@router.get("/projects/{project_id}/data/items/{item_id}")
def item_page(request: Request, db: SessionDep, access: ProjectLead, item_id: ItemId
              ) -> Response:
    detail = dm.item_detail(db, access.project, item_id)
    context = {"project": access.project, "active": "data", "can_lead": True, "d": detail}
    return render_page(request, "data/item.html", context)


@router.get("/projects/{project_id}/data/export")
def export(request: Request, db: SessionDep, access: ProjectLead, format: str = "csv",
           label_separator: Annotated[str, Query(max_length=20)] = LABEL_SEPARATOR) -> Response:
    filters = dm.parse_filters(_raw_filters(request.query_params))
    spool = data_export.write_export(db, access.project, filters, format,
                                     label_separator or LABEL_SEPARATOR)
    return stream_file(spool, data_export.MEDIA_TYPES[format],  # type: ignore[index]
                       data_export.export_filename(access.project, format))
