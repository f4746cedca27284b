"""Likely label errors of a project, stored per item (issue 16): the bridge from the database to
:func:`worker.ml.label_errors.find_label_errors`.

Reads the labelled pool set (resolved labels; gold items are not in it), scores every labelled
item out of fold, and replaces the project's ``label_issues`` rows in one transaction. TF-IDF
features by default; ``embeddings`` can be passed by a caller that has them (the live head's
stored embeddings once they exist).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db.models import SPLIT_POOL, LabelIssue
from app.db.session import get_engine, session_factory
from contract.tasks import TASK_LABEL_ISSUES
from worker.celery_app import celery_app
from worker.tasks.project_data import labelled_set, load_snapshot

MIN_LABELLED = 20
"""Fewer labelled items than this: out-of-fold estimates mean nothing; nothing is stored."""


def compute_label_issues(
    session: Session, project_id: int, settings: Settings,
    *, embeddings: Sequence[Sequence[float]] | None = None,
) -> int:
    """Replace the project's likely-error rows; returns how many items were scored."""
    import numpy as np

    from worker.ml.label_errors import find_label_errors

    snapshot = load_snapshot(session, project_id, settings)
    data = labelled_set(session, snapshot, SPLIT_POOL)
    session.execute(delete(LabelIssue).where(LabelIssue.project_id == project_id))
    if len(data) < MIN_LABELLED or data.classes_present < 2:
        return 0
    vectors = np.asarray(embeddings, dtype=np.float64) if embeddings is not None else None
    issues = find_label_errors(data.labels, len(snapshot.label_ids), texts=data.texts,
                               embeddings=vectors)
    source = "embeddings" if vectors is not None else "tfidf"
    session.execute(insert(LabelIssue), [
        {"project_id": project_id, "item_id": data.item_ids[issue.index],
         "given_label_id": snapshot.label_ids[issue.given],
         "suggested_label_id": snapshot.label_ids[issue.suggested],
         "score": issue.score, "flagged": issue.flagged,
         "data_version": snapshot.data_version, "feature_source": source}
        for issue in issues
    ])
    return len(issues)


@celery_app.task(name=TASK_LABEL_ISSUES)
def label_issues(project_id: int) -> int:
    """On demand (or after a retrain): recompute the project's likely label errors."""
    settings = get_settings()
    with session_factory(get_engine(settings))() as session:
        scored = compute_label_issues(session, project_id, settings)
        session.commit()
    return scored
