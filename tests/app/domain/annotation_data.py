"""Data helpers shared by the annotation, dashboard and annotator-view tests (and the browser test).

Queue entries and round metrics are normally written by workers; these helpers write the same
shapes directly so the web side can be tested without training anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Item, Label, Project, QueueEntry, RoundMetric
from app.domain.projects import get_labels


def add_queue(
    db: Session,
    project: Project,
    items: Sequence[Item],
    *,
    version: int | None = None,
    strategy: str = "entropy",
    neighbours: Sequence[Item] = (),
) -> int:
    """Queue ``items`` in order as queue version ``version`` (default: next) and switch to it."""
    version = project.queue_version + 1 if version is None else version
    labels = get_labels(db, project.id)
    for rank, item in enumerate(items):
        db.add(
            QueueEntry(
                project_id=project.id,
                queue_version=version,
                item_id=item.id,
                rank=rank,
                score=round(0.9 - rank * 0.01, 4),
                strategy=strategy,
                reason=f"entropy {0.9 - rank * 0.01:.2f} of {len(labels)} classes",
                predicted=[
                    {"label": label.name, "prob": p}
                    for label, p in zip(labels, (0.55, 0.45, 0.0), strict=False)
                ],
                neighbours=[
                    {"item_id": n.id, "label": labels[i % len(labels)].name,
                     "similarity": round(0.9 - 0.1 * i, 3)}
                    for i, n in enumerate(neighbours)
                ],
            )
        )
    project.queue_version = version
    db.flush()
    return version


def add_rounds(
    db: Session,
    project: Project,
    points: Sequence[tuple[int, float, float]],
    *,
    stop: bool = False,
) -> list[RoundMetric]:
    """Round metrics at (labels, accuracy, macro-F1), oldest first, with a confusion matrix."""
    labels: list[Label] = get_labels(db, project.id)
    k = len(labels)
    start = utcnow() - timedelta(hours=len(points))
    rows = []
    for i, (used, accuracy, f1) in enumerate(points):
        confusion = [[(12 if r == c else 2 + (r + c) % 3) for c in range(k)] for r in range(k)]
        rows.append(
            RoundMetric(
                project_id=project.id,
                labels_used=used,
                dev_accuracy=accuracy,
                macro_f1=f1,
                per_class_f1={label.name: round(f1 - 0.05 * j, 3)
                              for j, label in enumerate(labels)},
                confusion=confusion,
                details={"dev_n": sum(map(sum, confusion))},
                stop_recommendations=[
                    {"rule": "dev_gain", "fire": stop and i == len(points) - 1,
                     "evidence": f"macro-F1 rose {0.1 if stop else 3.0:.1f} points per 100 labels "
                                 "over the last 3 rounds (threshold 0.2)",
                     "values": {"gain_per_100": 0.1 if stop else 3.0}},
                    {"rule": "budget", "fire": False,
                     "evidence": f"{used} of {project.label_budget} labels used", "values": {}},
                ],
                created_at=start + timedelta(hours=i),
            )
        )
    db.add_all(rows)
    db.flush()
    return rows
