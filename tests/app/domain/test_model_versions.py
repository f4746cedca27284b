"""Model version history, promotion (one pointer switch) and rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import RUN_QUEUE, VERSION_PROMOTED, VERSION_READY, VERSION_RETIRED, Project
from app.domain.model_versions import (
    ArtifactMissing,
    DuplicatePromotion,
    ModelVersionNotFound,
    NoPreviousVersion,
    current_version,
    find_by_data_version,
    find_by_run,
    list_versions,
    next_version_number,
    promote,
    relative_artifact_path,
    resolve_artifact,
    rollback,
)
from app.domain.runs import list_runs
from app.jobs import Job, recording_jobs
from contract.tasks import TASK_RECOMPUTE_QUEUE
from tests.app.domain.runs_support import add_version, make_project


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


def test_promote_switches_the_pointer_and_retires_the_previous(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    project = make_project(db)
    v1 = add_version(db, settings, project, 1)
    v2 = add_version(db, settings, project, 2)
    assert v1.status == VERSION_READY and current_version(db, project.id) is None
    promote(db, project.id, v1.id, settings=settings)
    db.commit()
    assert current_version(db, project.id) == v1
    promote(db, project.id, v2.id, settings=settings)
    db.commit()
    assert db.get(Project, project.id).current_model_version_id == v2.id  # type: ignore[union-attr]
    statuses = {v.version: v.status for v in list_versions(db, project.id)}
    recompute_runs = list_runs(db, project.id, kind=RUN_QUEUE)
    assert statuses == {1: VERSION_RETIRED, 2: VERSION_PROMOTED}
    assert v2.promoted_at is not None
    assert len(recompute_runs) == 1  # the two requests coalesced into one queued rebuild
    assert [j.name for j in sent] == [TASK_RECOMPUTE_QUEUE]


def test_promoting_the_current_version_again_changes_nothing(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    project = make_project(db)
    v1 = add_version(db, settings, project, 1)
    promote(db, project.id, v1.id, settings=settings)
    db.commit()
    first_time = v1.promoted_at
    promote(db, project.id, v1.id, settings=settings)
    db.commit()
    assert v1.promoted_at == first_time


def test_incomplete_artifact_is_never_promoted(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    project = make_project(db)
    v1 = add_version(db, settings, project, 1)
    promote(db, project.id, v1.id, settings=settings)
    db.commit()
    broken = add_version(db, settings, project, 2, complete=False)
    db.commit()
    with pytest.raises(ArtifactMissing):
        promote(db, project.id, broken.id, settings=settings)
    db.rollback()
    assert current_version(db, project.id) == v1


def test_rollback_walks_back_skipping_incomplete_versions(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    project = make_project(db)
    v1 = add_version(db, settings, project, 1)
    add_version(db, settings, project, 2, complete=False)
    v3 = add_version(db, settings, project, 3)
    promote(db, project.id, v3.id, settings=settings)
    db.commit()
    assert rollback(db, project.id, settings=settings) == v1
    db.commit()
    assert current_version(db, project.id) == v1
    with pytest.raises(NoPreviousVersion):
        rollback(db, project.id, settings=settings)
    db.rollback()
    assert {v.version for v in list_versions(db, project.id)} == {1, 2, 3}  # history kept


def test_rollback_without_a_current_version(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    project = make_project(db)
    with pytest.raises(NoPreviousVersion):
        rollback(db, project.id, settings=settings)


def test_versions_belong_to_their_project(db: Session, sent: list[Job], settings: Settings) -> None:
    a, b = make_project(db), make_project(db)
    va = add_version(db, settings, a, 1)
    with pytest.raises(ModelVersionNotFound):
        promote(db, b.id, va.id, settings=settings)


def test_one_run_registers_at_most_one_version(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    project = make_project(db)
    v1 = add_version(db, settings, project, 1, run_id=None)
    from app.db.models import TrainingRun

    run = TrainingRun(project_id=project.id, kind="retrain")
    db.add(run)
    db.flush()
    v2 = add_version(db, settings, project, 2, run_id=run.id)
    with pytest.raises(DuplicatePromotion):
        add_version(db, settings, project, 3, run_id=run.id)
    assert find_by_run(db, run.id) == v2
    assert find_by_data_version(db, project.id, 1) == v1
    assert next_version_number(db, project.id) == 3


def test_artifact_paths_are_stored_relative_to_the_root(
    db: Session, tmp_path: Path, settings: Settings
) -> None:
    inside = settings.artifacts / "projects" / "1" / "v1"
    rel = relative_artifact_path(inside, settings)
    assert rel == "projects/1/v1"
    assert resolve_artifact(rel, settings) == inside
    outside = tmp_path / "elsewhere"
    assert resolve_artifact(relative_artifact_path(outside, settings), settings) == outside


def test_promoting_in_a_multi_label_project_asks_for_a_live_refit_not_a_queue_rebuild(
    db: Session, sent: list[Job], settings: Settings
) -> None:
    """Its queue always comes from the live head, which also picks the served model."""
    from app.db.models import TASK_MULTI_LABEL
    from contract.tasks import TASK_LIVE_REFIT

    project = make_project(db, task_type=TASK_MULTI_LABEL)
    v1 = add_version(db, settings, project, 1)
    v2 = add_version(db, settings, project, 2)
    promote(db, project.id, v2.id, settings=settings)
    db.commit()
    assert rollback(db, project.id, settings=settings) == v1
    db.commit()
    assert current_version(db, project.id) == v1
    assert list_runs(db, project.id, kind=RUN_QUEUE) == []
    assert [j.name for j in sent] == [TASK_LIVE_REFIT]  # the rollback's joined the pending one
