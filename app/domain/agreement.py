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

**Multi-label projects** (issue 19) answer with label sets, and two sets can agree in part, so
kappa over exact sets would count {billing, bug} against {billing} as a plain miss. Their report
(method :data:`METHOD_MASI`) uses Krippendorff's alpha with the MASI distance (Passonneau 2006;
:func:`krippendorff_alpha_sets`) over each annotator's latest set per item, in the report's
``kappa`` field; the raw agreement is the share of shared items whose sets are all identical,
and a disagreement is an item whose sets differ. Per annotator pair: alpha-MASI over the items
the pair shares. Per annotator: alpha-MASI of (their set, the others' majority set) over the items
they share (see :func:`set_agreement_detail`), flagged below the same threshold. Per label: that
label present or not, as one-vs-rest classes are for single labels. By guidelines version: the
same statistic per version. Alpha is read on Krippendorff's own scale (0.8 and above reliable,
0.667 to 0.8 tentative, below unreliable), not Landis & Koch's.

The statistics are pure functions over plain values (tested against textbook examples); the
database part only collects who said what about which item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, cast

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.db.models import Annotation, GoldItem, Item, Label, Project, User
from app.domain.annotation.label_sets import is_multi_label, label_sets, set_text
from app.domain.annotation.overlap import marked_count
from app.domain.policy import live
from app.errors import InvalidInput

MAX_DISAGREEMENTS = 25
METHOD_COHEN = "cohen"
METHOD_FLEISS = "fleiss"
METHOD_MASI = "krippendorff_masi"
"""A multi-label project's method: Krippendorff's alpha with the MASI distance over label sets."""
STATISTIC_NAMES = {
    METHOD_COHEN: "Cohen's κ",
    METHOD_FLEISS: "Fleiss' κ",
    METHOD_MASI: "Krippendorff's α (MASI)",
}

LabelSet = frozenset[Hashable]


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


def _others_majority_set(by: Mapping[int, LabelSet], annotator: int) -> LabelSet | None:
    """The labels in more than half of the *other* annotators' sets; None when the others are
    split evenly on some label (with two others: when their sets differ), as a tie leaves a
    single-label item out. With one other annotator: their set."""
    others = [labels for other, labels in by.items() if other != annotator]
    if not others:
        return None
    counts = Counter(label for labels in others for label in labels)
    if any(2 * count == len(others) for count in counts.values()):
        return None
    return frozenset(label for label, count in counts.items() if 2 * count > len(others))


