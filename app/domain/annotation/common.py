"""Pieces every annotation operation shares: what a live annotation is, the SQLite write lock,
the batch id of a data version and the number of labels the budget counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.db.models import Item, Label, Project
from app.db.session import hold_sqlite_write_lock
from app.domain.policy import labelled_items as labelled_items  # re-exported: rules live in policy
from app.domain.policy import labels_used as labels_used
from app.domain.policy import live as live
from app.errors import NotFound


def batch_id_for(data_version: int) -> str:
    return f"round-{data_version}"


# Hot statements are built once with bind parameters (see :mod:`.leases`).
_TOUCH_PROJECT = (
    update(Project)
    .where(Project.id == bindparam("a_project"))
    .values(queue_version=Project.queue_version)
    .execution_options(synchronize_session=False)
)


def take_write_lock(db: Session, project_id: int) -> None:
    """On SQLite, begin the transaction with a write so the decisions below are serialised.

    pysqlite opens a transaction at the first write only; reading first and writing later would
    let two requests read the same state. On Postgres row locks do the job and this is a no-op.

    Requests of one process first queue on a process-wide FIFO lock, held until their transaction
    ends (:func:`app.db.session.hold_sqlite_write_lock`, taken before *every* SQLite write):
    SQLite's own busy handler polls with sleeps of up to 100 ms, which under 20 concurrent
    annotators turned a 20 ms label into hundreds of milliseconds. Other processes (the worker)
    still meet SQLite's lock and its busy timeout.
    """
    bind: Any = db.get_bind()
    if bind.dialect.name == "sqlite":
        hold_sqlite_write_lock(db)  # explicit, though the UPDATE below would take it anyway
        db.execute(_TOUCH_PROJECT, {"a_project": project_id})


def is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


_PROJECT_LABELS = (
    select(Label).where(Label.project_id == bindparam("a_project")).order_by(Label.position)
)


def project_labels(db: Session, project_id: int) -> list[Label]:
    """The project's labels in display order."""
    return list(db.scalars(_PROJECT_LABELS, {"a_project": project_id}))


def project_item(db: Session, project: Project, item_id: int) -> Item:
    item = db.get(Item, item_id)
    if item is None or item.project_id != project.id:
        raise NotFound(f"Item {item_id} is not in this project.", details={"item_id": item_id})
    return item
