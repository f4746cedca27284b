"""Pieces every annotation operation shares: what a live annotation is, the SQLite write lock,
the batch id of a data version and the number of labels the budget counts."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.orm import Session

from app.db.models import (
    SPLIT_POOL,
    Annotation,
    Item,
    Label,
    Project,
)
from app.errors import NotFound


def batch_id_for(data_version: int) -> str:
    return f"round-{data_version}"


_LIVE = and_(Annotation.deleted.is_(False), Annotation.superseded_by_id.is_(None))


def live() -> ColumnElement[bool]:
    """Neither undone nor superseded. Built once: SQL expressions are immutable and reusable."""
    return _LIVE


def take_write_lock(db: Session, project_id: int) -> None:
    """On SQLite, begin the transaction with a write so the decisions below are serialised.

    pysqlite opens a transaction at the first write only; reading first and writing later would
    let two requests read the same state. On Postgres row locks do the job and this is a no-op.
    """
    if db.get_bind().dialect.name == "sqlite":
        db.execute(
            update(Project)
            .where(Project.id == project_id)
            .values(queue_version=Project.queue_version)
            .execution_options(synchronize_session=False)
        )


def is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def project_labels(db: Session, project_id: int) -> list[Label]:
    return list(
        db.scalars(select(Label).where(Label.project_id == project_id).order_by(Label.position))
    )


def labels_used(db: Session, project_id: int) -> int:
    """Distinct labelled pool items: what the label budget counts (as the worker does)."""
    return int(
        db.scalar(
            select(func.count(func.distinct(Annotation.item_id)))
            .join(Item, Item.id == Annotation.item_id)
            .where(Annotation.project_id == project_id, Item.split == SPLIT_POOL, live())
        )
        or 0
    )


def project_item(db: Session, project: Project, item_id: int) -> Item:
    item = db.get(Item, item_id)
    if item is None or item.project_id != project.id:
        raise NotFound(f"Item {item_id} is not in this project.", details={"item_id": item_id})
    return item
