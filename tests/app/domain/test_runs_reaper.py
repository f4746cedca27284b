"""The stale-run reaper: dead workers are noticed, runs re-queued or failed, lost sends re-sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import utcnow
from app.db.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_RUNNING,
    TrainingRun,
)
from app.domain.runs import cancel_run, request_retrain
from app.domain.runs.lifecycle import Claim, LostOwnership, beat, claim_run, succeed_run
from app.domain.runs.reaper import reap_stale_runs
from app.jobs import Job, recording_jobs
from contract.tasks import TASK_RETRAIN
from tests.app.domain.runs_support import make_project


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


def later(settings: Settings) -> timedelta:
    """Just past the point where a heartbeat counts as stale."""
    return timedelta(seconds=settings.stale_run_seconds + 1)


def start_run(db: Session, sent: list[Job]) -> tuple[TrainingRun, Claim]:
    run = request_retrain(db, make_project(db))
    db.commit()
    claim = claim_run(db, run.id, kind=RUN_RETRAIN).claim
    assert claim is not None
    db.commit()
    sent.clear()
    return run, claim


def test_fresh_heartbeat_is_left_alone(db: Session, sent: list[Job], settings: Settings) -> None:
    run, _ = start_run(db, sent)
    soon = utcnow() + timedelta(seconds=settings.stale_run_seconds / 2)
    report = reap_stale_runs(db, settings=settings, now=soon)
    db.commit()
    assert not report.changed and run.status == RUN_RUNNING and sent == []


def test_dead_worker_is_requeued_and_the_old_attempt_is_fenced_off(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    run, claim = start_run(db, sent)
    report = reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert report.requeued == [run.id]
    assert run.status == RUN_QUEUED and "no heartbeat" in run.message
    assert sent == [Job(TASK_RETRAIN, (run.id,))]
    # The old attempt (had it only been slow) can neither beat nor publish any more.
    assert beat(db, claim).owner is False
    with pytest.raises(LostOwnership):
        succeed_run(db, claim, message="late")
    db.rollback()
    second = claim_run(db, run.id, kind=RUN_RETRAIN).claim
    db.commit()
    assert second is not None and second.attempt == 2


def test_gives_up_after_max_attempts(db: Session, sent: list[Job], settings: Settings) -> None:
    assert settings.max_run_attempts == 2
    run, _ = start_run(db, sent)
    reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert claim_run(db, run.id, kind=RUN_RETRAIN).claim is not None  # attempt 2 of 2
    db.commit()
    sent.clear()
    report = reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert report.failed == [run.id]
    assert run.status == RUN_FAILED and run.finished_at is not None
    assert run.error is not None and "worker lost" in run.error
    assert "gave up after 2 attempts" in run.message
    assert sent == []


def test_stale_run_with_a_queued_follow_up_is_superseded(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    run, _ = start_run(db, sent)
    follow_up = request_retrain(db, run.project_id)
    db.commit()
    assert sent == []  # it waits for the running one
    report = reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert report.superseded == [run.id]
    assert run.status == RUN_FAILED and f"queued run {follow_up.id}" in run.message
    assert follow_up.status == RUN_QUEUED
    assert sent == [Job(TASK_RETRAIN, (follow_up.id,))]


def test_stale_run_that_was_asked_to_cancel_ends_cancelled(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    run, _ = start_run(db, sent)
    cancel_run(db, run.project_id, run.id)
    db.commit()
    report = reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert report.cancelled == [run.id] and run.status == RUN_CANCELLED and sent == []


def test_lost_queued_message_is_resent(db: Session, sent: list[Job], settings: Settings) -> None:
    run = request_retrain(db, make_project(db))
    db.commit()
    sent.clear()
    assert not reap_stale_runs(db, settings=settings).changed
    report = reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert report.resent == [run.id]
    assert sent == [Job(TASK_RETRAIN, (run.id,))]


def test_queued_runs_wait_their_turn_while_workers_are_busy(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    busy, _ = start_run(db, sent)
    waiting = request_retrain(db, make_project(db))  # another project, behind it in the broker
    db.commit()
    sent.clear()
    soon_stale = utcnow() + timedelta(seconds=settings.stale_run_seconds / 2)
    db.execute(update(TrainingRun).where(TrainingRun.id == busy.id).values(heartbeat_at=soon_stale))
    report = reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert not report.changed and sent == [] and waiting.status == RUN_QUEUED


def test_a_lost_message_is_resent_only_after_workers_went_idle(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    done, claim = start_run(db, sent)
    waiting = request_retrain(db, make_project(db))
    long_ago = utcnow() - 2 * later(settings)
    waiting.params = {**waiting.params, "scheduled_at": long_ago.isoformat()}
    succeed_run(db, claim, message="finished just now")
    db.commit()
    sent.clear()
    assert not reap_stale_runs(db, settings=settings).changed  # a run just ended: busy
    report = reap_stale_runs(db, settings=settings, now=utcnow() + later(settings))
    db.commit()
    assert report.resent == [waiting.id] and sent == [Job(TASK_RETRAIN, (waiting.id,))]
    assert done.status == "succeeded"
