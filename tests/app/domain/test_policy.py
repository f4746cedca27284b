"""The counting rules of :mod:`app.domain.policy`: item availability written once, read the same way
by the annotator's hand-out (SQL) and the worker's queue (a set), and the labels the budget counts.

Runs on SQLite and, in CI's second pass, on Postgres (the ``db`` fixture).
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Annotation, GoldItem, Item, Lease, Project, User
from app.domain.policy import labelled_items, labels_used, open_item, taken_item_ids
from app.domain.projects import get_labels
from tests.factories import make_items, make_project, make_user

pytestmark = pytest.mark.db


def _state(db: Session, project: Project, annotators: list[User], seed: int) -> None:
    """Random live, undone and superseded annotations, live and expired leases, gold items."""
    rng = random.Random(seed)
    labels = get_labels(db, project.id)
    now = utcnow()
    items = make_items(db, project, [f"text {seed} {i}" for i in range(60)])
    for item in items:
        people = rng.sample(annotators, rng.randint(0, len(annotators)))
        for person in people:
            kind = rng.choice(("annotation", "annotation", "undone", "lease", "expired"))
            if kind == "lease" or kind == "expired":
                expires = now + (timedelta(minutes=5) if kind == "lease" else -timedelta(minutes=5))
                db.add(Lease(project_id=project.id, item_id=item.id, annotator_id=person.id,
                             expires_at=expires))
            else:
                db.add(Annotation(project_id=project.id, item_id=item.id,
                                  annotator_id=person.id, label_id=rng.choice(labels).id,
                                  deleted=kind == "undone"))
        if rng.random() < 0.1:
            db.add(GoldItem(project_id=project.id, item_id=item.id,
                            label_id=labels[0].id, created_by_id=annotators[0].id))
    db.flush()


@pytest.mark.parametrize("per_item", [1, 2, 3])
def test_the_hand_out_and_the_worker_read_one_availability_rule(
    db: Session, per_item: int
) -> None:
    project = make_project(db)
    project.annotations_per_item = per_item
    annotators = [make_user(db) for _ in range(4)]
    _state(db, project, annotators, seed=per_item)
    now = utcnow()
    params = {"a_project": project.id, "a_now": now, "per_item": per_item}
    open_ids = set(db.scalars(
        select(Item.id).where(Item.project_id == project.id, open_item(per_item > 1)), params
    ))
    all_ids = set(db.scalars(select(Item.id).where(Item.project_id == project.id)))
    taken = taken_item_ids(db, project.id, per_item, now)
    assert open_ids and taken, "the random state should have both kinds"
    assert open_ids == all_ids - taken


def test_an_item_leased_by_one_of_two_stays_open_for_the_second(db: Session) -> None:
    """A shared item (2 annotations wanted) with one live lease is still open, for the worker's
    queue as for the hand-out; it closes at two leases, or at a lease and a label."""
    project = make_project(db)
    project.annotations_per_item = 2
    first, second = make_user(db), make_user(db)
    (item,) = make_items(db, project, ["shared item"])
    now = utcnow()
    db.add(Lease(project_id=project.id, item_id=item.id, annotator_id=first.id,
                 expires_at=now + timedelta(minutes=5)))
    db.flush()
    assert item.id not in taken_item_ids(db, project.id, 2, now)
    db.add(Annotation(project_id=project.id, item_id=item.id, annotator_id=second.id,
                      label_id=get_labels(db, project.id)[0].id))
    db.flush()
    assert item.id in taken_item_ids(db, project.id, 2, now)
    assert item.id not in taken_item_ids(db, project.id, 2, now + timedelta(minutes=10))


def test_labels_used_counts_overlap_labels_per_person_and_leaves_gold_out(db: Session) -> None:
    from app.db.models import OverlapItem

    project = make_project(db)
    people = [make_user(db) for _ in range(2)]
    plain, overlap, gold, undone = make_items(db, project, ["a", "b", "c", "d"])
    label = get_labels(db, project.id)[0]
    db.add(OverlapItem(project_id=project.id, item_id=overlap.id))
    db.add(GoldItem(project_id=project.id, item_id=gold.id, label_id=label.id,
                    created_by_id=people[0].id))
    for item, who, deleted in ((plain, people[0], False), (overlap, people[0], False),
                               (overlap, people[1], False), (gold, people[1], False),
                               (undone, people[0], True)):
        db.add(Annotation(project_id=project.id, item_id=item.id, annotator_id=who.id,
                          label_id=label.id, deleted=deleted))
    db.flush()
    assert labelled_items(db, project.id) == 2  # plain and overlap
    assert labels_used(db, project.id) == 3  # the overlap item counts once per annotator
