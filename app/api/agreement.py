"""``/api/v1/projects/{id}/agreement``: inter-annotator agreement on overlap items, and the
overlap settings (leads only: agreement names annotators and their labels)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.api.common import StrictInput, write_api_router
from app.deps import ProjectLead, SessionDep
from app.domain import agreement

router = write_api_router(tags=["agreement"])


class ClassAgreementOut(BaseModel):
    label: str
    fleiss_kappa: float | None
    alpha: float | None = Field(description="Krippendorff's alpha, this class against the rest.")
    votes: int


class PairAgreementOut(BaseModel):
    first: str
    second: str
    items: int
    kappa: float | None = Field(description="Cohen's kappa; null when undefined.")
    percent: float


class AnnotatorAgreementOut(BaseModel):
    user_id: int
    name: str
    items: int = Field(description="Items they share with at least one other annotator.")
    kappa: float | None = Field(description="Cohen's kappa of all (theirs, another's) pairs.")
    percent: float
    flagged: bool


class VersionAgreementOut(BaseModel):
    version: int | None = Field(description="Guidelines version; null: before versions existed.")
    method: str | None
    kappa: float | None
    alpha: float | None
    items: int
    raters: int
    percent_agreement: float | None


class AgreementOut(BaseModel):
    items: int = Field(description="Items labelled by two or more annotators (gold left out).")
    raters: int
    method: str | None
    kappa: float | None = Field(description="Cohen's kappa for two raters, else Fleiss'.")
    fleiss_kappa: float | None
    alpha: float | None = Field(description="Krippendorff's alpha, nominal.")
    percent_agreement: float | None
    overlap_items: int
    overlap_rate: float
    overlap_k: int
    min_kappa: float
    min_items: int
    per_class: list[ClassAgreementOut]
    pairs: list[PairAgreementOut]
    annotators: list[AnnotatorAgreementOut]
    by_version: list[VersionAgreementOut] = Field(
        description="Agreement per guidelines version, over items whose labels were all made "
        "under that version."
    )
    mixed_version_items: int = Field(
        description="Items labelled under more than one guidelines version (in no version row)."
    )


class OverlapSettingsIn(StrictInput):
    overlap_rate: float | None = Field(default=None, ge=0, le=1)
    overlap_k: int | None = Field(default=None, ge=2, le=5)
    min_kappa: float | None = Field(default=None, ge=-1, le=1)
    min_items: int | None = Field(default=None, ge=1, le=10_000)


def _out(report: agreement.AgreementReport) -> AgreementOut:
    detail = report.detail
    assert detail is not None  # agreement_report always fills it
    return AgreementOut(
        items=report.items,
        raters=report.raters,
        method=report.method,
        kappa=report.kappa,
        fleiss_kappa=detail.fleiss_kappa,
        alpha=detail.alpha,
        percent_agreement=report.percent_agreement,
        overlap_items=report.overlap_items,
        overlap_rate=report.overlap_rate,
        overlap_k=report.overlap_k,
        min_kappa=report.min_kappa,
        min_items=report.min_items,
        per_class=[
            ClassAgreementOut(
                label=c.label, fleiss_kappa=c.fleiss_kappa, alpha=c.alpha, votes=c.votes
            )
            for c in detail.per_class
        ],
        pairs=[
            PairAgreementOut(
                first=p.first, second=p.second, items=p.items, kappa=p.kappa, percent=p.percent
            )
            for p in detail.pairs
        ],
        annotators=[
            AnnotatorAgreementOut(
                user_id=a.user_id,
                name=a.name,
                items=a.items,
                kappa=a.kappa,
                percent=a.percent,
                flagged=a.flagged,
            )
            for a in detail.annotators
        ],
        by_version=[
            VersionAgreementOut(
                version=v.version, method=v.method, kappa=v.kappa, alpha=v.alpha, items=v.items,
                raters=v.raters, percent_agreement=v.percent_agreement,
            )
            for v in report.by_version
        ],
        mixed_version_items=report.mixed_version_items,
    )


@router.get("/projects/{project_id}/agreement", response_model=AgreementOut)
def get_agreement(db: SessionDep, access: ProjectLead) -> AgreementOut:
    return _out(agreement.agreement_report(db, access.project.id))


@router.patch("/projects/{project_id}/agreement-settings", response_model=AgreementOut)
def agreement_settings(
    body: OverlapSettingsIn, db: SessionDep, access: ProjectLead
) -> AgreementOut:
    agreement.update_overlap_settings(
        access.project,
        rate=body.overlap_rate,
        k=body.overlap_k,
        min_kappa=body.min_kappa,
        min_items=body.min_items,
    )
    db.flush()
    return _out(agreement.agreement_report(db, access.project.id))
