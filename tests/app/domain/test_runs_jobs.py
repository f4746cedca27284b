"""Jobs are sent after commit, dropped on rollback, and never carry ORM objects."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Project
from app.jobs import Job, enqueue_after_commit, pending_jobs, recording_jobs, use_sender
from contract.tasks import QUEUE_DEFAULT, QUEUE_GPU, TASK_RETRAIN
from tests.app.domain.runs_support import Db, file_db
from worker.celery_app import broker_transport_options, celery_app

__all__ = ["file_db"]


def test_job_arguments_must_be_ids_or_scalars() -> None:
    with pytest.raises(TypeError, match="pass ids and scalars only"):
        Job(TASK_RETRAIN, (Project(),))
    with pytest.raises(ValueError):
        Job("")


def test_per_session_sender_and_savepoint_rollback(db: Session) -> None:
    sent: list[Job] = []
    use_sender(db, sent.append)
    enqueue_after_commit(db, Job(TASK_RETRAIN, (1,)))
    nested = db.begin_nested()
    enqueue_after_commit(db, Job(TASK_RETRAIN, (2,)))
    nested.rollback()  # a savepoint rollback keeps the outer transaction's jobs
    assert len(pending_jobs(db)) == 2
    db.commit()
    assert [j.args for j in sent] == [(1,), (2,)]


def test_commit_inside_an_outer_test_transaction_still_sends(file_db: Db) -> None:
    """The rolled-back-transaction test pattern: the session only commits a savepoint."""
    with file_db.engine.connect() as conn:
        outer = conn.begin()
        with recording_jobs() as sent:
            session = Session(bind=conn, join_transaction_mode="create_savepoint")
            enqueue_after_commit(session, Job(TASK_RETRAIN, (7,)))
            session.commit()
            enqueue_after_commit(session, Job(TASK_RETRAIN, (8,)))
            session.rollback()
            session.close()
        outer.rollback()
    assert sent == [Job(TASK_RETRAIN, (7,))]


def test_a_failing_broker_does_not_break_the_commit(
    db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(job: Job) -> None:
        raise ConnectionError("broker down")

    use_sender(db, broken)
    enqueue_after_commit(db, Job(TASK_RETRAIN, (3,)))
    with caplog.at_level(logging.ERROR, logger="app.jobs"):
        db.commit()
    assert "the reaper will retry" in caplog.text


def test_task_names_route_to_their_queues() -> None:
    router = celery_app.amqp.router
    assert router.route({}, "training.retrain_adapter", (), {})["queue"].name == QUEUE_GPU
    assert router.route({}, "queue.recompute", (), {})["queue"].name == QUEUE_GPU
    assert router.route({}, "runs.reap_stale", (), {})["queue"].name == QUEUE_DEFAULT


def test_embedded_broker_gets_no_engine_breaking_transport_options(settings: Settings) -> None:
    embedded = settings.model_copy(update={"broker_url": "sqla+sqlite:////tmp/broker.sqlite"})
    redis = settings.model_copy(update={"broker_url": "redis://127.0.0.1:6379/0"})
    assert broker_transport_options(embedded) == {}  # kombu passes them to create_engine()
    # the embedded broker polls an empty queue every SQLA_POLLING_INTERVAL s, not kombu's 1 s
    from kombu.transport.sqlalchemy import Transport

    from worker.celery_app import SQLA_POLLING_INTERVAL

    assert Transport.polling_interval == SQLA_POLLING_INTERVAL < 1.0
    assert broker_transport_options(redis)["visibility_timeout"] == (
        settings.visibility_timeout_seconds
    )
