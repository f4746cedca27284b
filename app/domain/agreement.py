"""Inter-annotator agreement on items labelled more than once.

Two annotators: Cohen's kappa over the items both labelled. More: Fleiss' kappa over every item
with at least two labels (the per-item agreement averaged over items, which allows a varying
number of raters per item). Kappa corrects the raw agreement for what chance alone would give; a
lead reads it next to the list of disagreeing items, which is where guidelines get fixed.

Issue 16 adds, over the same items: Krippendorff's alpha (nominal), both statistics per class
(one class against the rest), Cohen's kappa per annotator pair, and each annotator's kappa against
the others' majority label on the items they share, which flags an annotator below
``Project.agreement_min_kappa`` once they share ``agreement_min_items`` items. Gold items are left
out: they are measured against their answer (:mod:`app.domain.gold`), and since every annotator
gets each of them they would otherwise swamp the overlap sample.

The statistics are pure functions over plain values (tested against textbook examples); the
database part only collects who said what about which item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.db.models import TASK_MULTI_LABEL, Annotation, GoldItem, Item, Label, Project, User
from app.domain.annotation.overlap import marked_count
from app.domain.policy import live
from app.errors import InvalidInput, NotSupported

MAX_DISAGREEMENTS = 25


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters; None when undefined (no items, or chance agreement is 1)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[c] * second.get(c, 0) for c in first) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa over items rated by two or more raters (each entry: one item's labels)."""
    items = [list(r) for r in ratings if len(r) >= 2]
    if not items:
        return None
    per_item = []
    totals: Counter[Hashable] = Counter()
    n_ratings = 0
    for labels in items:
        counts = Counter(labels)
        n = len(labels)
        per_item.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
        totals.update(counts)
        n_ratings += n
    observed = sum(per_item) / len(per_item)
    expected = sum((count / n_ratings) ** 2 for count in totals.values())
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha, nominal, over units (each: the labels given to one item, by any
    number of coders); units with fewer than two labels are not pairable and do not count.
    None when undefined (nothing pairable, or a single value: no disagreement is possible)."""
    # The coincidence-matrix form (Krippendorff 2011), nominal distance: every ordered pair of
    # values within a unit of m values adds 1 / (m - 1) to the coincidences; alpha is one minus
    # observed over expected disagreement. Pure Python: the web app imports no numpy.
    pairable = [Counter(u) for u in units if len(u) >= 2]
    totals: Counter[Hashable] = Counter()
    for counts in pairable:
        totals.update(counts)
    n = sum(totals.values())
    expected = n * n - sum(c * c for c in totals.values())
    if not pairable or expected == 0:
        return None
    observed = 0.0
    for counts in pairable:
        m = sum(counts.values())
        observed += (m * m - sum(c * c for c in counts.values())) / (m - 1)
    return 1.0 - (n - 1) * observed / expected


def masi_distance(a: frozenset[Hashable], b: frozenset[Hashable]) -> float:
    """MASI distance between two label sets (Passonneau 2006): ``1 - J * M`` with J the Jaccard
    index and M 1 for equal sets, 0.67 when one contains the other, 0.33 when they only overlap,
    0 when disjoint (NLTK's weights). Two empty sets ("none of these") agree: 0."""
    if not a and not b:
        return 0.0
    common, union = len(a & b), len(a | b)
    if a == b:
        monotonicity = 1.0
    elif common == min(len(a), len(b)):
        monotonicity = 0.67
    elif common:
        monotonicity = 0.33
    else:
        monotonicity = 0.0
    return 1.0 - common / union * monotonicity


def krippendorff_alpha_sets(units: Sequence[Sequence[frozenset[Hashable]]]) -> float | None:
    """Krippendorff's alpha for label sets (multi-label items) with the MASI distance; on
    single-label sets it equals :func:`krippendorff_alpha`. Units with fewer than two sets do
    not count; None when undefined (nothing pairable or no expected disagreement)."""
    # alpha = 1 - D_o / D_e: D_o pairs values within units (each unit's pairs weighted
    # 1 / (m - 1)), D_e pairs all pairable values; equal values are grouped, so the cost grows
    # with the number of distinct sets, not of labels.
    pairable = [Counter(u) for u in units if len(u) >= 2]
    totals: Counter[frozenset[Hashable]] = Counter()
    for counts in pairable:
        totals.update(counts)
    n = sum(totals.values())
    if not pairable or n < 2:
        return None
    distinct = list(totals)
    expected = sum(totals[a] * totals[b] * masi_distance(a, b)
                   for a in distinct for b in distinct) / (n * (n - 1))
    if expected == 0:
        return None
    observed = 0.0
    for counts in pairable:
        m = sum(counts.values())
        values = list(counts)
        observed += sum(counts[a] * counts[b] * masi_distance(a, b)
                        for a in values for b in values) / (m - 1)
    return 1.0 - (observed / n) / expected


def one_vs_rest(units: Sequence[Sequence[Hashable]], cls: Hashable) -> list[list[bool]]:
    """Each unit's labels as "is ``cls``" or not: agreement on one class."""
    return [[v == cls for v in unit] for unit in units]


def _others_majority(by: Mapping[int, Hashable], annotator: int) -> Hashable | None:
    """The label most of the *other* annotators gave the item; None on a tie among them."""
    top = Counter(label for other, label in by.items() if other != annotator).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


@dataclass(frozen=True)
class ClassAgreement:
    label: str
    fleiss_kappa: float | None
    alpha: float | None
    votes: int
    """Labels of this class given on shared items."""


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    items: int
    kappa: float | None
    percent: float


@dataclass(frozen=True)
class AnnotatorAgreement:
    """One annotator against the others: Cohen's kappa of (their label, the label most of the
    others gave) over the items they share; an item the others split evenly on is left out.
    With two annotators per item that is plain pairwise kappa; with more, a careful annotator is
    not dragged down by a noisy one, since the noisy one is outvoted."""

    user_id: int
    name: str
    items: int
    kappa: float | None
    percent: float
    flagged: bool


@dataclass(frozen=True)
class AgreementDetail:
    """Issue 16's statistics over items labelled by two or more annotators (gold left out)."""

    fleiss_kappa: float | None
    alpha: float | None
    per_class: tuple[ClassAgreement, ...]
    pairs: tuple[PairAgreement, ...]
    annotators: tuple[AnnotatorAgreement, ...]


def agreement_detail(
    votes: Mapping[int, Mapping[int, Hashable]],
    *,
    classes: Sequence[Hashable] = (),
    class_names: Mapping[Hashable, str] | None = None,
    names: Mapping[int, str] | None = None,
    min_kappa: float = 0.6,
    min_items: int = 20,
) -> AgreementDetail:
    """Overall, per class, per pair and per annotator, from {item: {annotator: label}}."""
    shared = {item: by for item, by in votes.items() if len(by) >= 2}
    units = [list(by.values()) for by in shared.values()]
    seen = {v for unit in units for v in unit}
    per_class = tuple(
        ClassAgreement(
            label=(class_names or {}).get(cls, str(cls)),
            fleiss_kappa=fleiss_kappa(one_vs_rest(units, cls)),
            alpha=krippendorff_alpha(one_vs_rest(units, cls)),
            votes=sum(unit.count(cls) for unit in units),
        )
        for cls in (list(classes) or sorted(seen, key=repr))
    )
    name = (names or {}).get
    raters = sorted({a for by in shared.values() for a in by})
    pairs = []
    for a, b in combinations(raters, 2):
        both = [(by[a], by[b]) for by in shared.values() if a in by and b in by]
        if both:
            pairs.append(PairAgreement(
                first=name(a, f"user {a}"), second=name(b, f"user {b}"), items=len(both),
                kappa=cohen_kappa(both), percent=sum(x == y for x, y in both) / len(both),
            ))
    annotators = []
    for a in raters:
        mine = [(by[a], consensus) for by in shared.values() if a in by
                if (consensus := _others_majority(by, a)) is not None]
        items = sum(1 for by in shared.values() if a in by)
        kappa = cohen_kappa(mine)
        annotators.append(AnnotatorAgreement(
            user_id=a, name=name(a, f"user {a}"), items=items, kappa=kappa,
            percent=sum(x == y for x, y in mine) / len(mine) if mine else 0.0,
            flagged=items >= min_items and kappa is not None and kappa < min_kappa,
        ))
    annotators.sort(key=lambda r: (not r.flagged, r.kappa if r.kappa is not None else 2.0,
                                   r.name))
    return AgreementDetail(
        fleiss_kappa=fleiss_kappa(units),
        alpha=krippendorff_alpha(units),
        per_class=per_class,
        pairs=tuple(pairs),
        annotators=tuple(annotators),
    )


@dataclass(frozen=True)
class Vote:
    annotator: str
    label: str


@dataclass(frozen=True)
class Disagreement:
    item_id: int
    text: str
    votes: tuple[Vote, ...]


@dataclass(frozen=True)
class VersionAgreement:
    """Agreement over the items whose every counted label was made under one guidelines version."""

    version: int | None
    """None: labels made before versions were recorded."""
    method: str | None
    kappa: float | None
    items: int
    raters: int
    percent_agreement: float | None
    alpha: float | None


def agreement_by_version(
    votes: Mapping[int, Mapping[int, Hashable]],
    versions: Mapping[tuple[int, int], int | None],
) -> tuple[tuple[VersionAgreement, ...], int]:
    """Split agreement by the guidelines version the labels were made under.

    ``versions`` maps (item, annotator) to the version of that annotator's counted label. An item
    whose labels span several versions belongs to none of them (it is counted as mixed, the
    second value): a disagreement across a guidelines change says little about either version.
    """
    split: dict[int | None, dict[int, Mapping[int, Hashable]]] = {}
    mixed = 0
    for item, by in votes.items():
        if len(by) < 2:
            continue
        seen = {versions.get((item, annotator)) for annotator in by}
        if len(seen) > 1:
            mixed += 1
            continue
        split.setdefault(seen.pop(), {})[item] = by
    rows = []
    for version in sorted(split, key=lambda v: (v is not None, v or 0)):
        method, kappa, items, raters, percent = compute_agreement(split[version])
        units = [list(by.values()) for by in split[version].values()]
        rows.append(VersionAgreement(version, method, kappa, items, raters, percent,
                                     krippendorff_alpha(units)))
    return tuple(rows), mixed


@dataclass(frozen=True)
class AgreementReport:
    method: str | None
    """"cohen", "fleiss", or None when no item has two labels yet."""
    kappa: float | None
    items: int
    """Items labelled by at least two annotators."""
    raters: int
    percent_agreement: float | None
    disagreements: tuple[Disagreement, ...]
    disagreement_count: int
    detail: AgreementDetail | None = None
    """Issue 16: alpha, per class, per pair, per annotator (with flags)."""
    overlap_items: int = 0
    """Items routed to several annotators so far (:mod:`app.domain.annotation.overlap`)."""
    overlap_rate: float = 0.0
    overlap_k: int = 2
    min_kappa: float = 0.6
    min_items: int = 20
    by_version: tuple[VersionAgreement, ...] = ()
    """Agreement per guidelines version (issue 16); items labelled across versions are left out."""
    mixed_version_items: int = 0

    @property
    def flagged(self) -> tuple[AnnotatorAgreement, ...]:
        return tuple(a for a in self.detail.annotators if a.flagged) if self.detail else ()

    @property
    def interpretation(self) -> str:
        """Landis & Koch's bands: rough, but what people expect next to a kappa."""
        k = self.kappa
        if k is None:
            return "not enough overlap yet"
        for bound, words in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"),
                             (0.8, "substantial")):
            if k <= bound:
                return words
        return "almost perfect"


