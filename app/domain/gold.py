"""Gold items: items whose answer a lead fixed, used to measure each annotator.

A gold item is handed to every annotator once, now and then (``Project.gold_rate`` of the
hand-outs, see :mod:`app.domain.annotation.leases`), and looks like any other item. What an
annotator says about it is compared with the answer; it never counts against the label budget
(:func:`app.domain.annotation.common.labels_used`) and never trains the model
(``worker.tasks.project_data`` leaves gold items out of the labelled set and the queue).

Accuracy comes with a Wilson 95 % interval; an annotator with at least ``gold_min_count`` answers
and an accuracy below ``gold_min_accuracy`` is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, delete, exists, func, select
from sqlalchemy.orm import Session

from app.db.models import SPLIT_POOL, Annotation, GoldItem, Item, Label, Project, User
from app.domain import audit
from app.domain.annotation.common import project_item, project_labels
from app.domain.annotation.label_sets import require_single_label
from app.domain.policy import live
from app.errors import InvalidInput

WILSON_Z = 1.959963984540054  # two-sided 95 %
MAX_GOLD_LIST = 500


def is_gold(item_id: ColumnElement[int]) -> ColumnElement[bool]:
    """SQL condition: the item (an id column) is a gold item."""
    return exists().where(GoldItem.item_id == item_id)


def wilson_interval(correct: int, total: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there is no observation."""
    if total <= 0:
        return 0.0, 1.0
    if not 0 <= correct <= total:
        raise ValueError(f"correct={correct} must lie in [0, total={total}]")
    p = correct / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = (z / (1 + z2 / total)) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def _label_by_name_or_id(db: Session, project: Project, label: str | int) -> Label:
    labels = project_labels(db, project.id)
    for candidate in labels:
        if (isinstance(label, int) and candidate.id == label) or (
            isinstance(label, str) and candidate.name == label
        ):
            return candidate
    names = ", ".join(lbl.name for lbl in labels)
    raise InvalidInput(
        f"{label!r} is not a label of this project (labels: {names}).", details={"label": label}
    )


def mark_gold(
    db: Session, project: Project, item_id: int, label: str | int, *, by: User | None
) -> GoldItem:
    """Make the item gold with this answer (or change the answer of a gold item)."""
    require_single_label(project, "gold items")
    item = project_item(db, project, item_id)
    if item.split != SPLIT_POOL:
        raise InvalidInput(
            f"Item {item.id} is in the {item.split} set; only pool items can be gold (the dev and "
            "test sets are never handed out).", details={"item_id": item.id}
        )
    answer = _label_by_name_or_id(db, project, label)
    gold = db.scalars(select(GoldItem).where(GoldItem.item_id == item.id)).first()
    before = gold.label_id if gold is not None else None
    if before != answer.id:
        audit.record(db, project.id, audit.GOLD_SET, actor=by, item_id=item.id,
                     detail={"from_label_id": before, "to": answer.name})
    if gold is None:
        gold = GoldItem(
            project_id=project.id,
            item_id=item.id,
            label_id=answer.id,
            created_by_id=by.id if by else None,
        )
        db.add(gold)
    else:
        gold.label_id = answer.id
        gold.created_by_id = by.id if by else gold.created_by_id
    db.flush()
    return gold


def unmark_gold(db: Session, project: Project, item_id: int, *, by: User | None = None) -> bool:
    """The item is an ordinary item again; True when it was gold."""
    item = project_item(db, project, item_id)
    result = db.execute(
        delete(GoldItem)
        .where(GoldItem.project_id == project.id, GoldItem.item_id == item.id)
        .execution_options(synchronize_session=False)
    )
    removed = bool(getattr(result, "rowcount", 0))
    if removed:
        audit.record(db, project.id, audit.GOLD_REMOVE, actor=by, item_id=item.id)
    return removed


@dataclass(frozen=True)
class GoldRow:
    item_id: int
    external_id: str | None
    text: str
    label: str
    answers: int
    correct: int


def _gold_query(project_id: int) -> Select[int, str | None, str, str]:
    return (
        select(Item.id, Item.external_id, Item.text, Label.name)
        .join(GoldItem, GoldItem.item_id == Item.id)
        .join(Label, Label.id == GoldItem.label_id)
        .where(GoldItem.project_id == project_id)
        .order_by(GoldItem.id)
        .limit(MAX_GOLD_LIST)
    )


