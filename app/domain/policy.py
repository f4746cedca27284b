"""The counting rules in one place: live annotations, labels used, item availability, the budget
plan and settings.

:func:`live` is the one definition of an annotation that counts (neither undone nor superseded);
:func:`labels_used` is what the label budget counts (every label a person made on a pool item:
distinct labelled items, plus the extra labels on overlap items; gold answers left out). The web's
"budget spent" stop and the worker's next batch size both read it.

Item availability: a pool item is *open* while its live annotations plus its unexpired leases are
fewer than the annotations it wants (``annotations_per_item``) and it is not gold (gold items are
handed out on their own). :func:`open_item` is that rule as SQL (the annotator's hand-out adds
"not labelled or leased by me" to it), :func:`taken_item_ids` the same rule as the set of items
that are not open (the worker leaves them out of the queue); a test holds the two equal.

:class:`BudgetSettings` is the one object through which budget and stop settings are written: the
settings page, the new-project form and the API all build one, so the bounds (from
:mod:`contract.budget`, shared with the worker) and their messages are the same everywhere.
:func:`budget_plan` is the one reading of a project's stored settings: the batch the annotators
work towards, the dashboard's budget panel, the "budget spent" stop and the worker's queue size
all come from it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, exists, func, select
from sqlalchemy.orm import Session

from app.db.models import SPLIT_POOL, Annotation, GoldItem, Item, Lease, OverlapItem, Project
from app.errors import InvalidInput
from contract.budget import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LABEL_BUDGET,
    DEFAULT_RESERVE_FRACTION,
    DEFAULT_STOP_THRESHOLD,
    MAX_BATCH_SIZE,
    MAX_LABEL_BUDGET,
    MAX_RESERVE_FRACTION,
    MAX_STOP_THRESHOLD,
    BudgetPlan,
)

_LIVE = and_(Annotation.deleted.is_(False), Annotation.superseded_by_id.is_(None))


def live() -> ColumnElement[bool]:
    """Neither undone nor superseded. Built once: SQL expressions are immutable and reusable."""
    return _LIVE


_LABELS_USED = (
    select(func.count(func.distinct(Annotation.item_id)))
    .join(Item, Item.id == Annotation.item_id)
    .where(
        Annotation.project_id == bindparam("a_project"),
        Item.split == SPLIT_POOL,
        live(),
        ~exists().where(GoldItem.item_id == Item.id),  # gold answers are not labels
    )
)


# Labels beyond the first on overlap items (issue 16): each is a label a person made, so the
# budget counts it (an item labelled by 2 annotators counts 2).
_OVERLAP_EXTRA_LABELS = (
    select(func.count(Annotation.id) - func.count(func.distinct(Annotation.item_id)))
    .join(OverlapItem, OverlapItem.item_id == Annotation.item_id)
    .join(Item, Item.id == Annotation.item_id)
    .where(
        Annotation.project_id == bindparam("a_project"),
        OverlapItem.project_id == bindparam("a_project"),
        Item.split == SPLIT_POOL,
        live(),
        ~exists().where(GoldItem.item_id == Item.id),
    )
)


def labelled_items(db: Session, project_id: int) -> int:
    """Distinct labelled pool items, gold items left out (what the worker's budget phase counts).

    The worker counts its labelled training set (``worker.tasks.project_data.labelled_set``),
    which also leaves out items a lead excluded from training in the data manager.
    """
    return int(db.scalar(_LABELS_USED, {"a_project": project_id}) or 0)


def labels_used(db: Session, project_id: int) -> int:
    """What the label budget counts: every label a person made on a pool item, gold answers left
    out. An item counts once, except an overlap item, which counts once per annotator."""
    params = {"a_project": project_id}
    return labelled_items(db, project_id) + int(db.scalar(_OVERLAP_EXTRA_LABELS, params) or 0)


def open_item(shared: bool) -> ColumnElement[bool]:
    """SQL condition on ``Item``: the item is open (see the module docstring).

    Bind parameters: ``a_project``, ``a_now`` and, when ``shared`` (the project wants more than
    one annotation per item), ``per_item``. Unshared, the rule is written as two ``EXISTS``
    probes, which SQLite answers faster than counts on the annotator's every keystroke; every
    subquery names the project so it probes the ``(project_id, item_id)`` index.
    """
    project_id: BindParameter[int] = bindparam("a_project")
    now: BindParameter[datetime] = bindparam("a_now")
    of_item = (Annotation.project_id == project_id, Annotation.item_id == Item.id, live())
    leased = (Lease.item_id == Item.id, Lease.expires_at > now)
    not_gold = ~exists().where(GoldItem.item_id == Item.id)
    if not shared:
        return not_gold & ~exists().where(*of_item) & ~exists().where(*leased)
    annotations = select(func.count()).where(*of_item).scalar_subquery()
    leases = select(func.count()).where(*leased).scalar_subquery()
    return not_gold & ((annotations + leases) < bindparam("per_item"))


def taken_item_ids(db: Session, project_id: int, per_item: int, now: datetime) -> set[int]:
    """Pool items that are not open: gold, or ``per_item`` live annotations and unexpired
    leases between them. The set form of :func:`open_item`, counted with two grouped queries
    (labelled and leased items only) instead of one probe per pool item."""
    taken: Counter[int] = Counter()
    for item_id, count in db.execute(
        select(Annotation.item_id, func.count())
        .where(Annotation.project_id == project_id, live())
        .group_by(Annotation.item_id)
    ):
        taken[item_id] += count
    for item_id, count in db.execute(
        select(Lease.item_id, func.count())
        .where(Lease.project_id == project_id, Lease.expires_at > now)
        .group_by(Lease.item_id)
    ):
        taken[item_id] += count
    gold = db.scalars(select(GoldItem.item_id).where(GoldItem.project_id == project_id))
    return {item_id for item_id, count in taken.items() if count >= per_item} | set(gold)


class BudgetFields(Protocol):
    """What a project row (or the worker's snapshot of one) stores about its budget."""

    @property
    def label_budget(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def reserve_fraction(self) -> float: ...


def budget_plan(project: BudgetFields) -> BudgetPlan:
    """The budget plan of a project's stored settings (clamped into range, never refused)."""
    return BudgetPlan.for_project(
        project.label_budget, project.batch_size, project.reserve_fraction
    )


@dataclass(frozen=True)
class BudgetSettings:
    """The lead's dials: how many labels, in what batches, how much held back, when to stop."""

    label_budget: int = DEFAULT_LABEL_BUDGET
    batch_size: int = DEFAULT_BATCH_SIZE
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION
    stop_threshold: float = DEFAULT_STOP_THRESHOLD
    auto_stop: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.label_budget <= MAX_LABEL_BUDGET:
            raise InvalidInput(
                f"The label budget must be between 1 and {MAX_LABEL_BUDGET:,} labels.",
                details={"field": "label_budget"},
            )
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise InvalidInput(
                f"The batch size must be between 1 and {MAX_BATCH_SIZE:,} (the "
                "playbook suggests 50-200).",
                details={"field": "batch_size"},
            )
        if not 0.0 <= self.reserve_fraction <= MAX_RESERVE_FRACTION:
            raise InvalidInput(
                "The polish reserve is a share of the budget between 0 and "
                f"{MAX_RESERVE_FRACTION} (the playbook suggests 0.10-0.20).",
                details={"field": "reserve_fraction"},
            )
        if not 0.0 <= self.stop_threshold <= MAX_STOP_THRESHOLD:
            raise InvalidInput(
                "The stop threshold is a dev gain in percentage points per 100 "
                f"labels, between 0 and {MAX_STOP_THRESHOLD:g} (e.g. 0.2).",
                details={"field": "stop_threshold"},
            )

    @classmethod
    def of(cls, project: Project) -> BudgetSettings:
        """The settings a project has now (to change some of them with ``dataclasses.replace``)."""
        return cls(**{name: getattr(project, name) for name in BUDGET_FIELDS})

    def apply(self, project: Project) -> None:
        """Write these settings onto the project row (the caller flushes)."""
        for name in BUDGET_FIELDS:
            setattr(project, name, getattr(self, name))


BUDGET_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(BudgetSettings))
"""The project columns :class:`BudgetSettings` owns."""
