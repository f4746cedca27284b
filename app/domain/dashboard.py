"""What the lead dashboard shows, read from the database: budget, learning curve, the latest
evaluation (confusion matrix, per-class F1), label distribution, the stop recommendation and its
evidence, and annotator throughput.

Everything here is a read. The numbers come from rows the workers wrote (``RoundMetric``: one per
trained model version) and from annotations; the web process computes nothing heavier than a
median.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    SPLIT_POOL,
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    Item,
    Label,
    LiveHeadState,
    Project,
    RoundMetric,
    User,
)
from app.domain.annotation import UI_SOURCE
from app.domain.policy import budget_plan, labels_used, live
from app.domain.rounds import latest_round, round_history


@dataclass(frozen=True)
class BudgetSummary:
    budget: int
    used: int
    reserve: int
    main_budget: int
    phase: str
    next_batch: int
    batches_left: int
    advice: tuple[str, ...]

    @property
    def left(self) -> int:
        return max(0, self.budget - self.used)

    @property
    def used_fraction(self) -> float:
        return min(1.0, self.used / self.budget) if self.budget else 1.0

    @property
    def main_fraction(self) -> float:
        return self.main_budget / self.budget if self.budget else 0.0


def budget_summary(db: Session, project: Project) -> BudgetSummary:
    plan = budget_plan(project)
    used = labels_used(db, project.id)
    nxt = plan.next_batch(used)
    return BudgetSummary(
        budget=plan.budget,
        used=used,
        reserve=plan.reserve,
        main_budget=plan.main_budget,
        phase=nxt.phase.value,
        next_batch=nxt.size,
        batches_left=len(plan.schedule(used)),
        advice=tuple(plan.advice()),
    )


@dataclass(frozen=True)
class CurvePoint:
    labels: int
    accuracy: float | None
    macro_f1: float | None
    model_version_id: int | None
    created_at: datetime
    dev_n: int | None = None
    """How many dev items the round was evaluated on (None: not recorded)."""
    held_out_macro_f1: float | None = None
    """No dev set: the adapter's macro-F1 on the slice of labels its round held out."""
    held_out_n: int | None = None
    micro_f1: float | None = None
    """A multi-label adapter round's dev micro-F1 (``accuracy`` is then its subset accuracy)."""


SMALL_DEV_SET = 50
"""Below this many dev items a difference of one or two items moves macro-F1 by points: gains
measured on such a set are shown with a caution."""


@dataclass(frozen=True)
class Gain:
    """Dev macro-F1 gain per 100 labels between a round and the one before it."""

    round: int
    labels: int
    accuracy: float | None
    macro_f1: float | None
    points_per_100: float | None
    dev_n: int | None
    held_out_macro_f1: float | None = None
    held_out_n: int | None = None
    micro_f1: float | None = None

    @property
    def small_dev(self) -> bool:
        return self.dev_n is not None and self.dev_n < SMALL_DEV_SET


def gains_per_100(curve: list[CurvePoint]) -> list[Gain]:
    """One row per round: the gain in macro-F1 points per 100 more labels (None for the first)."""
    out = []
    for i, point in enumerate(curve):
        prev = curve[i - 1] if i else None
        gain = None
        if (prev is not None and prev.macro_f1 is not None and point.macro_f1 is not None
                and point.labels > prev.labels):
            gain = (point.macro_f1 - prev.macro_f1) * 100 * 100 / (point.labels - prev.labels)
        out.append(Gain(i + 1, point.labels, point.accuracy, point.macro_f1, gain, point.dev_n,
                        point.held_out_macro_f1, point.held_out_n, point.micro_f1))
    return out


def learning_curve(db: Session, project_id: int) -> list[CurvePoint]:
    """One point per round (RoundMetric), in the order the rounds happened. A multi-label
    round's ``accuracy`` is its dev subset accuracy, and it adds its dev micro-F1."""
    rows = round_history(db, project_id)
    return [
        CurvePoint(r.labels_used, r.dev_accuracy, r.macro_f1, r.model_version_id, r.created_at,
                   _dev_n(r), *_held_out(r), micro_f1=_float((r.details or {}).get("micro_f1")))
        for r in rows
    ]


