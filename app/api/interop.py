"""``/api/v1/projects/{id}/imports/{label-studio,prodigy}``: bring labelled data from other tools.

Upload the other tool's export as the multipart field ``file``; it is converted and then imported
through the same all-or-nothing pipeline as CSV/JSONL (see :mod:`app.domain.interop`). A
multi-label project reads each answer as a set: several Label Studio choices, a Prodigy ``accept``
list.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import File, Query, UploadFile
from pydantic import BaseModel

from app.api.common import write_api_router
from app.api.router import NOT_SUPPORTED
from app.deps import ProjectLead, SessionDep, SettingsDep
from app.domain.annotation.label_sets import is_multi_label
from app.domain.interop import (
    InteropReport,
    import_converted,
    label_studio_rows,
    parse_label_studio,
    prodigy_rows,
    project_label_names,
)

router = write_api_router(tags=["imports"])
router.responses.update(NOT_SUPPORTED)


class ImportCounts(BaseModel):
    rows: int
    created: int
    duplicates_in_file: int
    duplicates_in_project: int
    annotations: int
    per_label: dict[str, int]
    none_of_these: int
    batch_id: str


class InteropReportOut(BaseModel):
    source: str
    source_rows: int
    labelled: int
    unlabelled: int
    collapsed: int
    imported: ImportCounts


def _out(report: InteropReport) -> InteropReportOut:
    data = report.import_report.as_dict()
    return InteropReportOut(
        source=report.source,
        source_rows=report.source_rows,
        labelled=report.labelled,
        unlabelled=report.unlabelled,
        collapsed=report.collapsed,
        imported=ImportCounts(**{name: data[name] for name in ImportCounts.model_fields}),
    )


@router.post("/projects/{project_id}/imports/label-studio", response_model=InteropReportOut,
             status_code=201)
def import_label_studio(
    file: Annotated[UploadFile, File(description="Label Studio JSON export (list of tasks)")],
    db: SessionDep,
    access: ProjectLead,
    settings: SettingsDep,
    text_key: Annotated[str, Query(min_length=1, max_length=200)] = "text",
) -> InteropReportOut:
    tasks = parse_label_studio(file.file.read())
    rows = list(label_studio_rows(tasks, text_key=text_key,
                                  multi_label=is_multi_label(access.project)))
    report = import_converted(
        db, project=access.project, user=access.user, source="label_studio", rows=rows,
        max_text_chars=settings.max_text_chars,
    )  # fmt: skip
    return _out(report)


@router.post("/projects/{project_id}/imports/prodigy", response_model=InteropReportOut,
             status_code=201)
def import_prodigy(
    file: Annotated[UploadFile, File(description="Prodigy JSONL export (prodigy db-out)")],
    db: SessionDep,
    access: ProjectLead,
    settings: SettingsDep,
) -> InteropReportOut:
    labels = project_label_names(db, access.project.id)
    rows = list(prodigy_rows(file.file, labels, multi_label=is_multi_label(access.project)))
    report = import_converted(
        db, project=access.project, user=access.user, source="prodigy", rows=rows,
        max_text_chars=settings.max_text_chars,
    )  # fmt: skip
    return _out(report)
