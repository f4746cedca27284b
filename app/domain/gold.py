"""Gold items: items whose answer a lead fixed, used to measure each annotator.

A gold item is handed to every annotator once, now and then (``Project.gold_rate`` of the
hand-outs, see :mod:`app.domain.annotation.leases`), and looks like any other item. What an
annotator says about it is compared with the answer; it never counts against the label budget
(:func:`app.domain.annotation.common.labels_used`) and never trains the model
(``worker.tasks.project_data`` leaves gold items out of the labelled set and the queue).

Accuracy comes with a Wilson 95 % interval; an annotator with at least ``gold_min_count`` answers
and an accuracy below ``gold_min_accuracy`` is flagged.

**Multi-label projects.** A gold answer is a *set* of the project's labels, possibly empty ("none
of these"), stored as :class:`~app.db.models.GoldItemLabel` rows (``GoldItem.label_id`` is
``None``). An answer is *right* when its set equals the gold set exactly: accuracy, its Wilson
interval and the flag keep that meaning. Next to it each annotator gets their **mean Jaccard
index** over their gold answers, ``|answer ∩ gold| / |answer ∪ gold|`` (1 when both are empty),
as partial credit: one label missed out of four scores 0.75 where exact match scores 0. Jaccard
rather than per-label F1 because it is defined for every single answer, the empty gold set
included (per-label F1 has no value for a label that is in no gold set, and a per-label view
over a few dozen gold items is mostly noise), and it is the complement of the Jaccard distance
the agreement page's MASI builds on (:func:`app.domain.agreement.masi_distance`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, delete, exists, func, insert, select
from sqlalchemy.orm import Session

from app.db.models import (
    SPLIT_POOL,
    Annotation,
    GoldItem,
    GoldItemLabel,
    Item,
    Label,
    Project,
    User,
)
from app.domain import audit
from app.domain.annotation.common import project_item, project_labels
from app.domain.annotation.label_sets import (
    is_multi_label,
    label_sets,
    labels_named,
    set_text,
    sets_of,
)
from app.domain.policy import live
from app.errors import InvalidInput

GoldAnswer = str | int | Sequence[str | int]
"""A label name or id (single-label), or a list of them (multi-label: the set, ``[]`` none)."""

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


def gold_sets(db: Session, gold_ids: Iterable[int]) -> dict[int, list[int]]:
    """Gold item id -> its answer's label ids in the project's label order (``[]``: none)."""
    return sets_of(db, GoldItemLabel.gold_item_id, GoldItemLabel.label_id, gold_ids)


def gold_set_of_item(db: Session, project: Project, item_id: int) -> list[int] | None:
    """A multi-label item's gold answer (label ids in label order), ``None`` when not gold."""
    gold_id = db.scalar(select(GoldItem.id).where(GoldItem.project_id == project.id,
                                                  GoldItem.item_id == item_id))
    return None if gold_id is None else gold_sets(db, [gold_id])[gold_id]


def store_gold_set(db: Session, gold_id: int, label_ids: Sequence[int]) -> None:
    """Replace a gold item's answer set."""
    db.execute(delete(GoldItemLabel).where(GoldItemLabel.gold_item_id == gold_id)
               .execution_options(synchronize_session=False))
    if label_ids:
        db.execute(insert(GoldItemLabel), [
            {"gold_item_id": gold_id, "label_id": label_id} for label_id in label_ids
        ])


def mark_gold(
    db: Session, project: Project, item_id: int, label: GoldAnswer, *, by: User | None
) -> GoldItem:
    """Make the item gold with this answer (or change the answer of a gold item): one label in
    a single-label project, a list of labels (the set, possibly empty) in a multi-label one."""
    item = project_item(db, project, item_id)
    if item.split != SPLIT_POOL:
        raise InvalidInput(
            f"Item {item.id} is in the {item.split} set; only pool items can be gold (the dev and "
            "test sets are never handed out).", details={"item_id": item.id}
        )
    if is_multi_label(project):
        return _mark_gold_set(db, project, item, label, by=by)
    if not isinstance(label, str | int):
        raise InvalidInput("This project is single-label: the gold answer is one label.",
                           details={"task_type": project.task_type})
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


