"""The artifact sweep: what it removes, what it never touches, retention, disk use, the store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_TAPT,
    Project,
    TrainingRun,
)
from app.domain.artifact_hygiene import disk_use, set_pinned, sweep_artifacts
from app.storage import ArtifactStore
from tests.app.api.support import fake_version
from tests.factories import make_project

pytestmark = pytest.mark.db


def run(db: Session, project: Project, status: str, kind: str = RUN_RETRAIN) -> TrainingRun:
    row = TrainingRun(project_id=project.id, kind=kind, status=status, data_version=0)
    db.add(row)
    db.flush()
    return row


def directory(root: Path, relative: str, size: int = 1000, age: float = 0.0) -> Path:
    path = root / relative
    path.mkdir(parents=True)
    (path / "weights.bin").write_bytes(b"x" * size)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def versions_root(settings: Settings, project: Project) -> Path:
    return settings.artifacts / "projects" / str(project.id) / "versions"


def test_failed_and_cancelled_runs_and_stale_temporaries_go_active_ones_stay(
    db: Session, settings: Settings
) -> None:
    project = make_project(db)
    current = fake_version(db, settings, project)
    failed, cancelled = run(db, project, RUN_FAILED), run(db, project, RUN_CANCELLED)
    running, queued = run(db, project, RUN_RUNNING), run(db, project, RUN_QUEUED)
    succeeded = run(db, project, RUN_SUCCEEDED)
    tapt_failed = run(db, project, RUN_FAILED, kind=RUN_TAPT)
    tapt_running = run(db, project, RUN_RUNNING, kind=RUN_TAPT)
    root = versions_root(settings, project)
    p = f"projects/{project.id}"
    doomed = [
        directory(root, f"v0002-run{failed.id}-a1"),
        directory(root, f"v0002-run{cancelled.id}-a2"),
        directory(root, f".tmp-v0002-run{failed.id}-a1-0badcafe"),  # writer died, run failed
        directory(root, f"v0002-run{succeeded.id}-a1"),  # killed attempt 1 of a finished run
        directory(root, ".tmp-v0009-orphan-1234", age=7200),  # nameless and old
        directory(settings.artifacts, f"{p}/tapt/run-{tapt_failed.id}"),
    ]
    kept = [
        directory(root, f"v0002-run{running.id}-a1"),  # renamed, not yet committed
        directory(root, f".tmp-v0002-run{queued.id}-a2-12345678", age=7200),  # its run is active
        directory(root, ".tmp-v0009-fresh-1234"),  # nameless but young: a writer may be busy
        directory(root, "v0005-run999999-a1", age=7200),  # complete, of a run unknown here
        directory(settings.artifacts, f"{p}/tapt/run-{tapt_running.id}"),
        settings.artifacts / current.artifact_path,
    ]
    db.commit()

    dry = sweep_artifacts(db, settings, dry_run=True)
    assert sorted(dry.removed) == sorted(
        d.relative_to(settings.artifacts).as_posix() for d in doomed
    )
    assert all(d.exists() for d in doomed)  # a dry run changes nothing
    assert dry.freed_bytes >= 6000

    report = sweep_artifacts(db, settings)
    assert report.removed == dry.removed
    assert not [d for d in doomed if d.exists()]
    assert all(d.exists() for d in kept)
    assert sweep_artifacts(db, settings).removed == []  # idempotent


def test_the_tapt_base_in_use_is_kept_even_if_its_run_record_says_failed(
    db: Session, settings: Settings
) -> None:
    project = make_project(db)
    tapt = run(db, project, RUN_FAILED, kind=RUN_TAPT)
    base = directory(settings.artifacts, f"projects/{project.id}/tapt/run-{tapt.id}/model")
    project.tapt_model_path = base.relative_to(settings.artifacts).as_posix()
    db.commit()
    assert sweep_artifacts(db, settings).removed == []
    assert base.exists()


def test_a_directory_of_no_project_in_this_database_is_left_alone_and_reported(
    db: Session, settings: Settings
) -> None:
    stranger = directory(settings.artifacts, "projects/987654/versions/v0001-run1-a1", age=7200)
    report = sweep_artifacts(db, settings)
    assert report.removed == [] and report.unclaimed == ["projects/987654"]
    assert stranger.exists() and "no such project here: projects/987654" in report.summary()


def test_retention_keeps_the_newest_n_pinned_and_current_and_marks_the_rest(
    db: Session, settings: Settings
) -> None:
    settings.keep_versions = 2
    project = make_project(db)
    versions = [fake_version(db, settings, project) for _ in range(6)]  # v6 current
    set_pinned(db, versions[0], True)  # v1 pinned
    from app.domain.model_versions import switch_current

    switch_current(db, project.id, versions[1].id, settings=settings)  # v2 current
    db.commit()

    report = sweep_artifacts(db, settings)
    assert report.versions_deleted == [(project.id, 4), (project.id, 3)]
    for v in versions:
        db.refresh(v)
    deleted = {v.version for v in versions if v.artifact_deleted}
    assert deleted == {3, 4}
    for v in versions:
        assert (settings.artifacts / v.artifact_path).exists() == (v.version not in deleted)
    assert project.current_model_version_id == versions[1].id
    assert sweep_artifacts(db, settings).removed == []


def test_keep_versions_zero_keeps_everything(db: Session, settings: Settings) -> None:
    settings.keep_versions = 0
    project = make_project(db)
    for _ in range(3):
        fake_version(db, settings, project)
    assert sweep_artifacts(db, settings).versions_deleted == []


def test_disk_use_per_project(db: Session, settings: Settings) -> None:
    a, b = make_project(db), make_project(db)
    directory(settings.artifacts, f"projects/{a.id}/versions/v0001-x", size=3000)
    directory(settings.artifacts, f"projects/{a.id}/tapt/run-1", size=500)
    use = disk_use([a.id, b.id], settings)
    assert use[a.id].versions_bytes == 3000 and use[a.id].tapt_bytes == 500
    assert use[a.id].total_bytes == 3500
    assert use[b.id].total_bytes == 0


def test_store_refuses_paths_outside_its_root_and_its_root(tmp_path: Path) -> None:
    store = ArtifactStore.local(tmp_path)
    with pytest.raises(ValueError):
        store.path("../etc")
    with pytest.raises(ValueError):
        store.remove("")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"12345")
    assert [e.name for e in store.list_dir("")] == ["a"] and store.size("a") == 5
    store.remove("a")
    store.remove("a")  # already gone: not an error
    assert not store.exists("a") and store.list_dir("missing") == []


def test_only_a_shared_directory_url_is_accepted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, artifact_url=(tmp_path / "shared").as_uri())
    assert settings.artifacts == (tmp_path / "shared").resolve()
    with pytest.raises(ValueError, match="only a shared directory"):
        Settings(data_dir=tmp_path, artifact_url="s3://bucket/tapestry")
