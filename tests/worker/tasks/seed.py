"""A small learnable project (tiny BERT topics corpus) and a batch-submission stand-in.

``submit_batch`` does what the annotation API does when an annotator submits a batch: add the
annotations, bump the project's data version, and call ``request_retrain`` in the same
transaction. It labels with the corpus' gold labels, so models can be checked for learning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import SPLIT_DEV, SPLIT_POOL, Annotation, Item, Label, Project, TrainingRun
from app.domain.runs import lock_project, request_retrain
from tests.app.domain.runs_support import add_items
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus

TINY_TRAIN_CONFIG = {"epochs": 2, "batch_size": 8, "max_length": 32, "eval_batch_size": 32}


@dataclass
class Seeded:
    project_id: int
    label_ids: list[int]
    pool_ids: list[int]
    pool_gold: dict[int, int]
    dev_ids: list[int] = field(default_factory=list)


def seed_project(
    session: Session,
    *,
    base_model: str,
    pool_size: int = 60,
    dev_size: int = 12,
    batch_size: int = 6,
    **project_fields: object,
) -> Seeded:
    project = Project(
        name="topics",
        base_model=base_model,
        train_config=dict(TINY_TRAIN_CONFIG),
        batch_size=batch_size,
        label_budget=1000,
        strategy="entropy",
        **project_fields,
    )
    session.add(project)
    session.flush()
    labels = [Label(project_id=project.id, name=n, position=i) for i, n in enumerate(LABEL_NAMES)]
    session.add_all(labels)
    session.flush()
    texts, gold = make_corpus(pool_size + dev_size, seed=3)
    pool = add_items(session, project, texts[:pool_size], split=SPLIT_POOL)
    dev = add_items(session, project, texts[pool_size:], split=SPLIT_DEV)
    for item, y in zip(dev, gold[pool_size:], strict=True):
        session.add(Annotation(project_id=project.id, item_id=item.id, label_id=labels[y].id))
    session.flush()
    return Seeded(
        project_id=project.id,
        label_ids=[label.id for label in labels],
        pool_ids=[item.id for item in pool],
        pool_gold={item.id: y for item, y in zip(pool, gold[:pool_size], strict=True)},
        dev_ids=[item.id for item in dev],
    )


def unlabelled_pool_ids(session: Session, seeded: Seeded) -> list[int]:
    labelled = set(
        session.scalars(
            select(Annotation.item_id).where(Annotation.project_id == seeded.project_id)
        )
    )
    return [i for i in seeded.pool_ids if i not in labelled]


def submit_batch(
    session: Session, seeded: Seeded, n: int, *, item_ids: list[int] | None = None
) -> TrainingRun:
    """Label ``n`` pool items (the first unlabelled ones unless given) and request a retrain."""
    project = lock_project(session, seeded.project_id)
    chosen = item_ids if item_ids is not None else unlabelled_pool_ids(session, seeded)[:n]
    for item_id in chosen:
        label_id = seeded.label_ids[seeded.pool_gold[item_id]]
        session.add(Annotation(project_id=project.id, item_id=item_id, label_id=label_id))
    project.data_version += 1
    session.flush()
    return request_retrain(session, project, reason=f"batch of {len(chosen)}")


def pool_item(session: Session, item_id: int) -> Item:
    item = session.get(Item, item_id)
    assert item is not None
    return item