def _mark_gold_set(
    db: Session, project: Project, item: Item, answer: GoldAnswer, *, by: User | None
) -> GoldItem:
    if isinstance(answer, str | int):
        raise InvalidInput(
            "This project is multi-label: the gold answer is a list of the project's labels "
            "(an empty list means none of them applies).",
            details={"task_type": project.task_type},
        )
    chosen = labels_named(db, project, answer)
    gold = db.scalars(select(GoldItem).where(GoldItem.item_id == item.id)).first()
    before = gold_sets(db, [gold.id])[gold.id] if gold is not None else None
    wanted = [label.id for label in chosen]
    if before != wanted:
        names = {label.id: label.name for label in project_labels(db, project.id)}
        audit.record(db, project.id, audit.GOLD_SET, actor=by, item_id=item.id, detail={
            "from_labels": None if before is None else [names[i] for i in before],
            "to_labels": [label.name for label in chosen],
        })
    if gold is None:
        gold = GoldItem(project_id=project.id, item_id=item.id, label_id=None,
                        created_by_id=by.id if by else None)
        db.add(gold)
    else:
        gold.created_by_id = by.id if by else gold.created_by_id
    db.flush()
    store_gold_set(db, gold.id, wanted)
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
    """The answer; in a multi-label project the set as one text ("billing, bug")."""
    answers: int
    correct: int
    """Answers that equal the gold answer (multi-label: the exact set)."""
    labels: tuple[str, ...] | None = None
    """Multi-label: the gold set's names in label order (``()``: none of these)."""
    jaccard_sum: float | None = None
    """Multi-label: the sum of the answers' Jaccard indexes with the gold set."""

    @property
    def mean_jaccard(self) -> float | None:
        if self.jaccard_sum is None or not self.answers:
            return None
        return self.jaccard_sum / self.answers


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
    answers = _answers(db, project)
    per_item: dict[int, tuple[int, int, float]] = {}
    for a in answers:
        seen, right, overlap = per_item.get(a.item_id, (0, 0, 0.0))
        per_item[a.item_id] = (seen + 1, right + int(a.correct), overlap + a.jaccard)
    if is_multi_label(project):
        return _gold_set_rows(db, project, per_item)
    rows = []
    for item_id, external_id, text, label in db.execute(_gold_query(project.id)):
        seen, right, _ = per_item.get(item_id, (0, 0, 0.0))
        rows.append(GoldRow(item_id, external_id, text, label, seen, right))
    return rows


def _gold_set_rows(db: Session, project: Project, per_item: dict[int, tuple[int, int, float]]
                   ) -> list[GoldRow]:
    found = db.execute(
        select(Item.id, Item.external_id, Item.text, GoldItem.id)
        .join(GoldItem, GoldItem.item_id == Item.id)
        .where(GoldItem.project_id == project.id)
        .order_by(GoldItem.id)
        .limit(MAX_GOLD_LIST)
    ).tuples().all()
    sets = gold_sets(db, [gold_id for *_, gold_id in found])
    names = {label.id: label.name for label in project_labels(db, project.id)}
    rows = []
    for item_id, external_id, text, gold_id in found:
        seen, right, overlap = per_item.get(item_id, (0, 0, 0.0))
        labels = tuple(names[label_id] for label_id in sets[gold_id])
        rows.append(GoldRow(item_id, external_id, text, set_text(labels), seen, right,
                            labels=labels, jaccard_sum=overlap))
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
    jaccard: float
    """Overlap with the gold answer: 1.0 or 0.0 for one label, the Jaccard index for a set."""


def jaccard(answer: Collection[Hashable], gold_answer: Collection[Hashable]) -> float:
    """``|answer ∩ gold| / |answer ∪ gold|``; two empty sets agree fully (1.0)."""
    union = set(answer) | set(gold_answer)
    if not union:
        return 1.0
    return len(set(answer) & set(gold_answer)) / len(union)


