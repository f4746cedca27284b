"""Queue leases, runs, model versions, round metrics and project updates over the API."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ANNOTATOR, QueueEntry, RoundMetric
from app.jobs import recording_jobs
from tests.app.api.support import caller, fake_version, lead_with_project
from tests.factories import add_member, make_items, make_project, make_user


def test_queue_leases_ranked_items_with_reasons_and_neighbours(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    labelled, *pool = make_items(db, project, ["labelled one", "a", "b", "c"])
    for rank, item in enumerate(reversed(pool)):
        db.add(QueueEntry(
            project_id=project.id, queue_version=project.queue_version, item_id=item.id,
            rank=rank, score=1.0 - rank / 10, strategy="hybrid", reason=f"uncertain #{rank}",
            predicted=[{"label": "positive", "prob": 0.55}],
            neighbours=[{"item_id": labelled.id, "label": "negative", "similarity": 0.8}],
        ))
    first = make_user(db, role=ROLE_ANNOTATOR)
    second = make_user(db, role=ROLE_ANNOTATOR)
    add_member(db, project, first)
    add_member(db, project, second)
    one = caller(app, db, user=first, scopes=("annotate",))
    two = caller(app, db, user=second, scopes=("annotate",))
    url = f"/api/v1/projects/{project.id}/queue/lease"
    mine = one.post(url, json={"n": 2}).json()
    assert [i["item_id"] for i in mine["items"]] == [pool[2].id, pool[1].id]
    top = mine["items"][0]
    assert (top["source"], top["strategy"]) == ("queue", "hybrid")
    assert (top["rank"], top["score"]) == (0, 1.0)
    assert top["reason"] == "uncertain #0"
    assert top["predicted"] == [{"label": "positive", "prob": 0.55}]
    assert top["neighbours"][0]["item_id"] == labelled.id
    assert top["neighbours"][0]["snippet"] == "labelled one"
    theirs = two.post(url, json={"n": 5}).json()
    assert pool[0].id in [i["item_id"] for i in theirs["items"]]
    assert not {i["item_id"] for i in theirs["items"]} & {pool[2].id, pool[1].id}
    again = one.post(url, json={"n": 2}).json()  # held items come back first
    assert [i["item_id"] for i in again["items"]] == [pool[2].id, pool[1].id]
    released = one.post(f"/api/v1/projects/{project.id}/queue/release",
                        json={"item_ids": [pool[1].id]})
    assert released.json() == {"released": 1}
    status = one.get(f"/api/v1/projects/{project.id}/queue/status").json()
    assert status["queue_version"] == project.queue_version


def test_queue_says_why_it_is_empty(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    response = lead.post(f"/api/v1/projects/{project.id}/queue/lease", json={"n": 3})
    assert response.json()["items"] == []
    assert response.json()["exhausted"]["code"] == "exhausted"


def test_runs_launch_coalesce_read_and_cancel(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}/runs"
    with recording_jobs() as sent:
        first = lead.post(url, json={"kind": "retrain", "reason": "pipeline push"})
        second = lead.post(url, json={"kind": "retrain"})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "queued"
    assert second.json()["id"] == first.json()["id"] and second.json()["requests"] == 2
    assert [job.name for job in sent] == ["training.retrain_adapter"]
    run_id = first.json()["id"]
    progress = lead.get(f"{url}/{run_id}").json()
    assert (progress["kind"], progress["status"], progress["step"]) == ("retrain", "queued", 0)
    assert [r["id"] for r in lead.get(url, params={"kind": "retrain"}).json()] == [run_id]
    cancelled = lead.post(f"{url}/{run_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert lead.post(f"{url}/{run_id}/cancel").status_code == 409
    tapt = lead.post(url, json={"kind": "tapt", "tapt_config": {"max_steps": 50}})
    assert tapt.json()["kind"] == "tapt"
    assert lead.get(f"/api/v1/projects/{project.id}/runs/{run_id + 1000}").status_code == 404


def test_background_pool_scoring_runs_are_listed_but_not_launched(
    app: FastAPI, db: Session
) -> None:
    from app.domain.runs import request_pool_scoring

    lead, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}/runs"
    with recording_jobs() as sent:
        run = request_pool_scoring(db, project.id, 7, reason="queue v3 scored candidates only")
        db.commit()
    assert [job.name for job in sent] == ["queue.score_pool"]
    listed = lead.get(url, params={"kind": "score_pool"})
    assert listed.status_code == 200
    assert [(r["id"], r["kind"]) for r in listed.json()] == [(run.id, "score_pool")]
    refused = lead.post(url, json={"kind": "score_pool"})
    assert refused.status_code == 422


def test_runs_of_another_project_are_not_visible_through_this_one(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db)
    second = caller(app, db, user=lead.user)
    other = make_project(db, lead=lead.user)
    db.commit()
    run_id = second.post(f"/api/v1/projects/{other.id}/runs", json={"kind": "retrain"}).json()["id"]
    response = lead.get(f"/api/v1/projects/{project.id}/runs/{run_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"


def test_launching_runs_needs_a_leads_admin_scoped_token(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    annotating = caller(app, db, user=lead.user, scopes=("read", "annotate"))
    response = annotating.post(f"/api/v1/projects/{project.id}/runs", json={"kind": "retrain"})
    assert response.status_code == 403


def test_model_versions_list_promote_and_roll_back(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    first = fake_version(db, settings, project)
    second = fake_version(db, settings, project)
    url = f"/api/v1/projects/{project.id}/model-versions"
    listed = lead.get(url).json()
    assert [(v["version"], v["is_current"]) for v in listed] == [(2, True), (1, False)]
    assert lead.get(f"{url}/1").json()["id"] == first.id
    with recording_jobs():
        rolled = lead.post(f"/api/v1/projects/{project.id}/rollback")
        assert rolled.status_code == 200, rolled.text
        assert (rolled.json()["version"], rolled.json()["is_current"]) == (1, True)
        promoted = lead.post(f"{url}/2/promote").json()
    assert promoted["id"] == second.id and promoted["status"] == "promoted"
    reader = caller(app, db, user=lead.user, scopes=("read",))
    assert reader.post(f"{url}/1/promote").status_code == 403
    assert lead.post(f"{url}/7/promote").status_code == 404


def test_rollback_without_history_is_a_conflict(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead, project = lead_with_project(app, db)
    fake_version(db, settings, project)
    response = lead.post(f"/api/v1/projects/{project.id}/rollback")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_previous_version"


def test_learning_curve_and_latest_evaluation(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}/metrics"
    assert lead.get(f"{url}/learning-curve").json() == []
    assert lead.get(f"{url}/latest").json() is None
    for used, accuracy in ((50, 0.6), (100, 0.7)):
        db.add(RoundMetric(project_id=project.id, labels_used=used, dev_accuracy=accuracy,
                           macro_f1=accuracy - 0.1, per_class_f1={"positive": 0.8},
                           confusion=[[3, 1], [0, 4]]))
        db.flush()
    db.commit()
    curve = lead.get(f"{url}/learning-curve").json()
    assert [(p["labels"], p["accuracy"]) for p in curve] == [(50, 0.6), (100, 0.7)]
    latest = lead.get(f"{url}/latest").json()
    assert latest["labels_used"] == 100 and latest["confusion"] == [[3, 1], [0, 4]]
    assert latest["label_names"] == ["positive", "negative"]
    assert latest["per_class"][0] == {"label": "positive", "f1": 0.8, "support": 4}


def test_project_update_changes_only_what_is_sent(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}"
    response = lead.request("PATCH", url, json={"label_budget": 300,
                                                "labels": ["positive", "negative", "mixed"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label_budget"] == 300 and body["name"] == project.name
    assert [label["name"] for label in body["labels"]] == ["positive", "negative", "mixed"]
    item = make_items(db, project, ["x"])[0]
    db.commit()
    lead.post(f"{url}/annotations", json={"annotations": [{"item_id": item.id, "label": "mixed"}]})
    refused = lead.request("PATCH", url, json={"labels": ["positive", "negative"]})
    assert refused.status_code == 409
    bad = lead.request("PATCH", url, json={"batch_size": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["errors"][0]["loc"] == ["body", "batch_size"]
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    add_member(db, project, annotator)
    member = caller(app, db, user=annotator)
    assert member.request("PATCH", url, json={"name": "mine now"}).status_code == 403


def test_the_api_sets_every_budget_setting_with_the_settings_page_bounds(
    app: FastAPI, db: Session
) -> None:
    from app.domain.policy import BudgetSettings
    from app.errors import InvalidInput

    lead, project = lead_with_project(app, db)
    url = f"/api/v1/projects/{project.id}"
    response = lead.request("PATCH", url, json={"reserve_fraction": 0.1, "auto_stop": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["reserve_fraction"], body["auto_stop"]) == (0.1, True)
    assert body["label_budget"] == project.label_budget  # unsent settings keep their values
    db.refresh(project)
    assert (project.reserve_fraction, project.auto_stop) == (0.1, True)
    edges = {"label_budget": (10_000_000, 10_000_001), "batch_size": (10_000, 10_001),
             "reserve_fraction": (0.5, 0.51), "stop_threshold": (100, 100.5)}
    for field, (highest, too_high) in edges.items():
        assert lead.request("PATCH", url, json={field: highest}).status_code == 200, field
        refused = lead.request("PATCH", url, json={field: too_high})
        assert refused.status_code == 422, field
        assert refused.json()["error"]["details"]["errors"][0]["loc"] == ["body", field]
        BudgetSettings(**{field: highest})  # the settings page takes the same highest value
        with pytest.raises(InvalidInput):
            BudgetSettings(**{field: too_high})
    created = lead.post("/api/v1/projects", json={"name": "p2", "labels": ["a", "b"],
                                                  "reserve_fraction": 0.2, "auto_stop": True})
    assert created.status_code == 201, created.text
    assert (created.json()["reserve_fraction"], created.json()["auto_stop"]) == (0.2, True)


def test_a_lease_that_waits_too_long_for_sqlite_writes_is_a_clear_503(
    app: FastAPI, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite another writer of this process holding the database for too long is a 503 with
    nothing written; on Postgres (row locks, no process-wide writer lock) the lease goes ahead."""
    from app.db import session as db_session

    engine = db.get_bind().engine
    lead, project = lead_with_project(app, db)
    make_items(db, project, ["a", "b"])
    db.commit()  # the test's own writes end (and let the process write lock go)
    monkeypatch.setattr(db_session, "WRITE_LOCK_TIMEOUT_SECONDS", 0.05)
    url = f"/api/v1/projects/{project.id}/queue/lease"
    lock = db_session.sqlite_write_lock(engine)
    assert lock.acquire(timeout=5)
    try:
        first = lead.post(url, json={"n": 1})
    finally:
        lock.release()
    if engine.dialect.name == "sqlite":
        assert first.status_code == 503
        assert first.json()["error"]["code"] == "busy"
        assert "nothing was saved" in first.json()["error"]["message"]
        first = lead.post(url, json={"n": 1})
    assert first.status_code == 200 and len(first.json()["items"]) == 1
