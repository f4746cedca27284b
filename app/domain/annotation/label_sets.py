"""Multi-label projects: an annotation's answer is a set of the project's labels, possibly empty
("none of these"), stored as :class:`~app.db.models.AnnotationLabel` rows; the annotation's own
``label_id`` stays ``None``. Single-label projects never have such rows.

Features built for one label per item can refuse multi-label projects through
:func:`require_single_label` with a :class:`~app.errors.NotSupported` error that names them,
rather than reading a missing ``label_id``. Gold answers (:class:`~app.db.models.GoldItemLabel`)
and review decisions (:class:`~app.db.models.ReviewDecisionLabel`) hold sets of their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.db.models import TASK_MULTI_LABEL, Annotation, AnnotationLabel, Label, Project
from app.domain.annotation.common import project_labels
from app.domain.policy import live
from app.errors import InvalidInput, NotSupported


def is_multi_label(project: Project) -> bool:
    return project.task_type == TASK_MULTI_LABEL


def require_single_label(project: Project, feature: str) -> None:
    """Refuse ``feature`` (a phrase: "gold items") on a multi-label project."""
    if is_multi_label(project):
        raise NotSupported(
            f"{feature[:1].upper()}{feature[1:]} are not supported for multi-label projects yet.",
            details={"task_type": project.task_type, "feature": feature},
        )


def check_answer(project: Project, label_id: int | None, label_ids: Sequence[int] | None) -> None:
    """The answer's shape must match the project's task: one ``label_id`` or a ``label_ids`` set."""
    if is_multi_label(project):
        if label_ids is None or label_id is not None:
            raise InvalidInput(
                "This project is multi-label: send label_ids, a list of the project's label "
                "ids (an empty list means none of them applies).",
                details={"task_type": project.task_type},
            )
    elif label_id is None or label_ids is not None:
        raise InvalidInput(
            "This project is single-label: send one label_id.",
            details={"task_type": project.task_type},
        )


def project_label_set(db: Session, project: Project, label_ids: Iterable[int]) -> list[int]:
    """The distinct ids, checked to be this project's labels, in the project's label order."""
    wanted = {int(label_id) for label_id in label_ids}
    if not wanted:
        return []
    positions = dict(db.execute(
        select(Label.id, Label.position).where(Label.project_id == project.id,
                                               Label.id.in_(wanted))
    ).tuples().all())
    unknown = sorted(wanted - set(positions))
    if unknown:
        raise InvalidInput(
            f"Label {', '.join(map(str, unknown))} is not one of this project's labels.",
            details={"label_ids": unknown},
        )
    return sorted(wanted, key=lambda label_id: positions[label_id])


def labels_named(db: Session, project: Project, answer: Iterable[str | int]) -> list[Label]:
    """The labels named (by name or id) in ``answer``, distinct, in the project's label order."""
    labels = project_labels(db, project.id)
    by_name = {label.name: label for label in labels}
    by_id = {label.id: label for label in labels}
    wanted: set[int] = set()
    unknown: list[str | int] = []
    for value in answer:
        found = by_id.get(value) if isinstance(value, int) else by_name.get(value)
        if found is None:
            unknown.append(value)
        else:
            wanted.add(found.id)
    if unknown:
        names = ", ".join(lbl.name for lbl in labels)
        listed = ", ".join(repr(value) for value in unknown[:10])
        raise InvalidInput(
            f"{listed} {'is not a label' if len(unknown) == 1 else 'are not labels'} of this "
            f"project (labels: {names}).", details={"labels": unknown[:10]}
        )
    return [label for label in labels if label.id in wanted]


NONE_OF_THESE = "none of these"
"""How an empty set reads wherever a set is written as one text ("billing, bug")."""


def set_text(names: Iterable[str]) -> str:
    """A set of label names as one text, in the order given."""
    return ", ".join(names) or NONE_OF_THESE


L = TypeVar("L", bound=Hashable)


def majority_set(sets: Sequence[Collection[L]]) -> set[L]:
    """One item's resolved set from its live sets, oldest first: the labels in more than half
    of them; if any label is in exactly half, the most recent set. The worker trains on it and
    exports write it."""
    if len(sets) == 1:
        return set(sets[0])
    counts = Counter(label for labels in sets for label in labels)
    if any(2 * count == len(sets) for count in counts.values()):
        return set(sets[-1])
    return {label for label, count in counts.items() if 2 * count > len(sets)}


def differing_set_items(project_id: int) -> Select[Any]:
    """SQL: ids of the items whose live label sets are not all the same (the set counterpart of
    "two different labels"): some label is in some of the item's live sets but not in all of
    them. An item with a single live set, or whose sets are all empty, never differs. Used by the
    review queue's and the data manager's disagreements."""
    per_label = (
        select(Annotation.item_id.label("item_id"), func.count().label("n"))
        .join(AnnotationLabel, AnnotationLabel.annotation_id == Annotation.id)
        .where(Annotation.project_id == project_id, live())
        .group_by(Annotation.item_id, AnnotationLabel.label_id)
        .subquery()
    )
    totals = (
        select(Annotation.item_id.label("item_id"), func.count().label("n"))
        .where(Annotation.project_id == project_id, live())
        .group_by(Annotation.item_id)
        .subquery()
    )
    return (
        select(per_label.c.item_id)
        .join(totals, totals.c.item_id == per_label.c.item_id)
        .where(per_label.c.n < totals.c.n)
        .distinct()
    )


def store_label_set(db: Session, annotation_id: int, label_ids: Sequence[int]) -> None:
    if label_ids:
        db.execute(insert(AnnotationLabel), [
            {"annotation_id": annotation_id, "label_id": label_id} for label_id in label_ids
        ])


def sets_of(db: Session, owner: InstrumentedAttribute[int], label: InstrumentedAttribute[int],
            owner_ids: Iterable[int]) -> dict[int, list[int]]:
    """Owner id -> its label ids in the project's label order (``[]``: none of these), read
    from a set table's ``owner`` and ``label`` columns (annotations', gold items', review
    decisions' sets)."""
    ids = list(owner_ids)
    sets: dict[int, list[int]] = {owner_id: [] for owner_id in ids}
    for start in range(0, len(ids), 5_000):
        rows = db.execute(
            select(owner, label)
            .join(Label, Label.id == label)
            .where(owner.in_(ids[start:start + 5_000]))
            .order_by(owner, Label.position)
        ).tuples()
        for owner_id, label_id in rows:
            sets[owner_id].append(label_id)
    return sets


def label_sets(db: Session, annotation_ids: Iterable[int]) -> dict[int, list[int]]:
    """Annotation id -> its label ids in the project's label order (``[]``: none of these)."""
    return sets_of(db, AnnotationLabel.annotation_id, AnnotationLabel.label_id, annotation_ids)
