"""A large pool's round: candidates scored in the round, the rest by the background run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from app.db.models import (
    RUN_QUEUE,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_SCORE,
    RUN_SUCCEEDED,
    Annotation,
    Item,
    LiveHeadState,
    Project,
    QueueEntry,
    TrainingRun,
)
from app.domain.runs import request_queue_recompute
from app.jobs import Job
from contract.tasks import TASK_LABEL_ISSUES
from tests.app.domain.runs_support import Db
from tests.worker.tasks.seed import Seeded, submit_batch
from worker.tasks import candidates, pool_scoring
from worker.tasks.live_refit import load_adapter_probs
from worker.tasks.pool_scoring import score_pool_body
from worker.tasks.queue_build import recompute_queue_body
from worker.tasks.retrain import retrain_body
from worker.tasks.runner import execute_run


@pytest.fixture()
def small_budget(monkeypatch: pytest.MonkeyPatch) -> int:
    """A candidate budget of 20 items (the tiny pool has 60)."""
    monkeypatch.setattr(candidates, "CANDIDATE_MIN", 20)
    monkeypatch.setattr(candidates, "CANDIDATES_PER_PICK", 1)
    monkeypatch.setattr(pool_scoring, "CHUNK", 8)
    return 20


def run_kind(file_db: Db, run_id: int, kind: str, body) -> TrainingRun:  # type: ignore[no-untyped-def]
    execute_run(run_id, kind, body, settings=file_db.settings)
    with file_db.session() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def trained_round(file_db: Db, seeded: Seeded, n: int, *, live: bool = False) -> TrainingRun:
    """Label ``n`` items, train, rebuild the queue; returns the queue run. ``live``: the live
    head is refit first (as it is after every label in the product)."""
    with file_db.session() as session:
        retrain = submit_batch(session, seeded, n)
        session.commit()
    if live:
        from worker.tasks.live_refit import refit_live_head

        assert refit_live_head(seeded.project_id, file_db.settings, file_db.sessions) is not None
    assert run_kind(file_db, retrain.id, RUN_RETRAIN, retrain_body).status == RUN_SUCCEEDED
    with file_db.session() as session:
        queue = request_queue_recompute(session, seeded.project_id, reason="test")
        session.commit()
    return run_kind(file_db, queue.id, RUN_QUEUE, recompute_queue_body)


def queued_scoring(file_db: Db, seeded: Seeded) -> TrainingRun | None:
    with file_db.session() as session:
        run = session.scalars(select(TrainingRun).where(
            TrainingRun.project_id == seeded.project_id, TrainingRun.kind == RUN_SCORE,
            TrainingRun.status == RUN_QUEUED)).first()
        if run is not None:
            session.expunge(run)
        return run


def pool_state(file_db: Db, seeded: Seeded) -> tuple[int, list[int], list[int]]:
    """(current version id, unlabelled pool ids, queued item ids)."""
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None and project.current_model_version_id is not None
        labelled = set(session.scalars(select(Annotation.item_id)))
        queued = list(session.scalars(select(QueueEntry.item_id).where(
            QueueEntry.project_id == seeded.project_id,
            QueueEntry.queue_version == project.queue_version)))
        return (project.current_model_version_id,
                [i for i in seeded.pool_ids if i not in labelled], queued)


def round_then_more_labels(
    file_db: Db, seeded: Seeded
) -> tuple[int, TrainingRun, TrainingRun]:
    """A round on 12 labels, then 6 more submitted: (the round's version id, its queued
    background scoring run, the retrain the new labels queued)."""
    trained_round(file_db, seeded, 12)
    version_id, _, _ = pool_state(file_db, seeded)
    scoring = queued_scoring(file_db, seeded)
    assert scoring is not None
    with file_db.session() as session:  # an annotator submits: a retrain waits for the worker
        retrain = submit_batch(session, seeded, 6)
        session.commit()
        session.expunge(retrain)
    return version_id, scoring, retrain


def test_a_large_pool_round_scores_candidates_and_the_background_run_scores_the_rest(
    file_db: Db, seeded: Seeded, sent: list[Job], small_budget: int
) -> None:
    queue_run = trained_round(file_db, seeded, 12)
    assert queue_run.status == RUN_SUCCEEDED, queue_run.error
    version_id, unlabelled, queued = pool_state(file_db, seeded)
    assert len(unlabelled) == 48
    assert f"scored {small_budget} of 48 pool items" in queue_run.message
    assert "the rest is scored in the background" in queue_run.message
    stored = load_adapter_probs(file_db.settings, seeded.project_id, version_id)
    assert stored is not None
    scored_pool = set(stored.ids.tolist()) - set(seeded.dev_ids)
    assert len(scored_pool) == small_budget and set(queued) <= scored_pool
    assert set(seeded.dev_ids) <= set(stored.ids.tolist())  # the live refit compares on dev
    assert [j.args for j in sent if j.name == TASK_LABEL_ISSUES] == [(seeded.project_id,)]
    scoring = queued_scoring(file_db, seeded)
    assert scoring is not None and scoring.params["model_version_id"] == version_id
    with file_db.session() as session:  # the queue run's swap asked for a refit already
        session.execute(update(LiveHeadState).values(refit_pending=False))
        session.commit()

    done = run_kind(file_db, scoring.id, RUN_SCORE, score_pool_body)
    assert done.status == RUN_SUCCEEDED, done.error
    assert (done.metrics["scored"], done.metrics["left"]) == (48 - small_budget, 0)
    assert done.total == 4  # 28 items in chunks of 8
    stored = load_adapter_probs(file_db.settings, seeded.project_id, version_id)
    assert stored is not None and stored.covers(unlabelled)
    assert np.allclose(stored.probs.sum(axis=1), 1.0, atol=1e-4)
    with file_db.session() as session:  # covered: the live refit may serve the adapter on all
        assert session.scalars(select(LiveHeadState.refit_pending)).one() is True
    # scored items match what the model gives them directly
    from worker.ml.artifacts import load_artifact
    from worker.tasks.project_data import load_snapshot

    with file_db.session() as session:
        snapshot = load_snapshot(session, seeded.project_id, file_db.settings)
        texts = dict(session.execute(
            select(Item.id, Item.text).where(Item.id.in_(unlabelled))).all())
    assert snapshot.current_artifact is not None
    model = load_artifact(Path(snapshot.current_artifact))
    direct = model.predict_proba([texts[i] for i in unlabelled])
    assert np.allclose(stored.probs_of(unlabelled), direct, atol=1e-4)


def test_the_background_run_yields_to_a_waiting_round_and_resumes_behind_it(
    file_db: Db, seeded: Seeded, sent: list[Job], small_budget: int
) -> None:
    version_id, scoring, _ = round_then_more_labels(file_db, seeded)
    stopped = run_kind(file_db, scoring.id, RUN_SCORE, score_pool_body)
    assert stopped.status == RUN_SUCCEEDED, stopped.error
    assert "a retrain run is waiting; scoring resumes after it" in stopped.message
    assert stopped.metrics["scored"] == 8  # one chunk, never none
    stored = load_adapter_probs(file_db.settings, seeded.project_id, version_id)
    assert stored is not None and len(stored.ids) == small_budget + 8 + len(seeded.dev_ids)
    again = queued_scoring(file_db, seeded)
    assert again is not None and again.id != scoring.id
    assert again.params["model_version_id"] == version_id


def test_the_background_run_of_a_superseded_version_scores_nothing(
    file_db: Db, seeded: Seeded, sent: list[Job], small_budget: int
) -> None:
    old, scoring, retrain = round_then_more_labels(file_db, seeded)
    assert run_kind(file_db, retrain.id, RUN_RETRAIN, retrain_body).status == RUN_SUCCEEDED
    done = run_kind(file_db, scoring.id, RUN_SCORE, score_pool_body)
    assert done.status == RUN_SUCCEEDED
    assert f"model version {old} is no longer current" in done.message
    stored = load_adapter_probs(file_db.settings, seeded.project_id, old)
    assert stored is not None and len(stored.ids) == small_budget + len(seeded.dev_ids)


def test_with_a_live_head_the_candidates_are_its_doubts_and_neighbours_its_embeddings(
    file_db: Db, seeded: Seeded, sent: list[Job], small_budget: int
) -> None:
    queue_run = trained_round(file_db, seeded, 12, live=True)
    assert queue_run.status == RUN_SUCCEEDED, queue_run.error
    assert "(candidates by live head)" in queue_run.message
    from worker.tasks.candidates import live_space

    with file_db.session() as session:
        space = live_space(session, file_db.settings, seeded.project_id, 3)
        labelled = list(session.scalars(select(Annotation.item_id).where(
            Annotation.item_id.in_(seeded.pool_ids))))
        rows = list(session.scalars(select(QueueEntry).where(
            QueueEntry.project_id == seeded.project_id).order_by(QueueEntry.rank)))
    assert space.head is not None and space.stored is not None
    first = rows[0]
    vectors = space.vectors([first.item_id] + labelled)
    assert vectors is not None
    sims = vectors[1:] @ vectors[0]  # stored vectors are L2-normalised
    best = labelled[int(np.argmax(sims))]
    assert first.neighbours[0]["item_id"] == best
    assert abs(first.neighbours[0]["similarity"] - float(sims.max())) < 1e-3


@pytest.mark.parametrize(("save_seconds", "merges"), [(3600.0, 1), (0.0, 4)])
def test_scored_chunks_are_merged_into_the_stored_file_at_most_every_few_seconds(
    file_db: Db, seeded: Seeded, sent: list[Job], small_budget: int,
    monkeypatch: pytest.MonkeyPatch, save_seconds: float, merges: int,
) -> None:
    from worker.tasks import live_refit

    trained_round(file_db, seeded, 12)
    scoring = queued_scoring(file_db, seeded)
    assert scoring is not None
    calls: list[int] = []
    original = live_refit.save_adapter_probs

    def counting(settings, project_id, version_id, item_ids, probs):  # type: ignore[no-untyped-def]
        calls.append(len(item_ids))
        original(settings, project_id, version_id, item_ids, probs)

    monkeypatch.setattr(live_refit, "save_adapter_probs", counting)
    monkeypatch.setattr(pool_scoring, "SAVE_SECONDS", save_seconds)
    done = run_kind(file_db, scoring.id, RUN_SCORE, score_pool_body)
    assert done.status == RUN_SUCCEEDED, done.error
    assert len(calls) == merges and sum(calls) == 48 - small_budget