def has_label(units: Sequence[Sequence[LabelSet]], label: Hashable) -> list[list[bool]]:
    """Each unit's sets as "has ``label``" or not: agreement on one label of a multi-label task."""
    return [[label in labels for labels in unit] for unit in units]


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
    not dragged down by a noisy one, since the noisy one is outvoted.

    Multi-label (:func:`set_agreement_detail`): ``kappa`` holds Krippendorff's alpha-MASI of
    (their set, the others' majority set), and ``percent`` the share of identical sets."""

    user_id: int
    name: str
    items: int
    kappa: float | None
    percent: float
    flagged: bool


@dataclass(frozen=True)
class AgreementDetail:
    """Issue 16's statistics over items labelled by two or more annotators (gold left out).
    Multi-label: ``fleiss_kappa`` is None and ``alpha`` is alpha-MASI
    (:func:`set_agreement_detail`)."""

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
    pairs, annotators = _pairs_and_annotators(shared, names, cohen_kappa, _others_majority,
                                              min_kappa=min_kappa, min_items=min_items)
    return AgreementDetail(
        fleiss_kappa=fleiss_kappa(units),
        alpha=krippendorff_alpha(units),
        per_class=per_class,
        pairs=pairs,
        annotators=annotators,
    )


def _pairs_and_annotators(
    shared: Mapping[int, Mapping[int, Any]],
    names: Mapping[int, str] | None,
    statistic: Callable[[list[tuple[Any, Any]]], float | None],
    majority: Callable[[Mapping[int, Any], int], Any],
    *,
    min_kappa: float,
    min_items: int,
) -> tuple[tuple[PairAgreement, ...], tuple[AnnotatorAgreement, ...]]:
    """Per pair of annotators, ``statistic`` over (their answer, the other's) on the items both
    answered; per annotator, ``statistic`` over (their answer, ``majority`` of the others') on
    the items they share (an even split left out), flagged below ``min_kappa`` once they share
    ``min_items`` items; most worrying first. ``percent``: identical answers."""
    name = (names or {}).get
    raters = sorted({a for by in shared.values() for a in by})
    pairs = []
    for a, b in combinations(raters, 2):
        both = [(by[a], by[b]) for by in shared.values() if a in by and b in by]
        if both:
            pairs.append(PairAgreement(
                first=name(a, f"user {a}"), second=name(b, f"user {b}"), items=len(both),
                kappa=statistic(both), percent=sum(x == y for x, y in both) / len(both),
            ))
    annotators = []
    for a in raters:
        mine = [(by[a], consensus) for by in shared.values() if a in by
                if (consensus := majority(by, a)) is not None]
        items = sum(1 for by in shared.values() if a in by)
        value = statistic(mine)
        annotators.append(AnnotatorAgreement(
            user_id=a, name=name(a, f"user {a}"), items=items, kappa=value,
            percent=sum(x == y for x, y in mine) / len(mine) if mine else 0.0,
            flagged=items >= min_items and value is not None and value < min_kappa,
        ))
    annotators.sort(key=lambda r: (not r.flagged, r.kappa if r.kappa is not None else 2.0,
                                   r.name))
    return tuple(pairs), tuple(annotators)


def set_agreement_detail(
    votes: Mapping[int, Mapping[int, LabelSet]],
    *,
    classes: Sequence[Hashable] = (),
    class_names: Mapping[Hashable, str] | None = None,
    names: Mapping[int, str] | None = None,
    min_kappa: float = 0.6,
    min_items: int = 20,
) -> AgreementDetail:
    """:func:`agreement_detail` for label sets, from {item: {annotator: frozenset of labels}}.

    * overall: ``alpha`` = Krippendorff's alpha-MASI (:func:`krippendorff_alpha_sets`);
      ``fleiss_kappa`` None (Fleiss' kappa has no partial credit for sets);
    * per class: each label present or absent in a set, two-valued units: Fleiss' kappa and
      nominal alpha of that, ``votes`` the sets with the label;
    * per pair: alpha-MASI over the units (their set, the other's set) on the items both
      labelled, in ``kappa``; ``percent``: identical sets;
    * per annotator: alpha-MASI over the units (their set, the others' majority set) on the
      items they share, in ``kappa`` (an item whose other annotators split evenly on a label is
      left out: :func:`_others_majority_set`), ``percent`` the identical share; flagged below
      ``min_kappa`` once they share ``min_items`` items, as for single labels. Against the
      others' majority rather than all others at once: with three or more annotators per item,
      one careless annotator does not pull the careful ones down.
    """
    shared = {item: by for item, by in votes.items() if len(by) >= 2}
    units = [list(by.values()) for by in shared.values()]
    seen = {label for unit in units for labels in unit for label in labels}
    per_class = tuple(
        ClassAgreement(
            label=(class_names or {}).get(cls, str(cls)),
            fleiss_kappa=fleiss_kappa(has_label(units, cls)),
            alpha=krippendorff_alpha(has_label(units, cls)),
            votes=sum(cls in labels for unit in units for labels in unit),
        )
        for cls in (list(classes) or sorted(seen, key=repr))
    )
    pairs, annotators = _pairs_and_annotators(
        shared, names, lambda both: krippendorff_alpha_sets([list(pair) for pair in both]),
        _others_majority_set, min_kappa=min_kappa, min_items=min_items)
    return AgreementDetail(
        fleiss_kappa=None,
        alpha=krippendorff_alpha_sets(units),
        per_class=per_class,
        pairs=pairs,
        annotators=annotators,
    )


@dataclass(frozen=True)
class Vote:
    annotator: str
    label: str
    """The label's name; in a multi-label project the set as one text (:func:`set_text`)."""


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
    *,
    sets: bool = False,
) -> tuple[tuple[VersionAgreement, ...], int]:
    """Split agreement by the guidelines version the labels were made under.

    ``versions`` maps (item, annotator) to the version of that annotator's counted label. An item
    whose labels span several versions belongs to none of them (it is counted as mixed, the
    second value): a disagreement across a guidelines change says little about either version.
    With ``sets`` the votes are label sets (frozensets) and each version row is
    :func:`compute_set_agreement` (alpha-MASI in both ``kappa`` and ``alpha``).
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
        if sets:
            method, kappa, items, raters, percent = compute_set_agreement(
                cast(Mapping[int, Mapping[int, LabelSet]], split[version]))
            rows.append(VersionAgreement(version, method, kappa, items, raters, percent, kappa))
            continue
        method, kappa, items, raters, percent = compute_agreement(split[version])
        units = [list(by.values()) for by in split[version].values()]
        rows.append(VersionAgreement(version, method, kappa, items, raters, percent,
                                     krippendorff_alpha(units)))
    return tuple(rows), mixed


@dataclass(frozen=True)
class AgreementReport:
    method: str | None
    """"cohen", "fleiss", "krippendorff_masi" (multi-label projects: label sets), or None when
    no item has two labels yet."""
    kappa: float | None
    """The headline coefficient: Cohen's or Fleiss' kappa; for ``krippendorff_masi``,
    Krippendorff's alpha with the MASI distance (see the module docstring)."""
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
    multi_label: bool = False
    """The project's answers are label sets: the statistics are alpha-MASI (even before any
    item has two sets, so the pages can name the statistic)."""

    @property
    def flagged(self) -> tuple[AnnotatorAgreement, ...]:
        return tuple(a for a in self.detail.annotators if a.flagged) if self.detail else ()

    @property
    def statistic(self) -> str:
        """The headline statistic's name: "Cohen's κ", "Fleiss' κ", "Krippendorff's α (MASI)"."""
        if self.method is None:
            return STATISTIC_NAMES[METHOD_MASI] if self.multi_label else "Cohen's or Fleiss' κ"
        return STATISTIC_NAMES.get(self.method, self.method)

    @property
    def symbol(self) -> str:
        """κ, or α for label sets (the per-annotator, per-pair and threshold columns)."""
        return "α" if self.multi_label else "κ"

    @property
    def interpretation(self) -> str:
        """Landis & Koch's bands next to a kappa: rough, but what people expect. Alpha-MASI is
        read on Krippendorff's scale: at least 0.8 reliable, 0.667 to 0.8 tentative (good enough
        for tentative conclusions), below 0.667 unreliable."""
        k = self.kappa
        if k is None:
            return "not enough overlap yet"
        if self.method == METHOD_MASI:
            if k >= 0.8:
                return "reliable"
            return "tentative" if k >= 0.667 else "unreliable"
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
        return METHOD_COHEN, cohen_kappa(pairs), len(shared), 2, percent
    ratings = [list(by.values()) for by in shared.values()]
    return METHOD_FLEISS, fleiss_kappa(ratings), len(shared), len(raters), percent