def _held_out(row: RoundMetric) -> tuple[float | None, int | None]:
    held = (row.details or {}).get("held_out")
    if not isinstance(held, dict) or not isinstance(held.get("macro_f1"), int | float):
        return None, None
    n = held.get("n")
    return float(held["macro_f1"]), n if isinstance(n, int) else None


def _dev_n(row: RoundMetric) -> int | None:
    recorded = (row.details or {}).get("dev_n")
    if isinstance(recorded, int):
        return recorded
    counted = sum(sum(int(v) for v in r) for r in row.confusion or [] if isinstance(r, list))
    return counted or None


@dataclass(frozen=True)
class ClassScore:
    label: str
    color: str
    f1: float | None
    support: int


@dataclass(frozen=True)
class Evaluation:
    """The newest round's dev-set evaluation."""

    round_id: int
    labels_used: int
    accuracy: float | None
    macro_f1: float | None
    label_names: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    """Rows are gold labels, columns predictions, in label order."""
    per_class: tuple[ClassScore, ...]
    dev_n: int

    @property
    def max_cell(self) -> int:
        return max((max(row) for row in self.confusion if row), default=0)

    def row_total(self, i: int) -> int:
        return sum(self.confusion[i])


def latest_evaluation(db: Session, project: Project) -> Evaluation | None:
    row = latest_round(db, project.id)
    if row is None:
        return None
    labels = list(
        db.scalars(select(Label).where(Label.project_id == project.id).order_by(Label.position))
    )
    names = tuple(label.name for label in labels)
    matrix = _square(row.confusion, len(names))
    per_class = tuple(
        ClassScore(
            label=label.name,
            color=label.color,
            f1=_float(row.per_class_f1.get(label.name)),
            support=sum(matrix[i]) if i < len(matrix) else 0,
        )
        for i, label in enumerate(labels)
    )
    return Evaluation(
        round_id=row.id,
        labels_used=row.labels_used,
        accuracy=row.dev_accuracy,
        macro_f1=row.macro_f1,
        label_names=names,
        confusion=matrix,
        per_class=per_class,
        dev_n=int(row.details.get("dev_n") or sum(sum(r) for r in matrix)),
    )


@dataclass(frozen=True)
class Confusion:
    gold: str
    predicted: str
    count: int
    share: float
    """Of the gold label's dev items."""


def top_confusions(evaluation: Evaluation, limit: int = 6) -> list[Confusion]:
    """The largest off-diagonal cells: which label is mistaken for which, most often first."""
    cells = []
    for i, row in enumerate(evaluation.confusion):
        total = sum(row)
        for j, count in enumerate(row):
            if i != j and count > 0:
                cells.append(Confusion(evaluation.label_names[i], evaluation.label_names[j],
                                       count, count / total if total else 0.0))
    cells.sort(key=lambda c: (-c.count, -c.share, c.gold, c.predicted))
    return cells[:limit]


def _square(raw: list[Any], size: int) -> tuple[tuple[int, ...], ...]:
    """The stored matrix cut or padded to the current label count (labels may be added later)."""
    rows = []
    for i in range(size):
        source = raw[i] if i < len(raw) and isinstance(raw[i], list) else []
        rows.append(tuple(int(source[j]) if j < len(source) else 0 for j in range(size)))
    return tuple(rows)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class LabelCount:
    label: str
    color: str
    count: int
    share: float


def label_distribution(db: Session, project_id: int) -> list[LabelCount]:
    """Live labels per class in the pool (what the model trains on); in a multi-label project,
    the items carrying each label (shares of the labelled items: they need not sum to 1)."""
    project = db.get(Project, project_id)
    if project is not None and project.task_type == TASK_MULTI_LABEL:
        return _set_distribution(db, project_id)
    counts = dict(
        db.execute(
            select(Annotation.label_id, func.count())
            .join(Item, Item.id == Annotation.item_id)
            .where(
                Annotation.project_id == project_id,
                Item.split == SPLIT_POOL,
                live(),
            )
            .group_by(Annotation.label_id)
        ).tuples().all()
    )
    labels = db.scalars(select(Label).where(Label.project_id == project_id)
                        .order_by(Label.position))
    total = sum(counts.values())
    return [
        LabelCount(label.name, label.color, counts.get(label.id, 0),
                   counts.get(label.id, 0) / total if total else 0.0)
        for label in labels
    ]


