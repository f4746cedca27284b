"""kill -9 a real worker mid-training and mid-promotion: nothing is lost, nothing is doubled.

Each test trains version 1 in this process, then lets a real worker start round 2 with a test
pause point set (``training``: after the first optimizer step; ``promotion``: the new version's
files fsynced in a temporary directory, not yet renamed; ``promotion_commit``: renamed into place
and the promotion transaction flushed, not committed). When the worker reports that it reached
the point, it is killed with SIGKILL. Then:

- the previous version is still current and its artifact loads;
- no annotation is lost;
- a fresh worker's reaper notices the silent run within the configured timeout and re-queues it;
- the second attempt promotes exactly one version for round 2's data (no duplicate promotion).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.models import (
    RUN_RETRAIN,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    VERSION_PROMOTED,
    VERSION_RETIRED,
    Annotation,
    ModelVersion,
    Project,
    TrainingRun,
)
from app.domain.model_versions import resolve_artifact
from app.jobs import recording_jobs
from tests.app.domain.runs_support import Db
from tests.integration.workers import STALE_RUN_SECONDS, BrokerSender, WorkerProcess
from tests.worker.tasks.seed import Seeded, seed_project, submit_batch
from tests.worker.tasks.waiting import wait_for
from worker.tasks.pause_points import PAUSE_POINTS
from worker.tasks.retrain import retrain_body
from worker.tasks.runner import execute_run

pytestmark = [pytest.mark.celery, pytest.mark.slow, pytest.mark.timeout(300)]
NOTICE_WITHIN = STALE_RUN_SECONDS * 2 + 10.0
"""The stale threshold, plus a reaper period, plus slack for a loaded 2-core machine."""


def train_version_one(stack_db: Db, tiny_model: Path) -> tuple[Seeded, int]:
    with stack_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model))
        run = submit_batch(session, seeded, 12)
        session.commit()
    with recording_jobs():  # its queue rebuild is not part of this test
        execute_run(run.id, RUN_RETRAIN, retrain_body, settings=stack_db.settings)
    with stack_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None and project.current_model_version_id is not None
        return seeded, project.current_model_version_id


def snapshot(stack_db: Db, project_id: int) -> tuple[int | None, int, list[ModelVersion]]:
    with stack_db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        annotations = session.scalar(
            select(func.count()).select_from(Annotation).where(Annotation.project_id == project_id)
        )
        versions = list(
            session.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id))
        )
    return project.current_model_version_id, int(annotations or 0), versions


def run_row(stack_db: Db, run_id: int) -> TrainingRun:
    with stack_db.session() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        return run


@pytest.mark.parametrize("pause_at", PAUSE_POINTS)
def test_kill_9_leaves_the_previous_version_current_and_the_run_recovers(
    pause_at: str,
    stack_db: Db,
    sender: BrokerSender,
    workers: Callable[..., WorkerProcess],
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    pause_dir = tmp_path / "pause"
    doomed = workers(TAPESTRY_TEST_PAUSE_AT=pause_at, TAPESTRY_TEST_PAUSE_DIR=str(pause_dir))
    seeded, v1 = train_version_one(stack_db, tiny_model)
    with stack_db.session() as session:
        run = submit_batch(session, seeded, 6)
        session.commit()
    _, annotations_before, _ = snapshot(stack_db, seeded.project_id)

    wait_for(
        lambda: (pause_dir / f"{pause_at}.reached").exists(),
        f"the worker to reach {pause_at}\n{doomed.log_tail()}",
        timeout=120,
    )
    assert run_row(stack_db, run.id).status == RUN_RUNNING
    doomed.kill9()
    killed_at = time.monotonic()

    current, annotations, versions = snapshot(stack_db, seeded.project_id)
    assert current == v1 and [v.version for v in versions] == [1]
    assert annotations == annotations_before
    from worker.ml.artifacts import load_artifact

    v1_dir = resolve_artifact(versions[0].artifact_path, stack_db.settings)
    assert load_artifact(v1_dir).predict_proba(["goal team"]).shape == (1, 3)

    rescuer = workers()
    wait_for(
        lambda: run_row(stack_db, run.id).status != RUN_RUNNING,
        f"the reaper to notice the killed run\n{rescuer.log_tail()}",
        timeout=NOTICE_WITHIN,
    )
    noticed_after = time.monotonic() - killed_at
    finished = wait_for(
        lambda: (r := run_row(stack_db, run.id)).status == RUN_SUCCEEDED and r,
        f"the re-queued run to finish\n{rescuer.log_tail()}",
        timeout=120,
    )
    assert isinstance(finished, TrainingRun)
    assert finished.attempts == 2 and "no heartbeat" in finished.log_tail
    current, annotations, versions = snapshot(stack_db, seeded.project_id)
    round_two = [v for v in versions if v.data_version == 2]
    assert len(round_two) == 1, "exactly one promotion for round 2's data"
    assert current == round_two[0].id and round_two[0].status == VERSION_PROMOTED
    assert round_two[0].artifact_path.endswith(f"run{run.id}-a2")
    assert {v.status for v in versions if v.id == v1} == {VERSION_RETIRED}
    assert annotations == annotations_before
    assert noticed_after <= NOTICE_WITHIN
