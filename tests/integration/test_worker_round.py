"""A real worker process on a real broker: submit a batch -> train -> promote -> new queue.

Runs once on the embedded SQLAlchemy transport and once on Redis. Everything the test knows comes
from the database, polled with deadlines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.models import (
    RUN_QUEUE,
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    VERSION_PROMOTED,
    ModelVersion,
    Project,
    QueueEntry,
    TrainingRun,
)
from tests.app.domain.runs_support import Db
from tests.integration.workers import BrokerSender, WorkerProcess
from tests.worker.tasks.seed import Seeded, seed_project, submit_batch
from tests.worker.tasks.waiting import wait_for

pytestmark = [pytest.mark.celery, pytest.mark.slow, pytest.mark.timeout(300)]
ROUND_TIMEOUT = 120.0


def seed(stack_db: Db, tiny_model: Path) -> Seeded:
    with stack_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model))
        session.commit()
    return seeded


def project_state(stack_db: Db, project_id: int) -> Project:
    with stack_db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        return project


def queue_ready(stack_db: Db, project_id: int, model_version_id: int) -> list[QueueEntry]:
    """The served queue, once it was built by ``model_version_id``."""
    with stack_db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        rows = list(
            session.scalars(
                select(QueueEntry)
                .where(
                    QueueEntry.project_id == project_id,
                    QueueEntry.queue_version == project.queue_version,
                )
                .order_by(QueueEntry.rank)
            )
        )
    return rows if rows and rows[0].model_version_id == model_version_id else []


def test_submitted_batch_trains_promotes_and_requeues(
    stack_db: Db,
    sender: BrokerSender,
    workers: Callable[..., WorkerProcess],
    tiny_model: Path,
    transport: str,
) -> None:
    worker = workers()
    seeded = seed(stack_db, tiny_model)
    with stack_db.session() as session:
        run = submit_batch(session, seeded, 12)
        session.commit()
    assert [job.name for job in sender.sent] == ["training.retrain_adapter"]

    current = wait_for(
        lambda: project_state(stack_db, seeded.project_id).current_model_version_id,
        f"a promoted model version ({transport})\n{worker.log_tail()}",
        timeout=ROUND_TIMEOUT,
    )
    rows = wait_for(
        lambda: queue_ready(stack_db, seeded.project_id, int(current)),  # type: ignore[call-overload]
        f"a queue built by the new version ({transport})\n{worker.log_tail()}",
        timeout=ROUND_TIMEOUT,
    )
    assert isinstance(rows, list)
    with stack_db.session() as session:
        trained = session.get(TrainingRun, run.id)
        version = session.get(ModelVersion, current)
        queue_run = session.scalars(select(TrainingRun).where(TrainingRun.kind == RUN_QUEUE)).one()
        labelled = session.scalar(select(func.count()).select_from(QueueEntry))
    assert trained is not None and trained.status == RUN_SUCCEEDED and trained.attempts == 1
    assert trained.heartbeat_at is not None and trained.celery_task_id
    assert version is not None and version.status == VERSION_PROMOTED and version.run_id == run.id
    assert queue_run.status == RUN_SUCCEEDED and queue_run.model_version_id == current
    assert labelled == len(rows) == 12
    assert all(len(r.neighbours) == 3 and len(r.predicted) == 3 for r in rows)
    scores = [r.score for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_twenty_quick_submissions_make_at_most_two_training_runs(
    stack_db: Db,
    sender: BrokerSender,
    workers: Callable[..., WorkerProcess],
    tiny_model: Path,
    tmp_path: Path,
    transport: str,
) -> None:
    pause_dir = tmp_path / "pause"
    worker = workers(TAPESTRY_TEST_PAUSE_AT="training", TAPESTRY_TEST_PAUSE_DIR=str(pause_dir))
    seeded = seed(stack_db, tiny_model)
    unlabelled = list(seeded.pool_ids)
    with stack_db.session() as session:
        submit_batch(session, seeded, 3, item_ids=unlabelled[:3])
        session.commit()
    # The worker is now inside the first training run; 19 more batches arrive meanwhile.
    wait_for(lambda: (pause_dir / "training.reached").exists(), f"training\n{worker.log_tail()}")
    for i in range(1, 20):
        with stack_db.session() as session:
            submit_batch(session, seeded, 2, item_ids=unlabelled[1 + 2 * i : 3 + 2 * i])
            session.commit()
    (pause_dir / "training.release").touch()

    def both_done() -> list[TrainingRun]:
        with stack_db.session() as session:
            runs = list(
                session.scalars(
                    select(TrainingRun)
                    .where(TrainingRun.kind == RUN_RETRAIN)
                    .order_by(TrainingRun.id)
                )
            )
        return runs if runs and all(r.status == RUN_SUCCEEDED for r in runs) else []

    runs = wait_for(both_done, f"the follow-up run\n{worker.log_tail()}", timeout=ROUND_TIMEOUT)
    assert isinstance(runs, list)
    assert len(runs) == 2
    assert runs[1].params["requests"] == 19 and runs[1].data_version == 20
    project = project_state(stack_db, seeded.project_id)
    assert project.data_version == 20
    with stack_db.session() as session:
        current = session.get(ModelVersion, project.current_model_version_id)
    assert current is not None and current.data_version == 20 and current.version == 2