def _live_pool_annotations(project_id: int) -> Any:
    return (select(Annotation.id).join(Item, Item.id == Annotation.item_id)
            .where(Annotation.project_id == project_id, Item.split == SPLIT_POOL, live()))


def _set_distribution(db: Session, project_id: int) -> list[LabelCount]:
    ids = _live_pool_annotations(project_id).subquery()
    counts = dict(db.execute(
        select(AnnotationLabel.label_id, func.count())
        .where(AnnotationLabel.annotation_id.in_(select(ids.c.id)))
        .group_by(AnnotationLabel.label_id)
    ).tuples().all())
    labelled = db.scalar(select(func.count()).select_from(ids)) or 0
    labels = db.scalars(select(Label).where(Label.project_id == project_id)
                        .order_by(Label.position))
    return [
        LabelCount(label.name, label.color, counts.get(label.id, 0),
                   counts.get(label.id, 0) / labelled if labelled else 0.0)
        for label in labels
    ]


@dataclass(frozen=True)
class LabelF1:
    label: str
    f1: float
    support: int


@dataclass(frozen=True)
class MultiLabelSummary:
    """A multi-label project's figures: the live head on the dev set (``None`` until it has
    been measured there) and how often labels come together in the labelled pool."""

    dev_n: int | None
    micro_f1: float | None
    macro_f1: float | None
    subset_accuracy: float | None
    hamming_loss: float | None
    per_label: tuple[LabelF1, ...]
    label_names: tuple[str, ...]
    co_occurrence: tuple[tuple[int, ...], ...]
    """Items whose live set has both labels (the diagonal: each label's items)."""
    labelled_items: int
    none_of_these: int
    """Labelled pool items whose set is empty."""
    mean_labels: float

    @property
    def max_cell(self) -> int:
        return max((max(row) for row in self.co_occurrence), default=0)


def multi_label_summary(db: Session, project: Project) -> MultiLabelSummary | None:
    if project.task_type != TASK_MULTI_LABEL:
        return None
    labels = list(db.scalars(select(Label).where(Label.project_id == project.id)
                             .order_by(Label.position)))
    position = {label.id: i for i, label in enumerate(labels)}
    ids = _live_pool_annotations(project.id).subquery()
    first, second = AnnotationLabel.__table__.alias(), AnnotationLabel.__table__.alias()
    matrix = [[0] * len(labels) for _ in labels]
    for a, b, count in db.execute(
        select(first.c.label_id, second.c.label_id, func.count())
        .join(second, second.c.annotation_id == first.c.annotation_id)
        .where(first.c.annotation_id.in_(select(ids.c.id)))
        .group_by(first.c.label_id, second.c.label_id)
    ).tuples():
        if a in position and b in position:
            matrix[position[a]][position[b]] = int(count)
    labelled = db.scalar(select(func.count()).select_from(ids)) or 0
    with_labels = db.scalar(select(func.count(func.distinct(AnnotationLabel.annotation_id)))
                            .where(AnnotationLabel.annotation_id.in_(select(ids.c.id)))) or 0
    evaluation = _head_evaluation(db, project.id)
    per_label = tuple(
        LabelF1(str(row.get("label", "")), float(row.get("f1", 0.0)), int(row.get("support", 0)))
        for row in evaluation.get("per_label", []) if isinstance(row, dict)
    )
    return MultiLabelSummary(
        dev_n=_int(evaluation.get("dev_n")),
        micro_f1=_float(evaluation.get("micro_f1")),
        macro_f1=_float(evaluation.get("macro_f1")),
        subset_accuracy=_float(evaluation.get("subset_accuracy")),
        hamming_loss=_float(evaluation.get("hamming_loss")),
        per_label=per_label,
        label_names=tuple(label.name for label in labels),
        co_occurrence=tuple(tuple(row) for row in matrix),
        labelled_items=labelled,
        none_of_these=labelled - with_labels,
        mean_labels=sum(matrix[i][i] for i in range(len(labels))) / labelled if labelled else 0.0,
    )


