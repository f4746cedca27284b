"""The import page for leads: upload a file, map columns, see the report (or the line errors).

A multi-label project's form also asks for the label separator (what joins label names in one
cell); a single-label project never shows nor sends one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from app.deps import ProjectLead, SessionDep, SettingsDep
from app.domain import projects as project_service
from app.domain.annotation.label_sets import is_multi_label
from app.domain.imports import (
    COLUMN_CANDIDATES,
    LABEL_SEPARATOR,
    NONE_OF_THESE,
    ColumnMapping,
    ImportOptions,
    detect_format,
    import_items,
)
from app.errors import DomainError
from app.web.forms import form_float, form_int
from app.web.templating import render_page

router = APIRouter(tags=["web"], include_in_schema=False)

_DEFAULTS = {"text_column": "text", "label_column": "", "id_column": "", "split_column": "",
             "gold_column": "", "format": "auto", "dev_fraction": "0", "seed": "0",
             "apply_existing": "", "label_separator": ""}


def _page(request: Request, access: ProjectLead, db: SessionDep, *, form: dict[str, str],
          error: DomainError | None = None) -> Response:
    context = {
        "project": access.project,
        "labels": project_service.get_labels(db, access.project.id),
        "form": form,
        "defaults": _DEFAULTS,
        "candidates": COLUMN_CANDIDATES,
        "error": error,
        "multi_label": is_multi_label(access.project),
        "default_separator": LABEL_SEPARATOR,
        "none_token": NONE_OF_THESE,
    }
    status = error.status_code if error else 200
    return render_page(request, "imports/form.html", context, status_code=status)


@router.get("/projects/{project_id}/import")
def import_page(request: Request, db: SessionDep, access: ProjectLead) -> Response:
    return _page(request, access, db, form=dict(_DEFAULTS))


@router.post("/projects/{project_id}/import")
def run_import(
    request: Request,
    db: SessionDep,
    access: ProjectLead,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    text_column: Annotated[str, Form(max_length=200)] = "text",
    label_column: Annotated[str, Form(max_length=200)] = "",
    id_column: Annotated[str, Form(max_length=200)] = "",
    split_column: Annotated[str, Form(max_length=200)] = "",
    gold_column: Annotated[str, Form(max_length=200)] = "",
    format: Annotated[str, Form(max_length=10)] = "auto",
    dev_fraction: Annotated[str, Form(max_length=20)] = "0",
    seed: Annotated[str, Form(max_length=20)] = "0",
    apply_existing: Annotated[str, Form(max_length=10)] = "",
    label_separator: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    multi_label = is_multi_label(access.project)
    form = {"text_column": text_column, "label_column": label_column, "id_column": id_column,
            "split_column": split_column, "format": format, "dev_fraction": dev_fraction,
            "seed": seed, "apply_existing": apply_existing, "gold_column": gold_column,
            "label_separator": label_separator if multi_label else ""}
    try:
        options = ImportOptions(
            format=detect_format(file.filename, file.content_type, format),
            mapping=ColumnMapping(text=text_column, label=label_column, id=id_column,
                                  split=split_column, gold=gold_column),
            dev_fraction=form_float(form, "dev_fraction", 0.0),
            seed=form_int(form, "seed", 0),
            max_text_chars=settings.max_text_chars,
            on_existing="apply" if apply_existing else "keep",
            label_separator=form["label_separator"] or None,
        )
        report = import_items(db, project=access.project, user=access.user, source=file.file,
                              options=options)
    except DomainError as exc:
        db.rollback()  # all or nothing, even if the failure came after some inserts
        return _page(request, access, db, form=form, error=exc)
    counts = project_service.project_counts(db, access.project.id)
    context = {"project": access.project, "report": report, "counts": counts,
               "filename": file.filename or "upload", "multi_label": multi_label}
    return render_page(request, "imports/report.html", context, status_code=201)