def _answers(db: Session, project: Project) -> list[_Answer]:
    """Each annotator's current answer on each gold item (their latest live annotation)."""
    if is_multi_label(project):
        return _set_answers(db, project.id)
    rows = db.execute(
        select(Annotation.annotator_id, Annotation.item_id, Annotation.label_id, GoldItem.label_id)
        .join(GoldItem, GoldItem.item_id == Annotation.item_id)
        .where(
            Annotation.project_id == project.id,
            GoldItem.project_id == project.id,
            Annotation.annotator_id.is_not(None),
            live(),
        )
        .order_by(Annotation.id)
    ).all()
    latest: dict[tuple[int, int], bool] = {}
    for annotator_id, item_id, label_id, answer_id in rows:
        if annotator_id is not None:
            latest[(annotator_id, item_id)] = label_id == answer_id
    return [_Answer(a, i, ok, float(ok)) for (a, i), ok in latest.items()]


def _set_answers(db: Session, project_id: int) -> list[_Answer]:
    """:func:`_answers` for a multi-label project: each latest set against the gold set."""
    rows = db.execute(
        select(Annotation.annotator_id, Annotation.item_id, Annotation.id, GoldItem.id)
        .join(GoldItem, GoldItem.item_id == Annotation.item_id)
        .where(
            Annotation.project_id == project_id,
            GoldItem.project_id == project_id,
            Annotation.annotator_id.is_not(None),
            live(),
        )
        .order_by(Annotation.id)
    ).tuples().all()
    latest: dict[tuple[int, int], tuple[int, int]] = {}
    for annotator_id, item_id, annotation_id, gold_id in rows:
        if annotator_id is not None:
            latest[(annotator_id, item_id)] = (annotation_id, gold_id)
    given = label_sets(db, [annotation_id for annotation_id, _ in latest.values()])
    golds = gold_sets(db, {gold_id for _, gold_id in latest.values()})
    out = []
    for (annotator_id, item_id), (annotation_id, gold_id) in latest.items():
        answer, truth = set(given[annotation_id]), set(golds[gold_id])
        out.append(_Answer(annotator_id, item_id, answer == truth, jaccard(answer, truth)))
    return out


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
    jaccard_sum: float | None = None
    """Multi-label: the sum of the answers' Jaccard indexes with the gold sets."""

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    @property
    def mean_jaccard(self) -> float | None:
        """Multi-label: the mean Jaccard index of the answers (see the module docstring)."""
        if self.jaccard_sum is None or not self.total:
            return None
        return self.jaccard_sum / self.total


@dataclass(frozen=True)
class GoldReport:
    gold_items: int
    rate: float
    min_accuracy: float
    min_count: int
    annotators: tuple[AnnotatorGold, ...]
    multi_label: bool = False
    """Answers are sets: annotators also carry their mean Jaccard index."""

    @property
    def flagged(self) -> tuple[AnnotatorGold, ...]:
        return tuple(a for a in self.annotators if a.flagged)


def gold_report(db: Session, project: Project) -> GoldReport:
    """Per-annotator accuracy on gold, with counts, a Wilson 95 % interval and the flag; in a
    multi-label project also each annotator's mean Jaccard index."""
    multi_label = is_multi_label(project)
    tally: dict[int, tuple[int, int, float]] = {}
    for answer in _answers(db, project):
        total, correct, overlap = tally.get(answer.annotator_id, (0, 0, 0.0))
        tally[answer.annotator_id] = (total + 1, correct + int(answer.correct),
                                      overlap + answer.jaccard)
    names = {
        u.id: (u.name or u.email)
        for u in db.scalars(select(User).where(User.id.in_(list(tally))))
    } if tally else {}
    annotators = []
    for user_id, (total, correct, overlap) in tally.items():
        low, high = wilson_interval(correct, total)
        flagged = total >= project.gold_min_count and correct / total < project.gold_min_accuracy
        annotators.append(
            AnnotatorGold(user_id, names.get(user_id, f"user {user_id}"), correct, total,
                          low, high, flagged, jaccard_sum=overlap if multi_label else None)
        )
    annotators.sort(key=lambda a: (not a.flagged, a.correct / a.total, a.name))
    return GoldReport(
        gold_items=gold_count(db, project.id),
        rate=project.gold_rate,
        min_accuracy=project.gold_min_accuracy,
        min_count=project.gold_min_count,
        annotators=tuple(annotators),
        multi_label=multi_label,
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