def _head_evaluation(db: Session, project_id: int) -> dict[str, Any]:
    """The dev-set evaluation the worker stored with the multi-label live head ({} if none)."""
    path = db.scalar(select(LiveHeadState.artifact_path)
                     .where(LiveHeadState.project_id == project_id))
    if not path:
        return {}
    try:
        meta = json.loads((Path(path) / "multilabel_head.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    evaluation = meta.get("extra", {}).get("evaluation") if isinstance(meta, dict) else None
    return evaluation if isinstance(evaluation, dict) else {}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class RuleResult:
    rule: str
    fire: bool
    evidence: str
    values: dict[str, Any]

    @property
    def title(self) -> str:
        return RULE_TITLES.get(self.rule, self.rule.replace("_", " "))


RULE_TITLES = {
    "dev_gain": "Dev-set gain per 100 labels",
    "budget": "Label budget",
    "acquisition_agreement": "Agreement of two acquisition functions",
    "stabilizing_predictions": "Stabilising predictions",
}


@dataclass(frozen=True)
class StopAdvice:
    recommend_stop: bool
    rules: tuple[RuleResult, ...]
    labels_used: int
    threshold: float
    stopped: bool
    auto_stop: bool

    @property
    def firing(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if r.fire)


def stop_advice(db: Session, project: Project) -> StopAdvice | None:
    """The stop rules as evaluated after the newest round (the worker stores them there)."""
    row = latest_round(db, project.id)
    if row is None:
        return None
    rules = tuple(
        RuleResult(
            rule=str(r.get("rule", "?")),
            fire=bool(r.get("fire")),
            evidence=str(r.get("evidence", "")),
            values=dict(r.get("values") or {}),
        )
        for r in row.stop_recommendations or []
        if isinstance(r, dict)
    )
    return StopAdvice(
        recommend_stop=any(r.fire for r in rules),
        rules=rules,
        labels_used=row.labels_used,
        threshold=project.stop_threshold,
        stopped=project.stopped,
        auto_stop=project.auto_stop,
    )


@dataclass(frozen=True)
class AnnotatorStats:
    user_id: int
    name: str
    labels: int
    labels_24h: int
    median_seconds: float | None
    active_hours: float

    @property
    def per_hour(self) -> float | None:
        """Labels per hour of labelling time, from the median time per item."""
        if not self.median_seconds:
            return None
        return 3600.0 / self.median_seconds


def throughput(db: Session, project_id: int, *, now: datetime | None = None
               ) -> list[AnnotatorStats]:
    """Per annotator: labels made in the UI (live), the last 24 h, and time per item."""
    now = now or utcnow()
    since = now - timedelta(hours=24)
    rows = db.execute(
        select(Annotation.annotator_id, Annotation.duration_ms, Annotation.created_at)
        .where(
            Annotation.project_id == project_id,
            Annotation.source == UI_SOURCE,
            live(),
            Annotation.annotator_id.is_not(None),
        )
    ).tuples()
    durations: dict[int, list[int]] = {}
    totals: dict[int, int] = {}
    recent: dict[int, int] = {}
    for annotator_id, duration_ms, created_at in rows:
        assert annotator_id is not None
        totals[annotator_id] = totals.get(annotator_id, 0) + 1
        if created_at >= since:
            recent[annotator_id] = recent.get(annotator_id, 0) + 1
        if duration_ms is not None:
            durations.setdefault(annotator_id, []).append(duration_ms)
    names = {
        uid: name or email
        for uid, name, email in db.execute(
            select(User.id, User.name, User.email).where(User.id.in_(list(totals)))
        ).tuples()
    }
    stats = [
        AnnotatorStats(
            user_id=uid,
            name=names.get(uid, f"user {uid}"),
            labels=count,
            labels_24h=recent.get(uid, 0),
            median_seconds=(median(durations[uid]) / 1000.0) if durations.get(uid) else None,
            active_hours=sum(durations.get(uid, [])) / 3_600_000.0,
        )
        for uid, count in totals.items()
    ]
    return sorted(stats, key=lambda s: (-s.labels, s.name))
