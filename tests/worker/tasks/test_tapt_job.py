"""The TAPT task body: a TAPT'd base for later rounds, ALPS cold start, forced retrain on it."""

from __future__ import annotations

import json

import pytest

from app.db.models import RUN_QUEUE, RUN_RETRAIN, RUN_SUCCEEDED, RUN_TAPT, Project, TrainingRun
from app.domain.model_versions import current_version, resolve_artifact
from app.domain.runs import list_runs, request_tapt
from app.jobs import Job
from contract.tasks import TASK_RECOMPUTE_QUEUE, TASK_RETRAIN, TASK_TAPT
from tests.app.domain.runs_support import Db
from tests.worker.tasks.seed import Seeded, submit_batch
from worker.tasks.queue_build import recompute_queue_body
from worker.tasks.retrain import retrain_body
from worker.tasks.runner import execute_run
from worker.tasks.tapt_job import CPU_DEFAULTS, GPU_DEFAULTS, default_tapt_config, tapt_body

TINY_TAPT = {"max_steps": 4, "eval_every": 2, "batch_size": 4, "max_length": 32, "device": "cpu"}


def run_tapt(file_db: Db, seeded: Seeded) -> TrainingRun:
    with file_db.session() as session:
        run = request_tapt(session, seeded.project_id, config=TINY_TAPT)
        session.commit()
    execute_run(run.id, RUN_TAPT, tapt_body, settings=file_db.settings)
    with file_db.session() as session:
        fresh = session.get(TrainingRun, run.id)
        assert fresh is not None
        return fresh


def test_tapt_switches_the_base_and_enables_the_alps_cold_start(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    run = run_tapt(file_db, seeded)
    assert run.status == RUN_SUCCEEDED, run.error
    assert run.metrics["steps"] == 4 and run.metrics["ppl_after"] <= run.metrics["ppl_before"]
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        queue_runs = list_runs(session, seeded.project_id, kind=RUN_QUEUE)
    assert project is not None and project.tapt_model_path is not None
    tapt_dir = resolve_artifact(project.tapt_model_path, file_db.settings)
    assert json.loads((tapt_dir / "tapt.json").read_text())["steps"] == 4
    followed_by = [j.name for j in sent if j.name != TASK_TAPT]
    assert followed_by == [TASK_RECOMPUTE_QUEUE]  # no labels yet: cold-start queue
    execute_run(queue_runs[0].id, RUN_QUEUE, recompute_queue_body, settings=file_db.settings)
    with file_db.session() as session:
        queue_run = session.get(TrainingRun, queue_runs[0].id)
    assert queue_run is not None
    assert queue_run.status == RUN_SUCCEEDED, queue_run.error
    assert queue_run.metrics["strategy"] == "alps" and queue_run.metrics["queued"] == 12


def test_tapt_with_labels_forces_a_retrain_on_the_new_base(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    with file_db.session() as session:
        first = submit_batch(session, seeded, 9)
        session.commit()
    execute_run(first.id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    sent.clear()
    run_tapt(file_db, seeded)
    assert TASK_RETRAIN in [j.name for j in sent]
    with file_db.session() as session:
        forced = list_runs(session, seeded.project_id, kind=RUN_RETRAIN)[0]
    assert forced.params["force"] is True
    execute_run(forced.id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    with file_db.session() as session:
        forced = session.get(TrainingRun, forced.id)  # type: ignore[assignment]
        version = current_version(session, seeded.project_id)
        project = session.get(Project, seeded.project_id)
    assert forced is not None and forced.status == RUN_SUCCEEDED, forced.error
    assert version is not None and version.version == 2 and version.data_version == 1
    assert forced.metrics["warm_start"] is False  # a new base: no warm start from v1
    from worker.ml.artifacts import read_meta

    meta = read_meta(resolve_artifact(version.artifact_path, file_db.settings))
    assert project is not None and project.tapt_model_path is not None
    assert meta["base_model"] == str(resolve_artifact(project.tapt_model_path, file_db.settings))


def test_tapt_on_a_multi_label_project_asks_the_live_head_to_re_read_the_pool(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    from contract.tasks import TASK_LIVE_REFIT

    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.task_type = "multi_label"
        session.commit()
    run = run_tapt(file_db, seeded)
    assert run.status == RUN_SUCCEEDED, run.error
    assert [j.name for j in sent if j.name != TASK_TAPT] == [TASK_LIVE_REFIT]
    with file_db.session() as session:
        assert list_runs(session, seeded.project_id, kind=RUN_QUEUE) == []
        assert list_runs(session, seeded.project_id, kind=RUN_RETRAIN) == []


def test_tapt_on_a_labelled_multi_label_project_also_forces_a_multi_label_round(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    from app.db.models import Annotation
    from contract.tasks import TASK_LIVE_REFIT

    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.task_type = "multi_label"
        session.add(Annotation(project_id=project.id, item_id=seeded.pool_ids[0], label_id=None))
        session.commit()
    run = run_tapt(file_db, seeded)
    assert run.status == RUN_SUCCEEDED, run.error
    assert [j.name for j in sent if j.name != TASK_TAPT] == [TASK_LIVE_REFIT, TASK_RETRAIN]
    with file_db.session() as session:
        assert list_runs(session, seeded.project_id, kind=RUN_QUEUE) == []
        (forced,) = list_runs(session, seeded.project_id, kind=RUN_RETRAIN)
    assert forced.params["force"] is True


@pytest.mark.parametrize("on_gpu", [False, True])
def test_default_step_budget_depends_on_the_device(on_gpu: bool) -> None:
    from worker.ml.tapt import TaptConfig

    config = TaptConfig.from_dict(default_tapt_config(on_gpu))
    expected = GPU_DEFAULTS if on_gpu else CPU_DEFAULTS
    assert config.max_steps == expected["max_steps"] and config.max_length == 128
    # a GPU scales its budget to the pool (3 epochs within the playbook's 3k-20k steps);
    # a CPU keeps its short fixed one
    assert (config.epochs, config.min_steps, config.max_steps) == (
        (3.0, 3000, 20000) if on_gpu else (0.0, 0, 200))


def test_a_request_that_names_its_steps_gets_exactly_those() -> None:
    from app.domain.tapt import tapt_config

    assert tapt_config(True, {"max_steps": 500})["epochs"] == 0.0
    assert tapt_config(True, {"max_steps": 500, "epochs": 2})["epochs"] == 2
    assert tapt_config(True, {"max_minutes": 30})["epochs"] == GPU_DEFAULTS["epochs"]
