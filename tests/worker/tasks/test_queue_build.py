"""The queue rebuild body: cold start, model-scored queues with neighbours, the atomic swap."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.db.base import utcnow
from app.db.models import (
    RUN_QUEUE,
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    Annotation,
    Lease,
    Project,
    QueueEntry,
    RoundMetric,
    TrainingRun,
)
from app.domain.runs import request_queue_recompute
from app.jobs import Job
from tests.app.domain.runs_support import Db, make_user
from tests.worker.ml.tiny import LABEL_NAMES
from tests.worker.tasks.seed import Seeded, submit_batch
from worker.ml.queue_view import nearest_labelled, top_predictions
from worker.tasks.queue_build import recompute_queue_body
from worker.tasks.retrain import retrain_body
from worker.tasks.runner import Outcome, RunContext, execute_run


def rebuild(file_db: Db, seeded: Seeded, body=recompute_queue_body) -> TrainingRun:  # type: ignore[no-untyped-def]
    with file_db.session() as session:
        run = request_queue_recompute(session, seeded.project_id, reason="test")
        session.commit()
    execute_run(run.id, RUN_QUEUE, body, settings=file_db.settings)
    with file_db.session() as session:
        fresh = session.get(TrainingRun, run.id)
        assert fresh is not None
        return fresh


def entries(file_db: Db, seeded: Seeded) -> tuple[int, list[QueueEntry]]:
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        rows = session.scalars(
            select(QueueEntry)
            .where(QueueEntry.project_id == seeded.project_id)
            .order_by(QueueEntry.queue_version, QueueEntry.rank)
        ).all()
        return project.queue_version, list(rows)


def test_cold_start_queues_random_items_but_never_leased_or_labelled(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    labelled, leased = seeded.pool_ids[0], seeded.pool_ids[1]
    with file_db.session() as session:
        user = make_user(session)
        session.add(
            Annotation(project_id=seeded.project_id, item_id=labelled, label_id=seeded.label_ids[0])
        )
        session.add(
            Lease(
                project_id=seeded.project_id,
                item_id=leased,
                annotator_id=user.id,
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )
        session.commit()
    run = rebuild(file_db, seeded)
    version, rows = entries(file_db, seeded)
    assert run.status == RUN_SUCCEEDED, run.error
    assert version == 1 and run.metrics["queue_version"] == 1
    assert len(rows) == 12  # batch size 6, queued twice over
    assert {r.strategy for r in rows} == {"random"} and all(r.neighbours == [] for r in rows)
    assert [r.rank for r in rows] == list(range(12))
    assert labelled not in {r.item_id for r in rows} and leased not in {r.item_id for r in rows}


def test_model_queue_has_predictions_neighbours_and_replaces_the_old_version(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    rebuild(file_db, seeded)  # cold-start queue v1
    with file_db.session() as session:
        run = submit_batch(session, seeded, 12)
        session.commit()
    execute_run(run.id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    queue_run = rebuild(file_db, seeded)
    version, rows = entries(file_db, seeded)
    assert queue_run.status == RUN_SUCCEEDED, queue_run.error
    assert version == 2 and {r.queue_version for r in rows} == {2}  # v1 deleted after the swap
    with file_db.session() as session:
        labelled = set(session.scalars(select(Annotation.item_id)))
        metric = session.scalars(select(RoundMetric)).one()
        current = session.get(Project, seeded.project_id).current_model_version_id  # type: ignore[union-attr]
    assert not labelled & {r.item_id for r in rows}
    assert queue_run.model_version_id == current and {r.model_version_id for r in rows} == {current}
    first = rows[0]
    assert first.strategy == "entropy" and first.reason
    assert [p["label"] for p in first.predicted] and len(first.predicted) == 3
    assert {p["label"] for p in first.predicted} == set(LABEL_NAMES)
    assert len(first.neighbours) == 3
    for neighbour in first.neighbours:
        assert neighbour["item_id"] in labelled and neighbour["label"] in LABEL_NAMES
        assert -1.0 <= neighbour["similarity"] <= 1.0
    sims = [n["similarity"] for n in first.neighbours]
    assert sims == sorted(sims, reverse=True)
    assert scores_descending(rows)
    assert metric.details["agreement"] is not None  # the stop rule's second acquisition function
    assert any(r["rule"] == "acquisition_agreement" for r in metric.stop_recommendations)


def scores_descending(rows: list[QueueEntry]) -> bool:
    scores = [r.score for r in rows]
    return scores == sorted(scores, reverse=True)


def test_a_rebuild_with_nothing_new_is_skipped(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    rebuild(file_db, seeded)
    again = rebuild(file_db, seeded)
    version, _ = entries(file_db, seeded)
    assert again.status == RUN_SUCCEEDED and "already built" in again.message and version == 1


def test_items_labelled_while_scoring_are_filtered_at_the_swap(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    snatched: list[int] = []

    def body_with_a_fast_annotator(ctx: RunContext) -> Outcome:
        outcome = recompute_queue_body(ctx)
        selection = outcome.publish.selection  # type: ignore[union-attr]
        snatched.append(selection.item_ids[0])
        with file_db.session() as session:
            session.add(
                Annotation(
                    project_id=seeded.project_id, item_id=snatched[0], label_id=seeded.label_ids[0]
                )
            )
            session.commit()
        return outcome

    rebuild(file_db, seeded, body_with_a_fast_annotator)
    _, rows = entries(file_db, seeded)
    assert snatched[0] not in {r.item_id for r in rows} and len(rows) == 11
    assert [r.rank for r in rows] == list(range(11))


def test_a_stopped_project_or_spent_budget_empties_the_queue(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    rebuild(file_db, seeded)
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.stopped = True
        project.data_version += 1  # so the rebuild is not skipped as up to date
        session.commit()
    run = rebuild(file_db, seeded)
    version, rows = entries(file_db, seeded)
    assert "stopped" in run.message and version == 2 and rows == []
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.stopped, project.label_budget = False, 5
        submit_batch(session, seeded, 6)
        session.commit()
    run = rebuild(file_db, seeded)
    assert "budget of 5 is spent" in run.message


def test_top_predictions_and_nearest_labelled_are_ordered() -> None:
    import numpy as np

    from worker.tasks.project_data import LabelledSet

    probs = np.array([[0.2, 0.5, 0.3]])
    assert [p["label"] for p in top_predictions(probs, ("a", "b", "c"))[0]] == ["b", "c", "a"]
    queued = np.array([[1.0, 0.0]])
    labelled = LabelledSet(item_ids=[7, 8, 9], texts=["x", "y", "z"], labels=[0, 1, 0])
    emb = np.array([[0.0, 1.0], [1.0, 0.1], [0.7, 0.7]])
    near = nearest_labelled(queued, emb, labelled, ("a", "b"), k=2)[0]
    assert [n["item_id"] for n in near] == [8, 9] and near[0]["label"] == "b"
    assert nearest_labelled(queued, None, LabelledSet(), ("a", "b")) == [[]]


def test_projects_stored_with_the_old_hybrid_name_get_the_registry_hybrid(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.strategy = "hybrid"  # what app.db.models.Project.strategy defaulted to before
        run = submit_batch(session, seeded, 12)
        session.commit()
    execute_run(run.id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    queue_run = rebuild(file_db, seeded)
    assert queue_run.status == RUN_SUCCEEDED, queue_run.error
    assert queue_run.metrics["strategy"] == "cluster_uncertain"


def test_the_queue_counts_the_budget_as_the_web_does(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    """Every label a person made counts (policy.labels_used): the second label on an overlap
    item spends the budget although the training set holds one item for it."""
    from app.db.models import OverlapItem
    from app.domain.policy import labels_used

    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.label_budget = 6
        submit_batch(session, seeded, 5)
        session.commit()
    run = rebuild(file_db, seeded)
    assert "spent" not in run.message
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        first = session.scalars(  # a pool item's label: dev labels are not in the budget
            select(Annotation)
            .where(Annotation.project_id == project.id,
                   Annotation.item_id.in_(seeded.pool_ids))
            .order_by(Annotation.id)
        ).first()
        assert first is not None
        session.add(OverlapItem(project_id=project.id, item_id=first.item_id))
        session.add(Annotation(project_id=project.id, item_id=first.item_id,
                               label_id=first.label_id, annotator_id=make_user(session).id))
        project.data_version += 1
        session.commit()
        assert labels_used(session, project.id) == 6
    run = rebuild(file_db, seeded)
    assert "budget of 6 is spent" in run.message
