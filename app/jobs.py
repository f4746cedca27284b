"""Enqueue background jobs only after the transaction that motivates them commits.

A worker that receives a job reloads rows by id. If the job were sent before the commit, the worker
could look for a run row that does not exist yet (or never will, after a rollback). So domain code
calls :func:`enqueue_after_commit`, which only records the job on the session; a SQLAlchemy
``after_commit`` hook sends the recorded jobs, and ``after_rollback`` drops them.

The web process sends by task *name* through ``worker.celery_app.celery_app.send_task``: it never
imports the task modules (and so never imports torch). Task names and queue routing live in
:mod:`contract.tasks`.

If sending fails after the commit (broker down), nothing is lost: the run row stays ``queued`` and
the stale-run reaper re-sends jobs for queued runs that nobody picked up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)

_PENDING_KEY = "tapestry.pending_jobs"
_SENDER_KEY = "tapestry.job_sender"

_JSON_SCALARS = (int, str, float, bool, type(None))


@dataclass(frozen=True)
class Job:
    """A task to send by name. Arguments are ids and small scalars, never ORM objects."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Job.name must be a registered task name such as 'queue.recompute'")
        for value in (*self.args, *self.kwargs.values()):
            if not isinstance(value, _JSON_SCALARS):
                raise TypeError(
                    f"Job {self.name!r} got a {type(value).__name__} argument; pass ids and "
                    "scalars only, the worker reloads state from the database"
                )


JobSender = Callable[[Job], None]


def celery_sender(job: Job) -> None:
    """Send through the Celery app by name; importing the app is cheap (no task modules)."""
    from worker.celery_app import celery_app

    celery_app.send_task(job.name, args=list(job.args), kwargs=dict(job.kwargs))


_default_sender: JobSender = celery_sender


def set_default_sender(sender: JobSender) -> JobSender:
    """Replace the process-wide sender (tests, embedded tools); returns the previous one."""
    global _default_sender
    previous, _default_sender = _default_sender, sender
    return previous


def use_sender(session: Session, sender: JobSender) -> None:
    """Make this one session send its jobs through ``sender`` (e.g. a recording list in tests)."""
    session.info[_SENDER_KEY] = sender


def enqueue_after_commit(session: Session, job: Job) -> None:
    """Record ``job`` to be sent once ``session`` commits; a rollback discards it."""
    session.info.setdefault(_PENDING_KEY, []).append(job)


def pending_jobs(session: Session) -> list[Job]:
    """Jobs recorded on the session and not yet sent (a copy)."""
    return list(session.info.get(_PENDING_KEY, ()))


@contextmanager
def recording_jobs() -> Iterator[list[Job]]:
    """Capture every job sent process-wide while the block runs, instead of sending it."""
    sent: list[Job] = []
    previous = set_default_sender(sent.append)
    try:
        yield sent
    finally:
        set_default_sender(previous)


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    jobs: list[Job] = session.info.pop(_PENDING_KEY, [])
    if not jobs:
        return
    sender: JobSender = session.info.get(_SENDER_KEY, _default_sender)
    for job in jobs:
        try:
            sender(job)
        except Exception:  # the committed run stays queued; the reaper re-sends it
            log.exception("could not send job %s%s; the reaper will retry", job.name, job.args)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    # A savepoint rollback keeps the outer transaction (and its jobs) alive; only the rollback of
    # the session's own transaction discards them.
    if not previous_transaction.nested:
        session.info.pop(_PENDING_KEY, None)
