"""Read what a task needs from the database into plain values (no ORM objects leave here).

Label resolution: an item's label is the majority of its *active* annotations (not deleted, not
superseded); ties go to the most recent annotation. A reviewer's adjudication (the latest active
accept or change in the review queue, :mod:`app.domain.review`) overrides the annotations; they
are all kept. Overlap items (routed to several annotators to measure agreement) are the other
exception: a tie there is a disagreement nobody has settled, so the item stays out of the
labelled set until a majority exists (another annotator breaks the tie) or a reviewer decides it.
Training uses labelled ``pool`` items, the dev
set is labelled ``dev`` items, ``test`` items are never touched by the worker. Items a lead
excluded from training (``Item.excluded``) are in neither.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import utcnow
from app.db.models import (
    SPLIT_DEV,
    SPLIT_POOL,
    TASK_MULTI_LABEL,
    TASK_SINGLE_LABEL,
    Annotation,
    AnnotationLabel,
    GoldItem,
    Item,
    Label,
    ModelVersion,
    OverlapItem,
    Project,
)
from app.domain.annotation.label_sets import majority_set
from app.domain.model_versions import resolve_artifact
from app.domain.policy import live, taken_item_ids
from app.domain.review import adjudicated_labels, adjudicated_sets


@dataclass(frozen=True)
class ProjectSnapshot:
    """The project settings a task reads once at its start."""

    id: int
    label_names: tuple[str, ...]
    label_ids: tuple[int, ...]
    base_model: str
    tapt_model_path: str | None
    adapter_config: dict[str, Any]
    train_config: dict[str, Any]
    strategy: str
    label_budget: int
    batch_size: int
    reserve_fraction: float
    stop_threshold: float
    auto_stop: bool
    stopped: bool
    annotations_per_item: int
    data_version: int
    current_version_id: int | None
    current_version_number: int | None
    current_artifact: str | None
    task_type: str = TASK_SINGLE_LABEL

    @property
    def multi_label(self) -> bool:
        return self.task_type == TASK_MULTI_LABEL

    def label_index(self) -> dict[int, int]:
        """Label row id -> class index (label position order)."""
        return {label_id: i for i, label_id in enumerate(self.label_ids)}


@dataclass(frozen=True)
class LabelledSet:
    item_ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def classes_present(self) -> int:
        return len(set(self.labels))


def load_snapshot(session: Session, project_id: int, settings: Settings) -> ProjectSnapshot:
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"project {project_id} no longer exists")
    labels = list(
        session.scalars(
            select(Label).where(Label.project_id == project_id).order_by(Label.position, Label.id)
        )
    )
    current = (
        session.get(ModelVersion, project.current_model_version_id)
        if project.current_model_version_id is not None
        else None
    )
    return ProjectSnapshot(
        id=project.id,
        label_names=tuple(label.name for label in labels),
        label_ids=tuple(label.id for label in labels),
        base_model=project.base_model or settings.default_base_model,
        tapt_model_path=(
            str(resolve_artifact(project.tapt_model_path, settings))
            if project.tapt_model_path
            else None
        ),
        adapter_config=dict(project.adapter_config or {}),
        train_config=dict(project.train_config or {}),
        strategy=project.strategy,
        label_budget=project.label_budget,
        batch_size=project.batch_size,
        reserve_fraction=project.reserve_fraction,
        stop_threshold=project.stop_threshold,
        auto_stop=project.auto_stop,
        stopped=project.stopped,
        annotations_per_item=max(1, project.annotations_per_item),
        data_version=project.data_version,
        current_version_id=current.id if current else None,
        current_version_number=current.version if current else None,
        current_artifact=(
            str(resolve_artifact(current.artifact_path, settings)) if current else None
        ),
        task_type=project.task_type,
    )


def labelled_set(session: Session, snapshot: ProjectSnapshot, split: str) -> LabelledSet:
    """Items of ``split`` with a resolved label, in item id order.

    Gold pool items are left out: what annotators say about them measures the annotators, it is
    not a label (it neither trains the model nor counts against the budget).
    """
    index = snapshot.label_index()
    conditions = [
        Item.project_id == snapshot.id,
        Item.split == split,
        Item.excluded.is_(False),  # a lead excluded it from training in the data manager
        Annotation.project_id == snapshot.id,
        live(),
    ]
    if split == SPLIT_POOL:
        conditions.append(~exists().where(GoldItem.item_id == Item.id))
    rows = session.execute(
        select(Item.id, Item.text, Annotation.label_id, Annotation.id)
        .join(Annotation, Annotation.item_id == Item.id)
        .where(*conditions)
        .order_by(Item.id, Annotation.id)
    ).all()
    votes: dict[int, list[int]] = {}
    texts: dict[int, str] = {}
    for item_id, text, label_id, _annotation_id in rows:
        if label_id in index:
            votes.setdefault(item_id, []).append(index[label_id])
            texts[item_id] = text
    decided = {
        item_id: index[label_id]
        for item_id, label_id in adjudicated_labels(session, snapshot.id).items()
        if label_id in index
    }
    _add_adjudicated_texts(session, snapshot, split, conditions[:3], decided, texts)
    overlap = set(session.scalars(
        select(OverlapItem.item_id).where(OverlapItem.project_id == snapshot.id)
    )) if split == SPLIT_POOL else set()
    result = LabelledSet()
    for item_id in sorted(set(votes) | (set(decided) & set(texts))):
        if item_id not in decided and item_id in overlap and not has_majority(votes[item_id]):
            continue  # an unsettled disagreement on an overlap item: not a label yet
        result.item_ids.append(item_id)
        result.texts.append(texts[item_id])
        result.labels.append(decided[item_id] if item_id in decided else majority(votes[item_id]))
    return result


@dataclass
class LabelledSets:
    """A multi-label project's labelled items: each item's set as label indices (``[]``: none
    of these), in item id order."""

    item_ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    sets: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)


def labelled_sets(session: Session, snapshot: ProjectSnapshot, split: str) -> LabelledSets:
    """Items of ``split`` with a live multi-label answer, in item id order.

    With several annotators on an item, a label is on when more than half of their sets have
    it; a tie goes to the most recent set. A reviewer's adjudicated set (the latest active
    accept or change, :func:`app.domain.review.adjudicated_sets`) overrides them, also when the
    item's annotations were all undone. Gold and excluded items are left out, as for
    :func:`labelled_set`.
    """
    index = snapshot.label_index()
    conditions = [
        Item.project_id == snapshot.id,
        Item.split == split,
        Item.excluded.is_(False),
        Annotation.project_id == snapshot.id,
        Annotation.label_id.is_(None),
        live(),
    ]
    if split == SPLIT_POOL:
        conditions.append(~exists().where(GoldItem.item_id == Item.id))
    rows = session.execute(
        select(Item.id, Item.text, Annotation.id)
        .join(Annotation, Annotation.item_id == Item.id)
        .where(*conditions)
        .order_by(Item.id, Annotation.id)
    ).all()
    members: dict[int, set[int]] = {}
    for start in range(0, len(rows), 5_000):
        ids = [row[2] for row in rows[start:start + 5_000]]
        for annotation_id, label_id in session.execute(
            select(AnnotationLabel.annotation_id, AnnotationLabel.label_id)
            .where(AnnotationLabel.annotation_id.in_(ids))
        ):
            if label_id in index:
                members.setdefault(annotation_id, set()).add(index[label_id])
    votes: dict[int, list[set[int]]] = {}
    texts: dict[int, str] = {}
    for item_id, text, annotation_id in rows:
        votes.setdefault(item_id, []).append(members.get(annotation_id, set()))
        texts[item_id] = text
    decided = {
        item_id: {index[label_id] for label_id in label_ids if label_id in index}
        for item_id, label_ids in adjudicated_sets(session, snapshot.id).items()
    }
    _add_adjudicated_texts(session, snapshot, split, conditions[:3], decided, texts)
    result = LabelledSets()
    for item_id in sorted(set(votes) | (set(decided) & set(texts))):
        result.item_ids.append(item_id)
        result.texts.append(texts[item_id])
        chosen = decided[item_id] if item_id in decided else majority_set(votes[item_id])
        result.sets.append(sorted(chosen))
    return result



def _add_adjudicated_texts(
    session: Session, snapshot: ProjectSnapshot, split: str, item_conditions: list[Any],
    decided: Mapping[int, object], texts: dict[int, str],
) -> None:
    """Adjudicated items of ``split`` whose annotations were all undone still carry their label."""
    missing = [item_id for item_id in decided if item_id not in texts]
    if not missing:
        return
    conditions = [*item_conditions, Item.id.in_(missing)]
    if split == SPLIT_POOL:
        conditions.append(~exists().where(GoldItem.item_id == Item.id))
    for item_id, text in session.execute(select(Item.id, Item.text).where(*conditions)):
        texts[item_id] = text


def has_majority(labels: list[int]) -> bool:
    """One label has more votes than any other (a single vote is a majority)."""
    top = Counter(labels).most_common(2)
    return len(top) == 1 or top[0][1] > top[1][1]


def majority(labels: list[int]) -> int:
    """Most frequent label; among ties the one voted last (the most recent annotation)."""
    counts = Counter(labels)
    best = max(counts.values())
    return next(label for label in reversed(labels) if counts[label] == best)


def train_and_dev(session: Session, snapshot: ProjectSnapshot) -> tuple[LabelledSet, LabelledSet]:
    return labelled_set(session, snapshot, SPLIT_POOL), labelled_set(session, snapshot, SPLIT_DEV)


def queueable_items(
    session: Session, snapshot: ProjectSnapshot, *, now: datetime | None = None
) -> tuple[list[int], list[str]]:
    """Pool items that may enter the queue: not fully labelled, not under an unexpired lease, not
    gold (gold items are handed out apart from the queue)."""
    ids, texts = [], []
    blocked = blocked_item_ids(session, snapshot, now=now)
    for item_id, text in session.execute(
        select(Item.id, Item.text)
        .where(
            Item.project_id == snapshot.id,
            Item.split == SPLIT_POOL,
            ~exists().where(GoldItem.item_id == Item.id),
        )
        .order_by(Item.id)
    ):
        if item_id not in blocked:
            ids.append(item_id)
            texts.append(text)
    return ids, texts


def blocked_item_ids(
    session: Session, snapshot: ProjectSnapshot, *, now: datetime | None = None
) -> set[int]:
    """Items that are not open to annotators (:func:`app.domain.policy.taken_item_ids`: labelled
    ``annotations_per_item`` times and leased between them, or gold): the queue leaves them out."""
    return taken_item_ids(session, snapshot.id, snapshot.annotations_per_item, now or utcnow())


def stop_set(session: Session, snapshot: ProjectSnapshot, size: int) -> tuple[list[int], list[str]]:
    """A fixed sample of pool items (lowest ids) whose predictions are compared across rounds."""
    if size <= 0:
        return [], []
    rows = session.execute(
        select(Item.id, Item.text)
        .where(Item.project_id == snapshot.id, Item.split == SPLIT_POOL)
        .order_by(Item.id)
        .limit(size)
    ).all()
    return [r[0] for r in rows], [r[1] for r in rows]


def pool_texts(session: Session, snapshot: ProjectSnapshot) -> tuple[list[int], list[str]]:
    rows = session.execute(
        select(Item.id, Item.text)
        .where(Item.project_id == snapshot.id, Item.split == SPLIT_POOL)
        .order_by(Item.id)
    ).all()
    return [r[0] for r in rows], [r[1] for r in rows]