def compute_agreement(
    votes: Mapping[int, Mapping[int, Hashable]],
) -> tuple[str | None, float | None, int, int, float | None]:
    """(method, kappa, items, raters, raw agreement) from {item: {annotator: label}}."""
    shared = {item: by for item, by in votes.items() if len(by) >= 2}
    raters = sorted({a for by in shared.values() for a in by})
    if not shared:
        return None, None, 0, len(raters), None
    unanimous = sum(1 for by in shared.values() if len(set(by.values())) == 1)
    percent = unanimous / len(shared)
    if len(raters) == 2:
        first, second = raters
        pairs = [(by[first], by[second]) for by in shared.values()]
        return "cohen", cohen_kappa(pairs), len(shared), 2, percent
    ratings = [list(by.values()) for by in shared.values()]
    return "fleiss", fleiss_kappa(ratings), len(shared), len(raters), percent


def agreement_report(db: Session, project_id: int) -> AgreementReport:
    """Agreement over live annotations; each annotator's latest label per item counts. Gold
    items are left out (see the module docstring)."""
    project = db.get(Project, project_id)
    if project is None:
        raise LookupError(f"project {project_id} does not exist")
    rows = db.execute(
        select(Annotation.item_id, Annotation.annotator_id, Annotation.label_id,
               Annotation.guideline_version)
        .where(
            Annotation.project_id == project_id,
            live(),
            Annotation.annotator_id.is_not(None),
            Annotation.label_id.is_not(None),  # single-label answers (sets: not measured yet)
            ~exists().where(GoldItem.item_id == Annotation.item_id),
        )
        .order_by(Annotation.id)
    ).tuples()
    votes: dict[int, dict[int, int]] = {}
    versions: dict[tuple[int, int], int | None] = {}
    for item_id, annotator_id, label_id, version in rows:
        assert annotator_id is not None and label_id is not None
        votes.setdefault(item_id, {})[annotator_id] = label_id
        versions[(item_id, annotator_id)] = version
    method, kappa, items, raters, percent = compute_agreement(votes)
    by_version, mixed = agreement_by_version(votes, versions)
    disputed = sorted(
        (item for item, by in votes.items() if len(by) >= 2 and len(set(by.values())) > 1),
        reverse=True,
    )
    listed = _describe(db, project_id, {i: votes[i] for i in disputed[:MAX_DISAGREEMENTS]})
    labels = db.execute(
        select(Label.id, Label.name).where(Label.project_id == project_id).order_by(Label.position)
    ).tuples().all()
    detail = agreement_detail(
        votes, classes=[i for i, _ in labels], class_names=dict(labels),
        names=_names(db, {a for by in votes.values() if len(by) >= 2 for a in by}),
        min_kappa=project.agreement_min_kappa, min_items=project.agreement_min_items,
    )
    return AgreementReport(
        method=method,
        kappa=kappa,
        items=items,
        raters=raters,
        percent_agreement=percent,
        disagreements=tuple(listed),
        disagreement_count=len(disputed),
        detail=detail,
        overlap_items=marked_count(db, project_id),
        overlap_rate=project.overlap_rate,
        overlap_k=project.overlap_k,
        min_kappa=project.agreement_min_kappa,
        min_items=project.agreement_min_items,
        by_version=by_version,
        mixed_version_items=mixed,
    )


