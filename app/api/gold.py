"""``/api/v1/projects/{id}/gold``: gold items and per-annotator accuracy on them (leads only).

An annotator never reads gold answers: every route here needs the lead level on the project.
A multi-label project's gold answer is a set (``labels`` by name or ``label_ids``; ``[]``: none
of these); its rows and annotators also carry ``mean_jaccard`` (see :mod:`app.domain.gold`),
fields a single-label project's responses leave out.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Query, Response
from pydantic import BaseModel, Field

from app.api.common import StrictInput, write_api_router
from app.api.router import NOT_SUPPORTED
from app.deps import MAX_DB_INT, IdPath, ProjectLead, SessionDep
from app.domain import gold, label_issues
from app.errors import InvalidInput

router = write_api_router(tags=["gold"])
router.responses.update(NOT_SUPPORTED)


class GoldIn(StrictInput):
    item_id: int = Field(ge=1, le=MAX_DB_INT,
                         description="The item to make gold (or whose answer changes).")
    label: Annotated[str, Field(max_length=200)] | Annotated[int, Field(ge=1, le=MAX_DB_INT)] | (
        None) = Field(default=None, description="The answer: a label name or a label id "
                                                "(single-label projects).")
    labels: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=200,
        description="Multi-label projects: the answer set by label name; [] means none of them.")
    label_ids: list[Annotated[int, Field(ge=1, le=MAX_DB_INT)]] | None = Field(
        default=None, max_length=200,
        description="Multi-label projects: the answer set by label id; [] means none of them.")

    def answer(self) -> gold.GoldAnswer:
        given = [value for value in (self.label, self.labels, self.label_ids) if value is not None]
        if len(given) != 1:
            raise InvalidInput(
                "Give the answer once: label (a single-label project), or labels or label_ids "
                "(a multi-label project's set; [] means none of them).",
                details={"field": "label"})
        return given[0]


class GoldItemOut(BaseModel):
    item_id: int
    external_id: str | None
    text: str
    label: str = Field(description="The answer; multi-label: the set as one text.")
    answers: int = Field(description="Annotators who answered it.")
    correct: int = Field(description="Answers equal to the gold answer (multi-label: the "
                                     "exact set).")
    labels: list[str] | None = Field(
        default=None, description="Multi-label projects only: the gold set ([]: none of these).")
    mean_jaccard: float | None = Field(
        default=None, description="Multi-label projects only: the answers' mean Jaccard index "
                                  "with the gold set (null without answers).")


class AnnotatorGoldOut(BaseModel):
    user_id: int
    name: str
    correct: int
    total: int
    accuracy: float | None
    ci_low: float = Field(description="Wilson 95 % interval, lower end.")
    ci_high: float
    flagged: bool
    mean_jaccard: float | None = Field(
        default=None, description="Multi-label projects only: the mean Jaccard index of the "
                                  "annotator's sets with the gold sets (accuracy counts exact "
                                  "matches).")


class GoldReportOut(BaseModel):
    gold_items: int
    rate: float
    min_accuracy: float
    min_count: int
    annotators: list[AnnotatorGoldOut]


class GoldSettingsIn(StrictInput):
    rate: float | None = Field(default=None, ge=0, le=0.5)
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_count: int | None = Field(default=None, ge=1, le=10_000)


def _row(row: gold.GoldRow) -> GoldItemOut:
    sets = {} if row.labels is None else {"labels": list(row.labels),
                                           "mean_jaccard": row.mean_jaccard}
    return GoldItemOut(item_id=row.item_id, external_id=row.external_id, text=row.text,
                       label=row.label, answers=row.answers, correct=row.correct, **sets)


def _report(report: gold.GoldReport) -> GoldReportOut:
    return GoldReportOut(
        gold_items=report.gold_items, rate=report.rate, min_accuracy=report.min_accuracy,
        min_count=report.min_count,
        annotators=[
            AnnotatorGoldOut(user_id=a.user_id, name=a.name, correct=a.correct, total=a.total,
                             accuracy=a.accuracy, ci_low=a.low, ci_high=a.high, flagged=a.flagged,
                             **({"mean_jaccard": a.mean_jaccard} if report.multi_label else {}))
            for a in report.annotators
        ],
    )


@router.get("/projects/{project_id}/gold", response_model=list[GoldItemOut],
            response_model_exclude_unset=True)
def list_gold(db: SessionDep, access: ProjectLead) -> list[GoldItemOut]:
    return [_row(r) for r in gold.gold_items(db, access.project)]


@router.post("/projects/{project_id}/gold", response_model=GoldItemOut,
             response_model_exclude_unset=True)
def mark_gold(body: GoldIn, db: SessionDep, access: ProjectLead) -> GoldItemOut:
    """Make an item gold with this answer (a multi-label project: ``labels`` or ``label_ids``,
    the set); marking a gold item again changes its answer."""
    gold.mark_gold(db, access.project, body.item_id, body.answer(), by=access.user)
    row = next(r for r in gold.gold_items(db, access.project) if r.item_id == body.item_id)
    return _row(row)


@router.delete("/projects/{project_id}/gold/{item_id}", status_code=204)
def delete_gold(item_id: IdPath, db: SessionDep, access: ProjectLead) -> Response:
    gold.unmark_gold(db, access.project, item_id, by=access.user)
    return Response(status_code=204)


@router.get("/projects/{project_id}/gold-accuracy", response_model=GoldReportOut,
            response_model_exclude_unset=True)
def gold_accuracy(db: SessionDep, access: ProjectLead) -> GoldReportOut:
    return _report(gold.gold_report(db, access.project))


@router.patch("/projects/{project_id}/gold-settings", response_model=GoldReportOut,
              response_model_exclude_unset=True)
def gold_settings(body: GoldSettingsIn, db: SessionDep, access: ProjectLead) -> GoldReportOut:
    gold.update_gold_settings(access.project, rate=body.rate, min_accuracy=body.min_accuracy,
                              min_count=body.min_count)
    db.flush()
    return _report(gold.gold_report(db, access.project))


class LikelyErrorOut(BaseModel):
    item_id: int
    text: str
    given: str
    suggested: str
    score: float = Field(description="p(suggested) - p(given), out of fold.")
    flagged: bool


@router.get("/projects/{project_id}/label-issues", response_model=list[LikelyErrorOut])
def list_label_issues(db: SessionDep, access: ProjectLead,
                      limit: Annotated[int, Query(ge=1, le=label_issues.MAX_LIST)] = 50,
                      flagged_only: bool = True) -> list[LikelyErrorOut]:
    """Likely label errors (confident learning), most likely first."""
    return [LikelyErrorOut(**asdict(e)) for e in
            label_issues.likely_errors(db, access.project, limit=limit, flagged_only=flagged_only)]


@router.post("/projects/{project_id}/label-issues/recompute", status_code=202)
def recompute_label_issues(db: SessionDep, access: ProjectLead) -> dict[str, str]:
    label_issues.request_recompute(db, access.project)
    return {"status": "queued"}
