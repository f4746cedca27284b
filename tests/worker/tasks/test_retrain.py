"""The retrain task body on a tiny BERT: versions, promotion, round metrics, idempotency."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db.base import utcnow
from app.db.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_QUEUE,
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    VERSION_PROMOTED,
    VERSION_RETIRED,
    ModelVersion,
    Project,
    RoundMetric,
    TrainingRun,
)
from app.domain.model_versions import ARTIFACT_MARKER, list_versions, resolve_artifact
from app.domain.runs import cancel_run, list_runs
from app.jobs import Job
from contract.tasks import TASK_LABEL_ISSUES, TASK_RECOMPUTE_QUEUE
from tests.app.domain.runs_support import Db
from tests.worker.ml.tiny import LABEL_NAMES
from tests.worker.tasks.seed import Seeded, seed_project, submit_batch
from tests.worker.tasks.waiting import wait_for
from worker.tasks.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV
from worker.tasks.retrain import retrain_body
from worker.tasks.runner import execute_run


def retrain(file_db: Db, seeded: Seeded, n: int, **kw: object) -> TrainingRun:
    with file_db.session() as session:
        run = submit_batch(session, seeded, n, **kw)  # type: ignore[arg-type]
        session.commit()
    execute_run(run.id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    with file_db.session() as session:
        fresh = session.get(TrainingRun, run.id)
        assert fresh is not None
        return fresh


def test_a_round_writes_promotes_and_measures_a_version(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    run = retrain(file_db, seeded, 12)
    assert run.status == RUN_SUCCEEDED, run.error
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        version = session.get(ModelVersion, run.model_version_id)
        metric = session.scalars(select(RoundMetric)).one()
        queue_runs = list_runs(session, seeded.project_id, kind=RUN_QUEUE)
    assert project is not None and version is not None
    assert project.current_model_version_id == version.id
    assert version.status == VERSION_PROMOTED and version.version == 1
    assert version.labels_used == 12 and version.data_version == 1 and version.run_id == run.id
    path = resolve_artifact(version.artifact_path, file_db.settings)
    assert (path / ARTIFACT_MARKER).is_file() and len(version.sha256) == 64
    from worker.ml.artifacts import load_artifact

    probs = load_artifact(path).predict_proba(["goal team match", "bank stock market"])
    assert probs.shape == (2, 3)
    assert metric.labels_used == 12 and metric.model_version_id == version.id
    assert metric.dev_accuracy is not None and metric.macro_f1 is not None
    assert set(metric.per_class_f1) == set(LABEL_NAMES)
    assert len(metric.confusion) == 3 and sum(map(sum, metric.confusion)) == len(seeded.dev_ids)
    assert {r["rule"] for r in metric.stop_recommendations} >= {"dev_gain", "budget"}
    assert metric.details["stop_predictions"] == []  # a dev set exists: dev gain decides
    assert run.metrics["labels_used"] == 12 and run.timings["train_seconds"] > 0
    assert [j.name for j in sent if j.name == TASK_RECOMPUTE_QUEUE] == [TASK_RECOMPUTE_QUEUE]
    assert len(queue_runs) == 1
    # The likely-label-errors job waits for the new version's queue (its swap sends it): on a
    # one-process worker it must not run between the promotion and the queue.
    assert TASK_LABEL_ISSUES not in [j.name for j in sent]


def test_same_data_version_is_not_trained_twice(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    retrain(file_db, seeded, 12)
    with file_db.session() as session:
        from app.domain.runs import request_retrain

        again = request_retrain(session, seeded.project_id, reason="admin button")
        session.commit()
    summary = execute_run(again.id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    with file_db.session() as session:
        versions = list_versions(session, seeded.project_id)
        run = session.get(TrainingRun, again.id)
    assert "already covers data version 1" in summary
    assert run is not None and run.status == RUN_SUCCEEDED and run.model_version_id is None
    assert len(versions) == 1


def test_next_round_warm_starts_and_retires_the_previous_version(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    first = retrain(file_db, seeded, 12)
    second = retrain(file_db, seeded, 6)
    assert second.status == RUN_SUCCEEDED, second.error
    assert second.metrics["warm_start"] is True and first.metrics["warm_start"] is False
    with file_db.session() as session:
        statuses = {v.version: v.status for v in list_versions(session, seeded.project_id)}
        rounds = session.scalars(select(RoundMetric).order_by(RoundMetric.id)).all()
    assert statuses == {1: VERSION_RETIRED, 2: VERSION_PROMOTED}
    assert [r.labels_used for r in rounds] == [12, 18]


def test_one_class_only_waits_for_more_labels(file_db: Db, seeded: Seeded, sent: list[Job]) -> None:
    sports = [i for i, y in seeded.pool_gold.items() if y == 0][:4]
    run = retrain(file_db, seeded, 4, item_ids=sports)
    assert run.status == RUN_SUCCEEDED and run.model_version_id is None
    assert "at least two classes" in run.message
    assert [j.name for j in sent].count(TASK_RECOMPUTE_QUEUE) == 1
    assert TASK_LABEL_ISSUES not in [j.name for j in sent]  # nothing published, nothing to check


def test_an_unsupported_adapter_fails_with_an_admin_traceback(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.adapter_config = {"kind": "prefix"}
        session.commit()
    run = retrain(file_db, seeded, 6)
    assert run.status == RUN_FAILED
    assert "prefix tuning is not supported" in run.message
    assert run.error is not None and "Traceback" in run.error
    with file_db.session() as session:
        assert session.get(Project, seeded.project_id).current_model_version_id is None  # type: ignore[union-attr]


def test_cancel_mid_training_keeps_the_previous_version(
    file_db: Db, seeded: Seeded, sent: list[Job], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = retrain(file_db, seeded, 12)
    monkeypatch.setenv(PAUSE_AT_ENV, "training")
    monkeypatch.setenv(PAUSE_DIR_ENV, str(tmp_path))
    with file_db.session() as session:
        run = submit_batch(session, seeded, 6)
        session.commit()
    worker = threading.Thread(
        target=execute_run,
        args=(run.id, RUN_RETRAIN, retrain_body),
        kwargs={"settings": file_db.settings},
    )
    worker.start()
    wait_for(lambda: (tmp_path / "training.reached").exists(), "training to pause")
    with file_db.session() as session:
        cancel_run(session, seeded.project_id, run.id)
        session.commit()
    cancelled_at = utcnow()
    wait_for(lambda: _heartbeat_after(file_db, run.id, cancelled_at), "a heartbeat after cancel")
    (tmp_path / "training.release").touch()
    worker.join(timeout=60)
    with file_db.session() as session:
        ended = session.get(TrainingRun, run.id)
        project = session.get(Project, seeded.project_id)
    assert ended is not None and ended.status == RUN_CANCELLED
    assert project is not None and project.current_model_version_id == first.model_version_id


def _heartbeat_after(file_db: Db, run_id: int, moment: datetime) -> bool:
    with file_db.session() as session:
        run = session.get(TrainingRun, run_id)
        return run is not None and run.heartbeat_at is not None and run.heartbeat_at > moment


def test_without_a_dev_set_the_stop_set_predictions_are_kept(
    file_db: Db, tiny_model: Path, sent: list[Job]
) -> None:
    with file_db.session() as session:
        no_dev = seed_project(session, base_model=str(tiny_model), dev_size=0)
        session.commit()
    first = retrain(file_db, no_dev, 9)
    second = retrain(file_db, no_dev, 6)
    assert first.status == second.status == RUN_SUCCEEDED
    with file_db.session() as session:
        rounds = session.scalars(select(RoundMetric).order_by(RoundMetric.id)).all()
    assert [r.dev_accuracy for r in rounds] == [None, None]
    for row in rounds:
        assert row.details["stop_item_ids"] == no_dev.pool_ids  # 60 items < STOP_SET_SIZE
        assert len(row.details["stop_predictions"]) == len(no_dev.pool_ids)
    kappa = next(
        r for r in rounds[1].stop_recommendations if r["rule"] == "stabilizing_predictions"
    )
    assert "has 2" in kappa["evidence"]  # both rounds' predictions were compared
