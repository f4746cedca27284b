"""``/api/v1/projects/{id}/metrics``: the learning curve and the newest round's evaluation.

One point per active-learning round (labels used → dev accuracy and macro-F1), the numbers the
dashboard plots, as JSON for notebooks and monitoring.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from app.api.router import api_router
from app.deps import ProjectReader, SessionDep
from app.domain.dashboard import latest_evaluation, learning_curve

router = api_router(tags=["metrics"])


class CurvePointOut(BaseModel):
    labels: int
    accuracy: float | None
    macro_f1: float | None
    model_version_id: int | None
    created_at: datetime


class ClassScoreOut(BaseModel):
    label: str
    f1: float | None
    support: int


class EvaluationOut(BaseModel):
    round_id: int
    labels_used: int
    accuracy: float | None
    macro_f1: float | None
    label_names: list[str]
    confusion: list[list[int]]
    per_class: list[ClassScoreOut]
    dev_n: int


@router.get("/projects/{project_id}/metrics/learning-curve", response_model=list[CurvePointOut])
def get_learning_curve(db: SessionDep, access: ProjectReader) -> list[CurvePointOut]:
    return [
        CurvePointOut(
            labels=point.labels,
            accuracy=point.accuracy,
            macro_f1=point.macro_f1,
            model_version_id=point.model_version_id,
            created_at=point.created_at,
        )
        for point in learning_curve(db, access.project.id)
    ]


@router.get("/projects/{project_id}/metrics/latest", response_model=EvaluationOut | None)
def get_latest_evaluation(db: SessionDep, access: ProjectReader) -> EvaluationOut | None:
    """The newest round's dev evaluation (confusion: rows gold, columns predicted), or null."""
    evaluation = latest_evaluation(db, access.project)
    if evaluation is None:
        return None
    return EvaluationOut(
        round_id=evaluation.round_id,
        labels_used=evaluation.labels_used,
        accuracy=evaluation.accuracy,
        macro_f1=evaluation.macro_f1,
        label_names=list(evaluation.label_names),
        confusion=[list(row) for row in evaluation.confusion],
        per_class=[
            ClassScoreOut(label=c.label, f1=c.f1, support=c.support) for c in evaluation.per_class
        ],
        dev_n=evaluation.dev_n,
    )