def gold_items(db: Session, project: Project) -> list[GoldRow]:
    """The project's gold items (first :data:`MAX_GOLD_LIST`) with how annotators did on each."""
    answers = _answers(db, project.id)
    per_item: dict[int, tuple[int, int]] = {}
    for a in answers:
        seen, right = per_item.get(a.item_id, (0, 0))
        per_item[a.item_id] = (seen + 1, right + int(a.correct))
    rows = []
    for item_id, external_id, text, label in db.execute(_gold_query(project.id)):
        seen, right = per_item.get(item_id, (0, 0))
        rows.append(GoldRow(item_id, external_id, text, label, seen, right))
    return rows


def gold_count(db: Session, project_id: int) -> int:
    return int(
        db.scalar(select(func.count()).where(GoldItem.project_id == project_id)) or 0
    )


@dataclass(frozen=True)
class _Answer:
    annotator_id: int
    item_id: int
    correct: bool


def _answers(db: Session, project_id: int) -> list[_Answer]:
    """Each annotator's current answer on each gold item (their latest live annotation)."""
    rows = db.execute(
        select(Annotation.annotator_id, Annotation.item_id, Annotation.label_id, GoldItem.label_id)
        .join(GoldItem, GoldItem.item_id == Annotation.item_id)
        .where(
            Annotation.project_id == project_id,
            GoldItem.project_id == project_id,
            Annotation.annotator_id.is_not(None),
            live(),
        )
        .order_by(Annotation.id)
    ).all()
    latest: dict[tuple[int, int], bool] = {}
    for annotator_id, item_id, label_id, answer_id in rows:
        if annotator_id is not None:
            latest[(annotator_id, item_id)] = label_id == answer_id
    return [_Answer(a, i, ok) for (a, i), ok in latest.items()]


@dataclass(frozen=True)
class AnnotatorGold:
    """One annotator's accuracy on gold items."""

    user_id: int
    name: str
    correct: int
    total: int
    low: float
    high: float
    flagged: bool

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None


@dataclass(frozen=True)
class GoldReport:
    gold_items: int
    rate: float
    min_accuracy: float
    min_count: int
    annotators: tuple[AnnotatorGold, ...]

    @property
    def flagged(self) -> tuple[AnnotatorGold, ...]:
        return tuple(a for a in self.annotators if a.flagged)


def gold_report(db: Session, project: Project) -> GoldReport:
    """Per-annotator accuracy on gold, with counts, a Wilson 95 % interval and the flag."""
    tally: dict[int, tuple[int, int]] = {}
    for answer in _answers(db, project.id):
        total, correct = tally.get(answer.annotator_id, (0, 0))
        tally[answer.annotator_id] = (total + 1, correct + int(answer.correct))
    names = {
        u.id: (u.name or u.email)
        for u in db.scalars(select(User).where(User.id.in_(list(tally))))
    } if tally else {}
    annotators = []
    for user_id, (total, correct) in tally.items():
        low, high = wilson_interval(correct, total)
        flagged = total >= project.gold_min_count and correct / total < project.gold_min_accuracy
        annotators.append(
            AnnotatorGold(user_id, names.get(user_id, f"user {user_id}"), correct, total,
                          low, high, flagged)
        )
    annotators.sort(key=lambda a: (not a.flagged, a.correct / a.total, a.name))
    return GoldReport(
        gold_items=gold_count(db, project.id),
        rate=project.gold_rate,
        min_accuracy=project.gold_min_accuracy,
        min_count=project.gold_min_count,
        annotators=tuple(annotators),
    )


def update_gold_settings(
    project: Project,
    *,
    rate: float | None = None,
    min_accuracy: float | None = None,
    min_count: int | None = None,
) -> None:
    """Change how often gold is handed out and when an annotator is flagged (all checked before
    anything changes)."""
    if rate is not None and not 0.0 <= rate <= 0.5:
        raise InvalidInput("The gold rate must be between 0 and 0.5 (0 % to 50 %).",
                           details={"gold_rate": rate})
    if min_accuracy is not None and not 0.0 <= min_accuracy <= 1.0:
        raise InvalidInput("The gold accuracy threshold must be between 0 and 1.",
                           details={"gold_min_accuracy": min_accuracy})
    if min_count is not None and not 1 <= min_count <= 10_000:
        raise InvalidInput("The minimum gold count must be between 1 and 10000.",
                           details={"gold_min_count": min_count})
    if rate is not None:
        project.gold_rate = rate
    if min_accuracy is not None:
        project.gold_min_accuracy = min_accuracy
    if min_count is not None:
        project.gold_min_count = min_count
