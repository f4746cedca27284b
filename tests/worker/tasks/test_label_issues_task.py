"""The likely-label-error task on a project: stored per item, flips on top, gold left out."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Annotation, LabelIssue
from app.domain import gold
from app.domain.label_issues import likely_errors, request_recompute
from app.domain.projects import get_labels
from app.jobs import pending_jobs
from contract.tasks import TASK_LABEL_ISSUES
from tests.factories import make_items, make_project, make_user
from worker.tasks.label_errors import compute_label_issues

TICKETS = Path(__file__).resolve().parents[3] / "app" / "demo" / "tickets.csv"


def test_flipped_labels_are_stored_on_top_and_gold_is_left_out(db: Session) -> None:
    with TICKETS.open(newline="", encoding="utf-8") as handle:
        unique = {r["text"]: r for r in csv.DictReader(handle) if r["label"]}
    rows = list(unique.values())  # the 276 labelled demo tickets
    names = sorted({r["label"] for r in rows})
    annotator = make_user(db)
    project = make_project(db, labels=tuple(names), annotators=[annotator])
    labels = {lbl.name: lbl for lbl in get_labels(db, project.id)}
    items = make_items(db, project, [r["text"] for r in rows])
    rng = random.Random(4)
    flipped = set(rng.sample(range(len(items) - 1), 20))
    for i, (item, row) in enumerate(zip(items, rows, strict=True)):
        name = row["label"]
        if i in flipped:
            name = rng.choice([n for n in names if n != name])
        db.add(Annotation(project_id=project.id, item_id=item.id, annotator_id=annotator.id,
                          label_id=labels[name].id))
    gold_item = items[-1]
    gold.mark_gold(db, project, gold_item.id, rows[-1]["label"], by=None)
    db.flush()

    scored = compute_label_issues(db, project.id, Settings())
    assert scored == len(rows) - 1  # every labelled item but the gold one
    stored = list(db.scalars(select(LabelIssue).where(LabelIssue.project_id == project.id)
                             .order_by(LabelIssue.score.desc())))
    assert len(stored) == len(rows) - 1 and gold_item.id not in {s.item_id for s in stored}
    flipped_ids = {items[i].id for i in flipped}
    top = {s.item_id for s in stored[:20]}
    assert len(top & flipped_ids) >= 14, len(top & flipped_ids)

    listed = likely_errors(db, project, limit=20)
    assert listed and all(e.given != e.suggested and e.flagged for e in listed)
    assert [e.score for e in listed] == sorted((e.score for e in listed), reverse=True)
    request_recompute(db, project)
    assert [(j.name, j.args) for j in pending_jobs(db)] == [(TASK_LABEL_ISSUES, (project.id,))]

    # Recomputing replaces the rows; too few labels store nothing.
    assert compute_label_issues(db, project.id, Settings()) == len(rows) - 1
    small = make_project(db, labels=("a", "b"))
    assert compute_label_issues(db, small.id, Settings()) == 0
