"""Issue 11, item 4: a dead worker's run is noticed by the web process's scheduled reaper, with no
worker alive and nobody reading the run; reading a run writes nothing."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import Base, utcnow
from app.db.models import (
    ROLE_ADMIN,
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_RUNNING,
    SCOPE_ADMIN,
    TrainingRun,
)
from app.db.session import make_engine
from app.domain.runs.reaper import reaper_interval
from app.jobs import recording_jobs
from app.main import create_app
from contract.tasks import TASK_RETRAIN
from tests.factories import make_project, make_token, make_user
from tests.worker.tasks.waiting import wait_for


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", secret_key=secrets.token_urlsafe(48),
                        **overrides)
    settings.ensure_dirs()
    return settings


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(_settings(tmp_path).database_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def silent_run(engine: Engine, *, silent_for: timedelta) -> tuple[int, int, str]:
    """A retrain run claimed by a worker that stopped beating ``silent_for`` ago."""
    with Session(engine) as db:
        admin = make_user(db, role=ROLE_ADMIN)
        project = make_project(db, lead=admin)
        token = make_token(db, admin, scopes=[SCOPE_ADMIN])
        then = utcnow() - silent_for
        run = TrainingRun(project_id=project.id, kind=RUN_RETRAIN, status=RUN_RUNNING,
                          attempts=1, started_at=then, heartbeat_at=then, params={})
        db.add(run)
        db.commit()
        return project.id, run.id, token


def status_of(engine: Engine, run_id: int) -> TrainingRun:
    with Session(engine) as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None
        return run


def test_default_timeouts_notice_a_dead_run_within_two_minutes(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert Settings.model_fields["web_maintenance"].default is True  # the tests turn it off
    assert settings.stale_run_seconds + reaper_interval(settings) <= 90


@pytest.mark.parametrize(("attempts", "expected"), [(2, RUN_QUEUED), (1, RUN_FAILED)])
def test_the_web_processes_scheduled_reaper_ends_a_silent_run_with_no_worker_alive(
    tmp_path: Path, engine: Engine, attempts: int, expected: str
) -> None:
    settings = _settings(
        tmp_path, stale_run_seconds=2.0, max_run_attempts=attempts, web_maintenance=True
    )
    assert reaper_interval(settings) == 0.5
    app = create_app(settings)
    _, run_id, _ = silent_run(engine, silent_for=timedelta(0))  # it beat just now
    with recording_jobs() as sent, TestClient(app):  # runs the lifespan
        assert status_of(engine, run_id).status == RUN_RUNNING  # not stale yet: left alone
        run = wait_for(
            lambda: (r := status_of(engine, run_id)).status != RUN_RUNNING and r,
            "the scheduled reaper to end the silent run", timeout=30, interval=0.1,
        )  # fmt: skip
    assert isinstance(run, TrainingRun)
    assert run.status == expected and "worker lost: no heartbeat" in run.message
    if expected == RUN_QUEUED:
        assert [job.name for job in sent] == [TASK_RETRAIN]  # re-sent for the next worker


def test_the_reaper_is_off_when_disabled(tmp_path: Path, engine: Engine) -> None:
    settings = _settings(tmp_path, stale_run_seconds=0.5, web_maintenance=False)
    _, run_id, _ = silent_run(engine, silent_for=timedelta(hours=1))
    with recording_jobs(), TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    assert status_of(engine, run_id).status == RUN_RUNNING


def test_reading_a_run_writes_nothing(tmp_path: Path, engine: Engine) -> None:
    """GET of a run's detail (API) and of its progress (admin page) only read, even for a run
    whose worker is long dead: noticing that is the reaper's job."""
    settings = _settings(tmp_path, web_maintenance=False)
    project_id, run_id, token = silent_run(engine, silent_for=timedelta(hours=1))
    writes: list[str] = []
    app = create_app(settings)

    @event.listens_for(app.state.engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    try:
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {token}"}
            detail = client.get(f"/api/v1/projects/{project_id}/runs/{run_id}", headers=headers)
            listing = client.get(f"/api/v1/projects/{project_id}/runs", headers=headers)
        assert detail.status_code == 200 and detail.json()["status"] == RUN_RUNNING
        assert listing.status_code == 200
        assert writes == []
        assert status_of(engine, run_id).status == RUN_RUNNING
    finally:
        event.remove(app.state.engine, "before_cursor_execute", _record)