def compute_set_agreement(
    votes: Mapping[int, Mapping[int, LabelSet]],
) -> tuple[str | None, float | None, int, int, float | None]:
    """(method, alpha, items, raters, raw agreement) from {item: {annotator: label set}}: alpha
    is Krippendorff's with the MASI distance over the items with two or more sets (any number of
    annotators, the same formula for two or more), the raw agreement the share of those items
    whose sets are all identical."""
    shared = {item: by for item, by in votes.items() if len(by) >= 2}
    raters = sorted({a for by in shared.values() for a in by})
    if not shared:
        return None, None, 0, len(raters), None
    unanimous = sum(1 for by in shared.values() if len(set(by.values())) == 1)
    alpha = krippendorff_alpha_sets([list(by.values()) for by in shared.values()])
    return METHOD_MASI, alpha, len(shared), len(raters), unanimous / len(shared)


def agreement_report(db: Session, project_id: int) -> AgreementReport:
    """Agreement over live annotations; each annotator's latest label per item counts. Gold
    items are left out (see the module docstring).

    In a multi-label project each annotator's latest *set* per item counts (a frozenset of label
    ids; empty: none of these) and the report's method is :data:`METHOD_MASI`: ``kappa`` holds
    Krippendorff's alpha-MASI, ``percent_agreement`` the share of shared items whose sets are all
    identical, ``disagreements`` the items whose sets differ (each vote the set as one text), the
    detail comes from :func:`set_agreement_detail` and ``by_version`` uses the same statistic."""
    project = db.get(Project, project_id)
    if project is None:
        raise LookupError(f"project {project_id} does not exist")
    multi = is_multi_label(project)
    rows = db.execute(
        select(Annotation.id, Annotation.item_id, Annotation.annotator_id, Annotation.label_id,
               Annotation.guideline_version)
        .where(
            Annotation.project_id == project_id,
            live(),
            Annotation.annotator_id.is_not(None),
            # the project's kind of answer: label sets have no label_id of their own
            Annotation.label_id.is_(None) if multi else Annotation.label_id.is_not(None),
            ~exists().where(GoldItem.item_id == Annotation.item_id),
        )
        .order_by(Annotation.id)
    ).tuples().all()
    labels = db.execute(
        select(Label.id, Label.name).where(Label.project_id == project_id).order_by(Label.position)
    ).tuples().all()
    name_of = dict(labels)
    position = {label_id: i for i, (label_id, _) in enumerate(labels)}
    versions: dict[tuple[int, int], int | None] = {}
    for _, item_id, annotator_id, _, version in rows:
        assert annotator_id is not None
        versions[(item_id, annotator_id)] = version
    classes = [i for i, _ in labels]
    votes: Mapping[int, Mapping[int, Hashable]]
    label_text: Callable[[Hashable], str]
    if multi:
        sets = label_sets(db, [annotation_id for annotation_id, *_ in rows])
        set_votes: dict[int, dict[int, LabelSet]] = {}
        for annotation_id, item_id, annotator_id, _, _ in rows:
            assert annotator_id is not None
            set_votes.setdefault(item_id, {})[annotator_id] = frozenset(sets[annotation_id])
        votes = set_votes
        method, kappa, items, raters, percent = compute_set_agreement(set_votes)
        detail = set_agreement_detail(
            set_votes, classes=classes, class_names=dict(labels),
            names=_names(db, _sharing(set_votes)),
            min_kappa=project.agreement_min_kappa, min_items=project.agreement_min_items,
        )

        def label_text(value: Hashable) -> str:
            assert isinstance(value, frozenset)
            ordered = sorted(value, key=lambda label: position.get(label, len(position)))
            return set_text(name_of.get(label, "?") for label in ordered)
    else:
        single_votes: dict[int, dict[int, int]] = {}
        for _, item_id, annotator_id, label_id, _ in rows:
            assert annotator_id is not None and label_id is not None
            single_votes.setdefault(item_id, {})[annotator_id] = label_id
        votes = single_votes
        method, kappa, items, raters, percent = compute_agreement(single_votes)
        detail = agreement_detail(
            single_votes, classes=classes, class_names=dict(labels),
            names=_names(db, _sharing(single_votes)),
            min_kappa=project.agreement_min_kappa, min_items=project.agreement_min_items,
        )

        def label_text(value: Hashable) -> str:
            return name_of.get(value, "?") if isinstance(value, int) else "?"
    by_version, mixed = agreement_by_version(votes, versions, sets=multi)
    disputed = sorted(
        (item for item, by in votes.items() if len(by) >= 2 and len(set(by.values())) > 1),
        reverse=True,
    )
    listed = _describe(db, {i: votes[i] for i in disputed[:MAX_DISAGREEMENTS]}, label_text)
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
        multi_label=multi,
    )


