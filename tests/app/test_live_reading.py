"""The live head's reading progress (a large import being embedded): the domain's reading of
``LiveHeadState.progress``, and where people see it -- the dashboard, the annotator's status
banner and the API's queue status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, LiveHeadState, Project
from app.domain.live_head import READING_STALE_SECONDS, reading
from tests.factories import login_client, make_project

pytestmark = pytest.mark.db  # JSON progress and its timestamps on SQLite and Postgres


def _progress(db: Session, project: Project, done: int, total: int, *, elapsed: float,
              age: float = 1.0) -> None:
    updated = utcnow() - timedelta(seconds=age)
    started = updated - timedelta(seconds=elapsed)
    db.add(LiveHeadState(project_id=project.id, progress={
        "done": done, "total": total, "started_at": started.isoformat(),
        "updated_at": updated.isoformat()}))
    db.flush()


def test_reading_estimates_the_time_left_from_the_pace_so_far(db: Session) -> None:
    project = make_project(db)
    assert reading(db, project.id) is None  # no state at all
    _progress(db, project, 25_000, 100_000, elapsed=600.0)
    found = reading(db, project.id)
    assert found is not None
    assert (found.done, found.total, found.fraction) == (25_000, 100_000, 0.25)
    assert found.seconds_left == 1800.0  # 600 s for a quarter: 1,800 s for the rest
    assert found.text == (
        "Reading 25,000 of 100,000 texts for the live head (25 %), about 30 min left")


def test_nothing_read_yet_has_no_estimate_and_a_finished_read_says_so(db: Session) -> None:
    project = make_project(db)
    _progress(db, project, 0, 5_000, elapsed=0.0)
    found = reading(db, project.id)
    assert found is not None and found.seconds_left is None
    assert found.text == "Reading 0 of 5,000 texts for the live head (0 %)"
    state = db.query(LiveHeadState).filter_by(project_id=project.id).one()
    state.progress = {**state.progress, "done": 5_000}
    db.flush()
    found = reading(db, project.id)
    assert found is not None and found.text.startswith("Read all 5,000 new texts")


def test_a_reading_that_stopped_reporting_or_is_empty_is_not_shown(db: Session) -> None:
    project = make_project(db)
    _progress(db, project, 10, 100, elapsed=5.0, age=READING_STALE_SECONDS + 5)
    assert reading(db, project.id) is None  # the worker stopped: no stale bar
    state = db.query(LiveHeadState).filter_by(project_id=project.id).one()
    for broken in ({}, {"done": "x", "total": 3}, {"done": 1, "total": 2, "started_at": "nope",
                                                   "updated_at": "nope"}):
        state.progress = broken
        db.flush()
        assert reading(db, project.id) is None


def test_the_dashboard_shows_the_reading_and_polls_only_while_it_reads(
    app: FastAPI, db: Session
) -> None:
    project = make_project(db)
    client = login_client(app, db, role=ROLE_LEAD, project=project)
    page = client.get(f"/projects/{project.id}/dashboard")
    assert page.status_code == 200
    assert 'data-testid="live-reading"' not in page.text and "dashboard/reading" not in page.text
    _progress(db, project, 40_000, 100_000, elapsed=800.0)
    page = client.get(f"/projects/{project.id}/dashboard")
    assert 'data-testid="live-reading"' in page.text
    assert "Reading 40,000 of 100,000 texts for the live head (40 %), about 20 min left" in (
        page.text)
    assert 'aria-valuenow="40000"' in page.text
    assert f'hx-get="/projects/{project.id}/dashboard/reading"' in page.text
    fragment = client.get(f"/projects/{project.id}/dashboard/reading")
    assert fragment.status_code == 200 and "40 %" in fragment.text
    state = db.query(LiveHeadState).filter_by(project_id=project.id).one()
    state.progress = {}  # the refit swapped its queue in
    db.flush()
    fragment = client.get(f"/projects/{project.id}/dashboard/reading")
    assert "live-reading-slot" in fragment.text and "hx-get" not in fragment.text


def test_annotators_see_it_in_the_status_banner_and_the_api_reports_it(
    app: FastAPI, db: Session
) -> None:
    project = make_project(db)
    annotator = login_client(app, db, role=ROLE_ANNOTATOR, project=project)
    assert annotator.get(f"/projects/{project.id}/dashboard/reading").status_code == 403
    status = annotator.get(f"/api/v1/projects/{project.id}/queue/status")
    assert status.status_code == 200 and status.json()["live_reading"] is None
    _progress(db, project, 1_000, 4_000, elapsed=30.0)
    banner = annotator.get(f"/projects/{project.id}/annotate/status")
    assert banner.status_code == 200
    assert "Reading 1,000 of 4,000 texts for the live head (25 %)" in banner.text
    assert "items come at random until the first" in banner.text
    body = annotator.get(f"/api/v1/projects/{project.id}/queue/status").json()["live_reading"]
    assert body["done"] == 1_000 and body["total"] == 4_000 and body["fraction"] == 0.25
    assert body["seconds_left"] == 90.0 and body["text"].startswith("Reading 1,000 of 4,000")
