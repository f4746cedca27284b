"""``tapestry reap``: one pass, JSON output, the beat-less loop, argument errors."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import RUN_QUEUED, RUN_RETRAIN, TrainingRun
from app.domain.runs import request_retrain
from app.domain.runs.lifecycle import claim_run
from app.domain.runs.reaper import ReapReport
from app.jobs import Job
from contract.tasks import TASK_RETRAIN
from tests.app.domain.runs_support import Db, make_project
from worker.cli_support import reap_main


def test_one_pass_requeues_a_silent_run(
    file_db: Db, sent: list[Job], capsys: pytest.CaptureFixture[str]
) -> None:
    with file_db.session() as session:
        run = request_retrain(session, make_project(session))
        session.commit()
        claim_run(session, run.id, kind=RUN_RETRAIN)
        silent_since = utcnow() - timedelta(seconds=file_db.settings.stale_run_seconds + 5)
        session.execute(
            update(TrainingRun).where(TrainingRun.id == run.id).values(heartbeat_at=silent_since)
        )
        session.commit()
    sent.clear()
    assert reap_main(["--json"], settings=file_db.settings) == 0
    printed = json.loads(capsys.readouterr().out)
    with file_db.session() as session:
        status = session.get(TrainingRun, run.id).status  # type: ignore[union-attr]
    assert printed["requeued"] == [run.id] and status == RUN_QUEUED
    assert sent == [Job(TASK_RETRAIN, (run.id,))]


def test_every_loops_and_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    passes: list[float] = []
    code = reap_main(
        ["--every", "5"],
        settings=object(),  # type: ignore[arg-type]
        reap=lambda settings: ReapReport(),
        sleep=passes.append,
        max_passes=3,
    )
    assert code == 0 and passes == [5.0, 5.0]
    assert capsys.readouterr().out.count("nothing to reap") == 3
    assert reap_main(["--every", "0"], settings=object()) == 2  # type: ignore[arg-type]
