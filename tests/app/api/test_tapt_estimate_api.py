"""Launching TAPT through the API answers with the time it should take on this machine."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.db.models import RUN_SUCCEEDED, RUN_TAPT, TrainingRun
from app.domain.tapt import tapt_timings
from app.jobs import recording_jobs
from tests.app.api.support import lead_with_project


def test_tapt_launch_carries_a_measured_estimate(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}/runs"
    with recording_jobs():
        first = lead.post(url, json={"kind": "tapt", "tapt_config": {"max_steps": 50}})
    assert first.status_code == 202, first.text
    estimate = first.json()["tapt_estimate"]
    assert estimate["steps"] == 50 and estimate["seconds"] is None
    assert "no TAPT run has been measured" in estimate["basis"]
    run = db.get(TrainingRun, first.json()["id"])
    assert run is not None
    run.status, run.timings = RUN_SUCCEEDED, tapt_timings(30.0, 10, 16, 128, on_gpu=False)
    db.commit()
    with recording_jobs():
        second = lead.post(url, json={"kind": "tapt", "tapt_config": {"max_steps": 40}})
    estimate = second.json()["tapt_estimate"]
    assert (estimate["steps"], estimate["seconds_per_step"]) == (40, 3.0)
    assert estimate["seconds"] == 120.0
    assert estimate["measured_run_id"] == run.id and estimate["on_gpu"] is False
    with recording_jobs():  # a one-minute budget at 3 s a step: 20 of the 40 steps
        third = lead.post(url, json={"kind": "tapt",
                                     "tapt_config": {"max_steps": 40, "max_minutes": 1}})
    estimate = third.json()["tapt_estimate"]
    assert (estimate["steps"], estimate["seconds"]) == (20, 60.0)
    assert "fitted to the 60 s budget" in estimate["basis"]
    retrain = lead.post(url, json={"kind": "retrain"}).json()
    assert retrain["tapt_estimate"] is None and retrain["kind"] != RUN_TAPT


def test_a_tapt_budget_that_is_not_a_number_in_range_is_refused_and_nothing_queued(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}/runs"
    for bad in ({"max_steps": 0}, {"epochs": "three"}, {"epochs": 1000}, {"min_steps": 1.5},
                {"max_minutes": True}, {"batch_size": -4}):
        with recording_jobs() as sent:
            answer = lead.post(url, json={"kind": "tapt", "tapt_config": bad})
        assert answer.status_code == 422, (bad, answer.text)
        field = next(iter(bad))
        assert answer.json()["error"]["details"]["field"] == field
        assert f"TAPT {field} must be" in answer.json()["error"]["message"]
        assert not sent
    assert lead.get(url).json() == []
    with recording_jobs():  # an epoch budget within bounds is taken as asked
        fine = lead.post(url, json={"kind": "tapt", "tapt_config": {"epochs": 2, "min_steps": 10}})
    assert fine.status_code == 202, fine.text
