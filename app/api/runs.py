"""``/api/v1/projects/{id}/runs``: launch TAPT, a retrain or a queue rebuild; follow progress.

Launching records a run row and sends its job after commit (``app.domain.runs``): requests of one
kind coalesce while a run of that kind is queued, so the answer may be an existing queued run
(``requests`` counts how many asked). Progress is read from the run row the worker updates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, Field

from app.api.common import StrictInput, write_api_router
from app.api.router import NOT_SUPPORTED
from app.db.models import RUN_KINDS, RUN_QUEUE, RUN_RETRAIN, RUN_TAPT, TrainingRun
from app.deps import MAX_DB_INT, Level, ProjectContext, ProjectLead, ProjectReader, SessionDep
from app.domain import runs as run_service
from app.domain.tapt import estimate_tapt_seconds

router = write_api_router(tags=["runs"])
router.responses.update(NOT_SUPPORTED)

RunId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
RunKind = Literal["retrain", "tapt", "recompute_queue"]
RunKindFilter = Literal["retrain", "tapt", "recompute_queue", "score_pool"]
ConfigValue = (
    Annotated[int, Field(ge=-MAX_DB_INT, le=MAX_DB_INT)]
    | Annotated[float, Field(ge=-MAX_DB_INT, le=MAX_DB_INT, allow_inf_nan=False)]
    | Annotated[str, Field(max_length=500)]
    | bool
    | None
)


class RunIn(StrictInput):
    kind: RunKind
    reason: str = Field(default="requested through the API", max_length=200)
    force: bool = Field(default=False, description="retrain: even if this data was trained on")
    tapt_config: dict[str, ConfigValue] | None = Field(
        default=None,
        max_length=100,
        description="tapt: overrides of TaptConfig fields (e.g. max_steps, exactly that many "
                    "steps; epochs with min_steps and max_steps, passes over the pool within "
                    "bounds, the GPU default; max_minutes, a time budget the steps are fitted "
                    "to).",
    )


class TaptEstimateOut(BaseModel):
    steps: int
    seconds: float | None = Field(description="None until a TAPT run was measured here.")
    seconds_per_step: float | None
    basis: str
    measured_run_id: int | None
    on_gpu: bool | None


class RunOut(BaseModel):
    id: int
    project_id: int
    kind: str
    status: str
    phase: str
    step: int
    total: int
    fraction: float | None
    eta_seconds: float | None
    metrics: dict[str, Any]
    message: str
    attempts: int
    cancel_requested: bool
    requests: int
    data_version: int
    model_version_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_age_seconds: float | None
    error: str | None = Field(description="The failure's traceback; shown to leads only.")
    tapt_estimate: TaptEstimateOut | None = Field(
        default=None, description="tapt launches: the expected duration, measured on this machine."
    )


def _out(run: TrainingRun, access: ProjectContext) -> RunOut:
    progress = run_service.RunProgress.of(run, include_error=access.can(Level.LEAD))
    skip = {"requests", "tapt_estimate"}
    data = {name: getattr(progress, name) for name in RunOut.model_fields if name not in skip}
    return RunOut(**data, requests=int(run.params.get("requests", 1)))


@router.post("/projects/{project_id}/runs", response_model=RunOut, status_code=202)
def launch_run(body: RunIn, db: SessionDep, access: ProjectLead) -> RunOut:
    project, user = access.project, access.user
    if body.kind == RUN_RETRAIN:
        run = run_service.request_retrain(
            db, project, requested_by=user, reason=body.reason, force=body.force
        )
    elif body.kind == RUN_TAPT:
        run = run_service.request_tapt(
            db, project, requested_by=user, reason=body.reason, config=body.tapt_config
        )
        estimate = estimate_tapt_seconds(db, project, None, body.tapt_config)
        return _out(run, access).model_copy(
            update={"tapt_estimate": TaptEstimateOut(**estimate.as_dict())}
        )
    else:
        assert body.kind == RUN_QUEUE
        run = run_service.request_queue_recompute(
            db, project, requested_by=user, reason=body.reason
        )
    return _out(run, access)


@router.get("/projects/{project_id}/runs", response_model=list[RunOut])
def list_runs(
    db: SessionDep,
    access: ProjectReader,
    kind: Annotated[RunKindFilter | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[RunOut]:
    """The project's runs, newest first."""
    assert kind is None or kind in RUN_KINDS
    runs = run_service.list_runs(db, access.project.id, kind=kind, limit=limit)
    return [_out(run, access) for run in runs]


@router.get("/projects/{project_id}/runs/{run_id}", response_model=RunOut)
def get_run(run_id: RunId, db: SessionDep, access: ProjectReader) -> RunOut:
    """One run's progress (a read only: the web process's scheduled reaper notices dead workers)."""
    return _out(run_service.get_run(db, access.project.id, run_id, fresh=True), access)


@router.post("/projects/{project_id}/runs/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: RunId, db: SessionDep, access: ProjectLead) -> RunOut:
    """Cancel a queued run at once, or ask a running one to stop at its next step."""
    return _out(run_service.cancel_run(db, access.project.id, run_id), access)
