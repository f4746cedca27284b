"""The run-row reporter: throttled progress, ETA, log tail, JSON-safe metrics, heartbeat thread."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from app.db.models import RUN_RETRAIN, TrainingRun
from app.domain.runs import request_retrain
from app.domain.runs.lifecycle import LOG_TAIL_LINES, Claim, claim_run
from app.jobs import Job
from tests.app.domain.runs_support import Db, make_project
from tests.worker.tasks.waiting import wait_for
from worker.tasks.reporter import Heartbeat, RunReporter, capture_logs


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def claimed(file_db: Db) -> Claim:
    with file_db.session() as session:
        run = request_retrain(session, make_project(session))
        session.commit()
        claim = claim_run(session, run.id, kind=RUN_RETRAIN).claim
        session.commit()
    assert claim is not None
    return claim


def row(file_db: Db, claim: Claim) -> TrainingRun:
    with file_db.session() as session:
        run = session.get(TrainingRun, claim.run_id)
        assert run is not None
        return run


def test_writes_are_throttled_but_phase_changes_are_immediate(file_db: Db, sent: list[Job]) -> None:
    claim, clock = claimed(file_db), FakeClock()
    reporter = RunReporter(claim, file_db.sessions, min_interval=5.0, clock=clock)
    reporter.report(phase="train", step=1, total=10, metrics={"loss": 2.0})
    assert (row(file_db, claim).phase, row(file_db, claim).step) == ("train", 1)
    clock.now += 1.0
    reporter.report(phase="train", step=2, total=10, metrics={"loss": 1.5})
    assert row(file_db, claim).step == 1  # throttled
    clock.now += 5.0
    reporter.report(phase="train", step=3, total=10, metrics={"loss": float("nan")})
    run = row(file_db, claim)
    assert run.step == 3 and run.metrics["loss"] == 1.5  # NaN dropped, last finite value kept
    assert run.eta_seconds is not None and abs(run.eta_seconds - 6.0 / 2 * 7) < 1e-6
    reporter.report(phase="evaluate", step=0, total=1, message="dev set")
    run = row(file_db, claim)
    assert run.phase == "evaluate" and run.message == "dev set" and run.metrics == {}


def test_log_tail_keeps_the_last_lines_and_captures_ml_logs(file_db: Db, sent: list[Job]) -> None:
    claim = claimed(file_db)
    reporter = RunReporter(claim, file_db.sessions, min_interval=0.0)
    with capture_logs(reporter):
        logging.getLogger("worker.ml.training").info("warm start from v1")
    for i in range(LOG_TAIL_LINES + 10):
        reporter.log(f"line {i}")
    reporter.flush()
    lines = row(file_db, claim).log_tail.splitlines()
    assert len(lines) == LOG_TAIL_LINES and lines[-1] == f"line {LOG_TAIL_LINES + 9}"
    resumed = replace(claim, attempt=2, log_tail="worker lost; re-queued")
    continued = RunReporter(resumed, file_db.sessions, min_interval=0.0)
    assert continued._lines[0] == "worker lost; re-queued"  # a new attempt keeps the history
    assert continued._lines[-1] == "attempt 2 started"
    reporter2 = RunReporter(claim, file_db.sessions, min_interval=0.0)
    with capture_logs(reporter2):
        logging.getLogger("worker.ml.training").info("warm start from v1")
    reporter2.flush()
    assert "warm start from v1" in row(file_db, claim).log_tail


def test_heartbeat_thread_beats_without_any_progress(file_db: Db, sent: list[Job]) -> None:
    claim = claimed(file_db)
    before = row(file_db, claim).heartbeat_at
    reporter = RunReporter(claim, file_db.sessions, min_interval=60.0)
    with Heartbeat(reporter, interval=0.05):
        wait_for(lambda: row(file_db, claim).heartbeat_at != before, "a heartbeat", timeout=10)
    assert not reporter.cancelled()


def test_a_busy_sqlite_database_skips_a_progress_write_instead_of_failing_the_run(
    file_db: Db, sent: list[Job]
) -> None:
    """Another process holds SQLite's write lock past the busy timeout (a stream of labels and
    live-head refits did this to a queue rebuild): the progress line is skipped, not raised."""
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    if file_db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's whole-database write lock; Postgres locks rows")
    claim = claimed(file_db)
    path = file_db.engine.url.database
    assert path
    impatient = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    reporter = RunReporter(claim, sessionmaker(impatient), min_interval=0.0)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the other process's write transaction
        reporter.report(phase="score", step=1, total=10)  # must not raise
        assert row(file_db, claim).phase != "score"  # nothing written while locked
    finally:
        other.execute("ROLLBACK")
        other.close()
    reporter.report(phase="score", step=2, total=10)
    assert (row(file_db, claim).phase, row(file_db, claim).step) == ("score", 2)
    impatient.dispose()
