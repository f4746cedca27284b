"""``/api/v1/projects``: list the projects a caller may see, read one, create one."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.common import StrictInput, write_api_router
from app.db.models import Project
from app.deps import CurrentUser, LeadUser, ProjectReader, SessionDep
from app.domain import projects as project_service
from app.domain.policy import BUDGET_FIELDS, BudgetSettings
from contract import budget as limits

router = write_api_router(tags=["projects"])


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    color: str
    shortcut: str
    position: int


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    guidelines: str
    base_model: str
    strategy: str
    label_budget: int
    batch_size: int
    reserve_fraction: float
    stop_threshold: float
    auto_stop: bool
    annotations_per_item: int
    task_type: str
    data_version: int
    current_model_version_id: int | None
    created_at: datetime


class CountsOut(BaseModel):
    items: int
    by_split: dict[str, int]
    labelled_items: int
    annotations: int
    per_label: dict[str, int]


class ProjectDetailOut(ProjectOut):
    labels: list[LabelOut]
    counts: CountsOut


class ProjectCreate(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    labels: list[str] = Field(min_length=2, max_length=200)
    description: str = Field(default="", max_length=project_service.MAX_DESCRIPTION_CHARS)
    guidelines: str = Field(default="", max_length=project_service.MAX_GUIDELINES_CHARS)
    label_budget: int = Field(default=limits.DEFAULT_LABEL_BUDGET, ge=1, le=limits.MAX_LABEL_BUDGET)
    batch_size: int = Field(default=limits.DEFAULT_BATCH_SIZE, ge=1, le=limits.MAX_BATCH_SIZE)
    reserve_fraction: float = Field(
        default=limits.DEFAULT_RESERVE_FRACTION, ge=0, le=limits.MAX_RESERVE_FRACTION,
        description="Share of the budget held back for the polish phase (0.10-0.20 suggested).",
    )
    stop_threshold: float = Field(
        default=limits.DEFAULT_STOP_THRESHOLD, ge=0, le=limits.MAX_STOP_THRESHOLD
    )
    auto_stop: bool = Field(default=False, description="Stop labelling when the stop rule fires.")
    annotations_per_item: int = Field(default=1, ge=1, le=10)
    task_type: Literal["single_label", "multi_label"] = Field(
        default="single_label",
        description="One label per item, or a set of labels per item (possibly none); fixed "
                    "once the project has labels.",
    )


def _detail(db: SessionDep, project: Project) -> ProjectDetailOut:
    counts = project_service.project_counts(db, project.id)
    return ProjectDetailOut(
        **ProjectOut.model_validate(project).model_dump(),
        labels=[
            LabelOut.model_validate(label) for label in project_service.get_labels(db, project.id)
        ],
        counts=CountsOut(
            items=counts.items,
            by_split=counts.by_split,
            labelled_items=counts.labelled_items,
            annotations=counts.annotations,
            per_label=counts.per_label,
        ),
    )


@router.get("/projects", response_model=list[ProjectOut])
def list_projects(db: SessionDep, caller: CurrentUser) -> list[ProjectOut]:
    projects = project_service.list_visible_projects(
        db, caller.user, only_project_id=caller.bound_project_id
    )
    return [ProjectOut.model_validate(p) for p in projects]


@router.post("/projects", response_model=ProjectDetailOut, status_code=201)
def create_project(body: ProjectCreate, db: SessionDep, caller: LeadUser) -> ProjectDetailOut:
    settings = project_service.ProjectSettings(
        name=body.name,
        labels=tuple(body.labels),
        description=body.description,
        guidelines=body.guidelines,
        budget=BudgetSettings(**body.model_dump(include=set(BUDGET_FIELDS))),
        annotations_per_item=body.annotations_per_item,
        task_type=body.task_type,
    )
    project = project_service.create_project(db, creator=caller.user, settings=settings)
    return _detail(db, project)


@router.get("/projects/{project_id}", response_model=ProjectDetailOut)
def get_project(db: SessionDep, access: ProjectReader) -> ProjectDetailOut:
    return _detail(db, access.project)
