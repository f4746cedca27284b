"""Inter-annotator agreement on items labelled more than once.

Two annotators: Cohen's kappa over the items both labelled. More: Fleiss' kappa over every item
with at least two labels (the per-item agreement averaged over items, which allows a varying
number of raters per item). Kappa corrects the raw agreement for what chance alone would give; a
lead reads it next to the list of disagreeing items, which is where guidelines get fixed.

The statistics are pure functions over plain values (tested against textbook examples); the
database part only collects who said what about which item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Annotation, Item, Label, User
from app.domain.policy import live

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
    """Agreement over live annotations; each annotator's latest label per item counts."""
    rows = db.execute(
        select(Annotation.item_id, Annotation.annotator_id, Annotation.label_id)
        .where(
            Annotation.project_id == project_id,
            live(),
            Annotation.annotator_id.is_not(None),
        )
        .order_by(Annotation.id)
    ).tuples()
    votes: dict[int, dict[int, int]] = {}
    for item_id, annotator_id, label_id in rows:
        assert annotator_id is not None
        votes.setdefault(item_id, {})[annotator_id] = label_id
    method, kappa, items, raters, percent = compute_agreement(votes)
    disputed = sorted(
        (item for item, by in votes.items() if len(by) >= 2 and len(set(by.values())) > 1),
        reverse=True,
    )
    listed = _describe(db, project_id, {i: votes[i] for i in disputed[:MAX_DISAGREEMENTS]})
    return AgreementReport(
        method=method,
        kappa=kappa,
        items=items,
        raters=raters,
        percent_agreement=percent,
        disagreements=tuple(listed),
        disagreement_count=len(disputed),
    )


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
