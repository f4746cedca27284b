"""Run requests, coalescing, claiming, cancelling and progress reads (no worker involved)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    RUN_CANCELLED,
    RUN_QUEUE,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_TAPT,
    TrainingRun,
)
from app.domain.runs import (
    RunAlreadyFinished,
    RunNotFound,
    RunProgress,
    cancel_run,
    list_runs,
    request_queue_recompute,
    request_retrain,
    request_tapt,
    run_progress,
)
from app.domain.runs.lifecycle import (
    ProgressSnapshot,
    beat,
    cancel_claimed_run,
    claim_run,
    fail_run,
    succeed_run,
)
from app.errors import ProjectNotFound
from app.jobs import Job, recording_jobs
from contract.tasks import TASK_RECOMPUTE_QUEUE, TASK_RETRAIN, TASK_TAPT
from tests.app.domain.runs_support import Db, file_db, make_project

__all__ = ["file_db"]


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


def test_request_sends_the_job_only_after_commit(db: Session, sent: list[Job]) -> None:
    project = make_project(db)
    run = request_retrain(db, project, reason="batch 1")
    assert run.status == RUN_QUEUED
    assert sent == []  # not before the commit
    db.commit()
    assert sent == [Job(TASK_RETRAIN, (run.id,))]


def test_rollback_drops_the_job_and_the_run(db: Session, sent: list[Job]) -> None:
    project = make_project(db)
    db.commit()
    request_retrain(db, project)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(TrainingRun)) == 0
    db.commit()  # a later commit must not send the dropped job
    assert sent == []


def test_requests_coalesce_into_one_queued_run(db: Session, sent: list[Job]) -> None:
    project = make_project(db)
    db.commit()
    for i in range(20):
        request_retrain(db, project.id, reason=f"batch {i}")
        db.commit()
    runs = list_runs(db, project.id)
    assert len(runs) == 1
    assert runs[0].params["requests"] == 20
    assert runs[0].params["reasons"][-1] == "batch 19"
    assert len(runs[0].params["reasons"]) == 10
    assert len(sent) == 1


def test_kinds_do_not_coalesce_with_each_other(db: Session, sent: list[Job]) -> None:
    project = make_project(db)
    request_retrain(db, project)
    request_tapt(db, project, config={"max_steps": 5})
    request_queue_recompute(db, project)
    db.commit()
    kinds = sorted(r.kind for r in list_runs(db, project.id))
    tapt = list_runs(db, project.id, kind=RUN_TAPT)[0]
    assert kinds == sorted([RUN_RETRAIN, RUN_TAPT, RUN_QUEUE])
    assert tapt.params["tapt_config"] == {"max_steps": 5}
    assert sorted(j.name for j in sent) == sorted([TASK_RETRAIN, TASK_TAPT, TASK_RECOMPUTE_QUEUE])


def test_request_for_missing_project_is_a_domain_error(db: Session, sent: list[Job]) -> None:
    with pytest.raises(ProjectNotFound):
        request_retrain(db, 999)


def test_follow_up_waits_for_the_running_run_then_trains_on_newest_data(
    db: Session, sent: list[Job]
) -> None:
    project = make_project(db)
    first = request_retrain(db, project)
    db.commit()
    claim = claim_run(db, first.id, kind=RUN_RETRAIN).claim
    assert claim is not None and claim.attempt == 1
    db.commit()
    sent.clear()
    for _ in range(5):  # batches keep arriving while it trains
        project.data_version += 1
        follow_up = request_retrain(db, project)
        db.commit()
    assert sent == []  # the running run will send it
    assert claim_run(db, follow_up.id, kind=RUN_RETRAIN).claim is None  # sibling running
    db.commit()
    succeed_run(db, claim, message="done")
    db.commit()
    assert sent == [Job(TASK_RETRAIN, (follow_up.id,))]
    second = claim_run(db, follow_up.id, kind=RUN_RETRAIN).claim
    db.commit()
    assert second is not None
    assert second.data_version == 5 and claim.data_version == 0


def test_a_duplicate_message_does_not_claim_twice(db: Session, sent: list[Job]) -> None:
    run = request_retrain(db, make_project(db))
    db.commit()
    assert claim_run(db, run.id, kind=RUN_RETRAIN).claim is not None
    db.commit()
    again = claim_run(db, run.id, kind=RUN_RETRAIN)
    wrong_kind = claim_run(db, run.id, kind=RUN_TAPT)
    missing = claim_run(db, 12345, kind=RUN_RETRAIN)
    assert again.claim is None and "already running" in again.reason
    assert wrong_kind.claim is None and missing.claim is None


def test_cancel_queued_run_ends_it_at_once(db: Session, sent: list[Job]) -> None:
    run = request_retrain(db, make_project(db))
    db.commit()
    cancel_run(db, run.project_id, run.id)
    db.commit()
    assert run.status == RUN_CANCELLED
    assert claim_run(db, run.id, kind=RUN_RETRAIN).claim is None
    with pytest.raises(RunAlreadyFinished):
        cancel_run(db, run.project_id, run.id)
    with pytest.raises(RunNotFound):
        cancel_run(db, run.project_id, 4242)
    other = make_project(db)
    db.flush()
    with pytest.raises(RunNotFound):  # a run is only found through its own project
        cancel_run(db, other.id, run.id)


def test_cancel_running_run_is_seen_by_the_heartbeat(db: Session, sent: list[Job]) -> None:
    run = request_retrain(db, make_project(db))
    db.commit()
    claim = claim_run(db, run.id, kind=RUN_RETRAIN).claim
    assert claim is not None
    db.commit()
    assert beat(db, claim).cancel_requested is False
    db.commit()
    cancel_run(db, run.project_id, run.id)
    db.commit()
    assert run.status == RUN_RUNNING and run.cancel_requested
    result = beat(db, claim)
    assert result.owner and result.cancel_requested
    cancel_claimed_run(db, claim, message="cancelled by an admin")
    db.commit()
    db.refresh(run)
    assert run.status == RUN_CANCELLED and run.finished_at is not None


def test_progress_snapshot_and_read(db: Session, sent: list[Job]) -> None:
    run = request_retrain(db, make_project(db))
    db.commit()
    claim = claim_run(db, run.id, kind=RUN_RETRAIN).claim
    assert claim is not None
    snapshot = ProgressSnapshot(
        phase="train",
        step=3,
        total=12,
        metrics={"loss": 0.5},
        message="epoch 1",
        eta_seconds=9.0,
        log_tail="a\nb",
    )
    beat(db, claim, snapshot=snapshot)
    db.commit()
    progress = run_progress(db, run.project_id, run.id)
    admin = run_progress(db, run.project_id, run.id, include_error=True)
    fail_run(db, claim, error="Traceback: boom", message="failed: boom")
    db.commit()
    failed_public = run_progress(db, run.project_id, run.id)
    failed_admin = run_progress(db, run.project_id, run.id, include_error=True)
    assert isinstance(progress, RunProgress)
    assert (progress.phase, progress.step, progress.total) == ("train", 3, 12)
    assert progress.fraction == pytest.approx(0.25)
    assert progress.metrics == {"loss": 0.5} and progress.eta_seconds == 9.0
    assert progress.active and progress.heartbeat_age_seconds is not None
    assert admin.error is None
    assert failed_public.error is None and failed_admin.error == "Traceback: boom"
    assert not failed_public.active


def test_success_records_results_and_follow_up_of_other_kind_is_untouched(
    db: Session, sent: list[Job]
) -> None:
    project = make_project(db)
    run = request_retrain(db, project)
    db.commit()
    claim = claim_run(db, run.id, kind=RUN_RETRAIN).claim
    assert claim is not None
    request_queue_recompute(db, project)
    db.commit()
    sent.clear()
    succeed_run(db, claim, message="ok", metrics={"macro_f1": 0.7}, timings={"train": 1.5})
    db.commit()
    assert run.status == RUN_SUCCEEDED
    assert run.metrics["macro_f1"] == 0.7 and run.timings["train"] == 1.5
    assert sent == []  # the queued recompute run was already sent when requested


def test_concurrent_requests_from_threads_still_coalesce(file_db: Db, sent: list[Job]) -> None:
    """Six web processes' worth of submissions at once: the project lock keeps one queued run."""
    with file_db.session() as session:
        project_id = make_project(session).id
        session.commit()
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                with file_db.session() as session:
                    request_retrain(session, project_id)
                    session.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with file_db.session() as session:
        runs = list_runs(session, project_id)
    assert len(runs) == 1 and runs[0].params["requests"] == 18
    assert len(sent) == 1