def _names(db: Session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    return {
        uid: (name or email)
        for uid, name, email in db.execute(
            select(User.id, User.name, User.email).where(User.id.in_(list(user_ids)))
        ).tuples()
    }


def update_overlap_settings(
    project: Project,
    *,
    rate: float | None = None,
    k: int | None = None,
    min_kappa: float | None = None,
    min_items: int | None = None,
) -> None:
    """Change the overlap share, how many annotators an overlap item goes to, and when an
    annotator's agreement flags them (all checked before anything changes)."""
    if rate and project.task_type == TASK_MULTI_LABEL:
        raise NotSupported(
            "Overlap items are not supported for multi-label projects yet (agreement on label "
            "sets is not measured in the product); keep the overlap rate at 0.",
            details={"overlap_rate": rate})
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise InvalidInput("The overlap rate must be between 0 and 1 (0 % to 100 %).",
                           details={"overlap_rate": rate})
    if k is not None and not 2 <= k <= 5:
        raise InvalidInput("An overlap item goes to between 2 and 5 annotators.",
                           details={"overlap_k": k})
    if min_kappa is not None and not -1.0 <= min_kappa <= 1.0:
        raise InvalidInput("The agreement threshold (kappa) must be between -1 and 1.",
                           details={"agreement_min_kappa": min_kappa})
    if min_items is not None and not 1 <= min_items <= 10_000:
        raise InvalidInput("The minimum number of shared items must be between 1 and 10000.",
                           details={"agreement_min_items": min_items})
    if rate is not None:
        project.overlap_rate = rate
    if k is not None:
        project.overlap_k = k
    if min_kappa is not None:
        project.agreement_min_kappa = min_kappa
    if min_items is not None:
        project.agreement_min_items = min_items


def _describe(db: Session, project_id: int, votes: dict[int, dict[int, int]]
              ) -> list[Disagreement]:
    if not votes:
        return []
    texts = dict(
        db.execute(select(Item.id, Item.text).where(Item.id.in_(list(votes)))).tuples().all()
    )
    labels = dict(
        db.execute(select(Label.id, Label.name).where(Label.project_id == project_id))
        .tuples()
        .all()
    )
    annotator_ids = {a for by in votes.values() for a in by}
    people = {
        uid: (name or email)
        for uid, name, email in db.execute(
            select(User.id, User.name, User.email).where(User.id.in_(list(annotator_ids)))
        ).tuples()
    }
    return [
        Disagreement(
            item_id=item_id,
            text=texts.get(item_id, ""),
            votes=tuple(
                Vote(people.get(a, f"user {a}"), labels.get(label, "?"))
                for a, label in sorted(by.items())
            ),
        )
        for item_id, by in votes.items()
    ]
