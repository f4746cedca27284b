"""The run wrapper with stand-in bodies: publish atomically, fail, cancel, lose the claim."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    Project,
    TrainingRun,
)
from app.domain.runs import cancel_run, request_retrain
from app.domain.runs.reaper import reap_stale_runs
from app.jobs import Job
from contract.errors import Cancelled
from tests.app.domain.runs_support import Db, make_project
from worker.tasks.runner import Outcome, RunContext, execute_run


def queued_run(file_db: Db) -> tuple[int, int]:
    with file_db.session() as session:
        project = make_project(session)
        run = request_retrain(session, project)
        session.commit()
        return project.id, run.id


def load(file_db: Db, run_id: int) -> TrainingRun:
    with file_db.session() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        return run


def test_publish_runs_in_the_final_transaction(file_db: Db, sent: list[Job]) -> None:
    project_id, run_id = queued_run(file_db)
    after: list[str] = []

    def publish(session: Session, run: TrainingRun) -> int | None:
        project = session.get(Project, project_id)
        assert project is not None
        project.description = f"published by run {run.id}"
        return None

    def body(ctx: RunContext) -> Outcome:
        ctx.reporter.report(phase="train", step=1, total=2, metrics={"loss": float("nan")})
        return Outcome(
            "done", publish=publish, metrics={"x": 1}, after_commit=lambda: after.append("ok")
        )

    summary = execute_run(run_id, RUN_RETRAIN, body, settings=file_db.settings)
    run = load(file_db, run_id)
    with file_db.session() as session:
        project = session.get(Project, project_id)
    assert summary == "succeeded: done" and run.status == RUN_SUCCEEDED
    assert project is not None and project.description == f"published by run {run_id}"
    assert run.metrics == {"x": 1} and after == ["ok"] and run.attempts == 1


def test_an_exception_fails_the_run_and_publishes_nothing(file_db: Db, sent: list[Job]) -> None:
    project_id, run_id = queued_run(file_db)

    def body(ctx: RunContext) -> Outcome:
        raise ValueError("labels file is corrupt")

    summary = execute_run(run_id, RUN_RETRAIN, body, settings=file_db.settings)
    run = load(file_db, run_id)
    assert summary.startswith("failed") and run.status == RUN_FAILED
    assert "ValueError: labels file is corrupt" in run.message
    assert run.error is not None and "Traceback" in run.error and run.finished_at is not None


def test_cancelled_from_the_ml_core_ends_cancelled(file_db: Db, sent: list[Job]) -> None:
    _, run_id = queued_run(file_db)

    def body(ctx: RunContext) -> Outcome:
        raise Cancelled("train cancelled by request")

    assert execute_run(run_id, RUN_RETRAIN, body, settings=file_db.settings) == "cancelled"
    assert load(file_db, run_id).status == RUN_CANCELLED


def test_a_cancel_seen_after_the_body_prevents_publication(file_db: Db, sent: list[Job]) -> None:
    project_id, run_id = queued_run(file_db)
    published: list[int] = []

    def body(ctx: RunContext) -> Outcome:
        with file_db.session() as session:
            cancel_run(session, project_id, run_id)
            session.commit()
        ctx.reporter.flush()  # the heartbeat would do this within a period
        return Outcome("done", publish=lambda s, r: published.append(r.id))  # type: ignore[arg-type, func-returns-value]

    assert execute_run(run_id, RUN_RETRAIN, body, settings=file_db.settings) == "cancelled"
    assert published == [] and load(file_db, run_id).status == RUN_CANCELLED


def test_a_claim_lost_to_the_reaper_publishes_nothing(file_db: Db, sent: list[Job]) -> None:
    _, run_id = queued_run(file_db)
    published: list[int] = []

    def body(ctx: RunContext) -> Outcome:
        later = utcnow() + timedelta(seconds=file_db.settings.stale_run_seconds + 1)
        with file_db.session() as session:  # another process decides this worker is dead
            assert reap_stale_runs(session, settings=file_db.settings, now=later).requeued
            session.commit()
        return Outcome("done", publish=lambda s, r: published.append(r.id))  # type: ignore[arg-type, func-returns-value]

    summary = execute_run(run_id, RUN_RETRAIN, body, settings=file_db.settings)
    run = load(file_db, run_id)
    assert summary.startswith("lost") and published == []
    assert run.status == RUN_QUEUED and run.attempts == 1  # ready for attempt 2


def test_a_duplicate_message_is_skipped(file_db: Db, sent: list[Job]) -> None:
    _, run_id = queued_run(file_db)
    calls: list[int] = []

    def body(ctx: RunContext) -> Outcome:
        calls.append(ctx.claim.attempt)
        return Outcome("done")

    execute_run(run_id, RUN_RETRAIN, body, settings=file_db.settings)
    summary = execute_run(run_id, RUN_RETRAIN, body, settings=file_db.settings)
    assert calls == [1] and summary == f"skipped: run {run_id} is already succeeded"
