"""Stop-rule evaluation after each round, stored on the round-metrics row.

Evaluated twice per round: by the retrain (dev score, stop-set predictions) and again by the queue
rebuild, which adds the agreement between two acquisition functions. When a rule fires the
row carries the recommendation; the project only stops by itself when ``project.auto_stop``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.db.models import Project, RoundMetric
from app.domain.rounds import round_history
from worker.ml.stopping import RoundRecord, StoppingConfig, evaluate_stopping

STOP_SET_SIZE = 200
"""Pool items (lowest ids) whose predictions are compared between rounds, with no dev set."""


def stopping_config(project: Project) -> StoppingConfig:
    return StoppingConfig(min_gain_points=project.stop_threshold, budget=project.label_budget)


def to_records(rows: list[RoundMetric]) -> list[RoundRecord]:
    """Rounds comparable with the newest one, oldest first.

    Labels can go down (annotations deleted): history restarts there, because the rules assume
    rounds ordered by growing label counts. Stop-set predictions only count when made on the same
    items as the newest round's.
    """
    if not rows:
        return []
    newest_ids = rows[-1].details.get("stop_item_ids")
    records: list[RoundRecord] = []
    for row in rows:
        if records and row.labels_used < records[-1].labels:
            records = []
        predictions = None
        if newest_ids and row.details.get("stop_item_ids") == newest_ids:
            predictions = np.asarray(row.details.get("stop_predictions", []), dtype=np.int64)
        records.append(
            RoundRecord(
                labels=row.labels_used,
                dev_score=row.macro_f1,
                predictions=predictions,
                agreement=row.details.get("agreement"),
            )
        )
    return records


def evaluate_round(session: Session, project: Project, row: RoundMetric) -> list[dict[str, Any]]:
    """(Re-)evaluate every rule for the rounds up to ``row``; store and apply the result."""
    rows = [r for r in round_history(session, project.id) if r.id != row.id] + [row]
    recommendations = [
        {"rule": r.rule, "fire": r.fire, "evidence": r.evidence, "values": dict(r.values)}
        for r in evaluate_stopping(to_records(rows), stopping_config(project))
    ]
    row.stop_recommendations = recommendations
    if project.auto_stop and any(r["fire"] for r in recommendations):
        project.stopped = True
    session.flush()
    return recommendations
