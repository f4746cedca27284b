"""``/api/v1/projects/{id}/agreement``: inter-annotator agreement on overlap items, and the
overlap settings (leads only: agreement names annotators and their labels).

A multi-label project's report has ``method`` ``krippendorff_masi``: ``kappa``, ``alpha`` and
the per-pair and per-annotator ``kappa`` hold Krippendorff's alpha with the MASI distance over
label sets, ``fleiss_kappa`` is null, per-class rows measure each label present or absent, and
each disagreement's votes are the annotators' sets as text (:mod:`app.domain.agreement`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.api.common import StrictInput, write_api_router
from app.deps import ProjectLead, SessionDep
from app.domain import agreement

router = write_api_router(tags=["agreement"])
TEXT_CHARS = 2000


class ClassAgreementOut(BaseModel):
    label: str
    fleiss_kappa: float | None
    alpha: float | None = Field(description="Krippendorff's alpha, this class against the rest.")
    votes: int


class PairAgreementOut(BaseModel):
    first: str
    second: str
    items: int
    kappa: float | None = Field(
        description="Cohen's kappa (multi-label: alpha-MASI); null when undefined."
    )
    percent: float = Field(description="Share of shared items with the same label (or set).")


class AnnotatorAgreementOut(BaseModel):
    user_id: int
    name: str
    items: int = Field(description="Items they share with at least one other annotator.")
    kappa: float | None = Field(
        description="Cohen's kappa of (their label, the others' majority label); multi-label: "
        "Krippendorff's alpha-MASI of (their set, the others' majority set)."
    )
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


class VoteOut(BaseModel):
    annotator: str
    label: str = Field(description="Their label; multi-label: their set as text "
                       "(\"billing, bug\"; \"none of these\").")


class DisagreementOut(BaseModel):
    item_id: int
    text: str = Field(description=f"The item's text (its first {TEXT_CHARS} characters).")
    votes: list[VoteOut]


class AgreementOut(BaseModel):
    items: int = Field(description="Items labelled by two or more annotators (gold left out).")
    raters: int
    method: str | None = Field(
        description="cohen, fleiss, krippendorff_masi (multi-label projects: label sets), or "
        "null before any item has two labels."
    )
    statistic: str = Field(
        description="The headline statistic's name: Cohen's κ, Fleiss' κ or Krippendorff's α "
        "(MASI)."
    )
    kappa: float | None = Field(
        description="The headline coefficient: Cohen's kappa for two raters, else Fleiss'; "
        "for method krippendorff_masi, Krippendorff's alpha with the MASI distance."
    )
    interpretation: str = Field(
        description="Landis & Koch's band for a kappa; Krippendorff's reading for alpha-MASI "
        "(reliable from 0.8, tentative from 0.667, else unreliable)."
    )
    fleiss_kappa: float | None = Field(description="Fleiss' kappa; null for label sets.")
    alpha: float | None = Field(
        description="Krippendorff's alpha: nominal, or with the MASI distance for label sets."
    )
    percent_agreement: float | None = Field(
        description="Share of shared items whose labels (or sets) are all identical."
    )
    disagreement_count: int = Field(description="Shared items whose labels (or sets) differ.")
    disagreements: list[DisagreementOut] = Field(
        description=f"The newest of them, at most {agreement.MAX_DISAGREEMENTS}."
    )
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
        statistic=report.statistic,
        kappa=report.kappa,
        interpretation=report.interpretation,
        fleiss_kappa=detail.fleiss_kappa,
        alpha=detail.alpha,
        percent_agreement=report.percent_agreement,
        disagreement_count=report.disagreement_count,
        disagreements=[
            DisagreementOut(
                item_id=d.item_id,
                text=d.text[:TEXT_CHARS],
                votes=[VoteOut(annotator=v.annotator, label=v.label) for v in d.votes],
            )
            for d in report.disagreements
        ],
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
