"""``/api/v1/projects/{id}/model-versions``: history with metrics; promote and roll back.

Versions are addressed by their number within the project (v1, v2, …), as clients pin them.
Rollback lives at ``POST /projects/{id}/rollback``: under ``/model-versions/`` its name would be
read as a version number by ``GET /model-versions/{version}``.
Promotion and rollback switch the project's current-version pointer in one transaction (see
:mod:`app.domain.model_versions`); they need a lead's token with the ``admin`` scope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel

from app.api.common import write_api_router
from app.db.models import ModelVersion, Project
from app.deps import ProjectLead, ProjectReader, SessionDep, SettingsDep
from app.domain import model_versions as versions
from app.domain.adapters import version_by_number
from app.domain.artifact_hygiene import set_pinned

router = write_api_router(tags=["model versions"])

VersionNumber = Annotated[int, Path(ge=1, le=2_147_483_647, description="Version number")]


class ModelVersionOut(BaseModel):
    id: int
    version: int
    status: str
    is_current: bool
    adapter_kind: str
    data_version: int
    labels_used: int
    metrics: dict[str, Any]
    sha256: str
    run_id: int | None
    created_at: datetime
    promoted_at: datetime | None
    pinned: bool
    artifact_deleted: bool


def _out(row: ModelVersion, project: Project) -> ModelVersionOut:
    return ModelVersionOut(
        id=row.id,
        version=row.version,
        status=row.status,
        is_current=project.current_model_version_id == row.id,
        adapter_kind=row.adapter_kind,
        data_version=row.data_version,
        labels_used=row.labels_used,
        metrics=dict(row.metrics),
        sha256=row.sha256,
        run_id=row.run_id,
        created_at=row.created_at,
        promoted_at=row.promoted_at,
        pinned=row.pinned,
        artifact_deleted=row.artifact_deleted,
    )


@router.get("/projects/{project_id}/model-versions", response_model=list[ModelVersionOut])
def list_model_versions(db: SessionDep, access: ProjectReader) -> list[ModelVersionOut]:
    """Every version of the project, newest first."""
    return [_out(row, access.project) for row in versions.list_versions(db, access.project.id)]


@router.get("/projects/{project_id}/model-versions/{version}", response_model=ModelVersionOut)
def get_model_version(
    version: VersionNumber, db: SessionDep, access: ProjectReader
) -> ModelVersionOut:
    return _out(version_by_number(db, access.project.id, version), access.project)


@router.post(
    "/projects/{project_id}/model-versions/{version}/promote", response_model=ModelVersionOut
)
def promote_model_version(
    version: VersionNumber, db: SessionDep, access: ProjectLead, settings: SettingsDep
) -> ModelVersionOut:
    """Make this version current; the annotation queue is rebuilt with it after commit."""
    row = version_by_number(db, access.project.id, version)
    promoted = versions.promote(db, access.project.id, row.id, settings=settings)
    return _out(promoted, access.project)


@router.post("/projects/{project_id}/model-versions/{version}/pin", response_model=ModelVersionOut)
def pin_model_version(
    version: VersionNumber, db: SessionDep, access: ProjectLead
) -> ModelVersionOut:
    """Pin a version: retention (``TAPESTRY_KEEP_VERSIONS``) never deletes its adapter."""
    row = version_by_number(db, access.project.id, version)
    return _out(set_pinned(db, row, True), access.project)


@router.post(
    "/projects/{project_id}/model-versions/{version}/unpin", response_model=ModelVersionOut
)
def unpin_model_version(
    version: VersionNumber, db: SessionDep, access: ProjectLead
) -> ModelVersionOut:
    """Unpin a version: retention may delete its adapter once it is not among the newest N."""
    row = version_by_number(db, access.project.id, version)
    return _out(set_pinned(db, row, False), access.project)


@router.post("/projects/{project_id}/rollback", response_model=ModelVersionOut)
def roll_back_model_version(
    db: SessionDep, access: ProjectLead, settings: SettingsDep
) -> ModelVersionOut:
    """Promote the newest complete version older than the current one (409 when none)."""
    return _out(versions.rollback(db, access.project.id, settings=settings), access.project)
