"""``tapestry artifacts sweep [--dry-run]`` and the ``maintenance.sweep_artifacts`` task body."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.models import RUN_FAILED, RUN_RETRAIN, Project, TrainingRun
from tests.app.test_cli import cli_db, invoke  # noqa: F401  (the fixture)


def _failed_run_directory(url: str) -> Path:
    engine = create_engine(url)
    with Session(engine) as session:
        project = Project(name="p")
        session.add(project)
        session.flush()
        run = TrainingRun(project_id=project.id, kind=RUN_RETRAIN, status=RUN_FAILED)
        session.add(run)
        session.commit()
        path = (get_settings().artifacts / "projects" / str(project.id) / "versions"
                / f"v0001-run{run.id}-a1")
    engine.dispose()
    path.mkdir(parents=True)
    (path / "adapter.bin").write_bytes(b"x" * 100)
    return path


def test_dry_run_lists_then_sweep_removes(cli_db: str) -> None:  # noqa: F811
    invoke("db", "upgrade")
    leftover = _failed_run_directory(cli_db)
    relative = leftover.relative_to(get_settings().artifacts).as_posix()
    dry = invoke("artifacts", "sweep", "--dry-run")
    assert f"would remove {relative}" in dry and leftover.exists()
    done = invoke("artifacts", "sweep")
    assert f"removed {relative}" in done and not leftover.exists()
    assert "removed 0 path(s)" in invoke("artifacts", "sweep")


def test_the_celery_task_sweeps_with_the_worker_settings(cli_db: str) -> None:  # noqa: F811
    from contract.tasks import TASK_SWEEP_ARTIFACTS
    from worker.celery_app import celery_app
    from worker.tasks.artifact_sweep import sweep_artifacts_task

    invoke("db", "upgrade")
    leftover = _failed_run_directory(cli_db)
    assert TASK_SWEEP_ARTIFACTS in celery_app.tasks
    assert "removed 1 path(s)" in sweep_artifacts_task.run()
    assert not leftover.exists()
