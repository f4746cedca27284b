"""``PATCH /api/v1/projects/{id}``: change a project's settings (a lead's admin-scoped token).

Only the fields sent change; the rest keep their values. The same validation as the settings page
(:class:`app.domain.projects.ProjectSettings`) applies, and removing a label that is in use is a
409. Reading and creating projects live in :mod:`app.api.projects`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import Field

from app.api.common import StrictInput, write_api_router
from app.api.projects import ProjectDetailOut
from app.api.projects import _detail as project_detail  # the one detail view (shared)
from app.deps import ProjectLead, SessionDep
from app.domain import projects as project_service
from app.domain.live_head import set_label_descriptions
from app.domain.policy import BUDGET_FIELDS, BudgetSettings
from contract import budget as limits

router = write_api_router(tags=["projects"])


class ProjectUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    labels: list[str] | None = Field(
        default=None, min_length=2, max_length=200,
        description="The full label list in order; labels in use cannot be removed.",
    )
    description: str | None = Field(default=None,
                                    max_length=project_service.MAX_DESCRIPTION_CHARS)
    guidelines: str | None = Field(default=None, max_length=project_service.MAX_GUIDELINES_CHARS)
    label_budget: int | None = Field(default=None, ge=1, le=limits.MAX_LABEL_BUDGET)
    batch_size: int | None = Field(default=None, ge=1, le=limits.MAX_BATCH_SIZE)
    reserve_fraction: float | None = Field(
        default=None, ge=0, le=limits.MAX_RESERVE_FRACTION,
        description="Share of the budget held back for the polish phase (0.10-0.20 suggested).",
    )
    stop_threshold: float | None = Field(default=None, ge=0, le=limits.MAX_STOP_THRESHOLD)
    auto_stop: bool | None = Field(default=None, description="Stop labelling when the stop "
                                   "rule fires.")
    annotations_per_item: int | None = Field(default=None, ge=1, le=10)
    task_type: Literal["single_label", "multi_label"] | None = Field(
        default=None, description="Refused (409) once the project has labels."
    )
    label_descriptions: dict[str, str] | None = Field(
        default=None,
        description="One-line descriptions by label name (others keep theirs); the zero-shot "
        "cold start ranks items by similarity to 'label: description'.",
    )


@router.patch("/projects/{project_id}", response_model=ProjectDetailOut)
def update_project(body: ProjectUpdate, db: SessionDep, access: ProjectLead) -> ProjectDetailOut:
    project = access.project
    current = project_service.ProjectSettings(
        name=project.name,
        labels=tuple(label.name for label in project_service.get_labels(db, project.id)),
        description=project.description,
        guidelines=project.guidelines,
        budget=BudgetSettings.of(project),
        annotations_per_item=project.annotations_per_item,
        task_type=project.task_type,
    )
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    descriptions = changes.pop("label_descriptions", None)
    if "labels" in changes:
        changes["labels"] = tuple(changes["labels"])
    budget = {name: changes.pop(name) for name in BUDGET_FIELDS if name in changes}
    settings = replace(current, budget=replace(current.budget, **budget), **changes)
    project_service.update_project(db, project, settings, by=access.user)
    if descriptions is not None:
        set_label_descriptions(db, project.id, descriptions)
    return project_detail(db, project)