def _sharing(votes: Mapping[int, Mapping[int, Hashable]]) -> set[int]:
    """The annotators with a vote on an item someone else labelled too."""
    return {a for by in votes.values() if len(by) >= 2 for a in by}


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
    annotator's agreement flags them (all checked before anything changes). Multi-label projects
    too: their agreement is alpha-MASI, flagged below the same ``min_kappa`` threshold."""
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise InvalidInput("The overlap rate must be between 0 and 1 (0 % to 100 %).",
                           details={"overlap_rate": rate})
    if k is not None and not 2 <= k <= 5:
        raise InvalidInput("An overlap item goes to between 2 and 5 annotators.",
                           details={"overlap_k": k})
    if min_kappa is not None and not -1.0 <= min_kappa <= 1.0:
        raise InvalidInput("The agreement threshold (kappa, or alpha) must be between -1 and 1.",
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


def _describe(db: Session, votes: Mapping[int, Mapping[int, Hashable]],
              label_text: Callable[[Hashable], str]) -> list[Disagreement]:
    if not votes:
        return []
    texts = dict(
        db.execute(select(Item.id, Item.text).where(Item.id.in_(list(votes)))).tuples().all()
    )
    people = _names(db, {a for by in votes.values() for a in by})
    return [
        Disagreement(
            item_id=item_id,
            text=texts.get(item_id, ""),
            votes=tuple(
                Vote(people.get(a, f"user {a}"), label_text(label))
                for a, label in sorted(by.items())
            ),
        )
        for item_id, by in votes.items()
    ]
