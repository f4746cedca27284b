"""Handing out items under leases, labelling, skip, undo, edit and batch submission."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    ROLE_ANNOTATOR,
    RUN_QUEUED,
    RUN_RETRAIN,
    SPLIT_DEV,
    Annotation,
    Item,
    Lease,
    Project,
    TrainingRun,
    User,
)
from app.domain import annotation as ann
from app.domain.projects import get_labels
from app.errors import Conflict, InvalidInput, NotFound
from app.jobs import Job, pending_jobs, recording_jobs
from contract.tasks import TASK_LIVE_REFIT, TASK_RETRAIN
from tests.app.domain.annotation_data import add_queue
from tests.factories import make_items, make_project, make_user

LEASE = 600


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


def _setup(db: Session, n_items: int = 6, annotators: int = 2, **project_fields: object
           ) -> tuple[Project, list[User], list[Item]]:
    people = [make_user(db, role=ROLE_ANNOTATOR) for _ in range(annotators)]
    project = make_project(db, labels=("sports", "finance", "science"), annotators=people)
    for key, value in project_fields.items():
        setattr(project, key, value)
    items = make_items(db, project, [f"item text number {i}" for i in range(n_items)])
    return project, people, items


def _take(db: Session, project: Project, user: User, exclude: set[int] | None = None
          ) -> ann.ItemView:
    view = ann.next_item(db, project, user, lease_seconds=LEASE, exclude=exclude or set())
    assert isinstance(view, ann.ItemView), view
    return view


def test_cold_start_hands_out_a_random_pool_item_under_a_lease(db: Session) -> None:
    project, (alice, _), items = _setup(db)
    view = _take(db, project, alice)
    assert view.item_id in {i.id for i in items}
    assert view.why.source == "random"
    lease = db.scalars(select(Lease).where(Lease.annotator_id == alice.id)).one()
    assert lease.item_id == view.item_id and lease.expires_at > utcnow()


def test_queue_order_and_why_this_item(db: Session) -> None:
    project, (alice, _), items = _setup(db)
    labelled = make_items(db, project, ["a labelled neighbour about goals and teams"])
    add_queue(db, project, [items[3], items[1]], neighbours=labelled)
    view = _take(db, project, alice)
    assert view.item_id == items[3].id
    assert view.why.source == "queue" and view.why.strategy == "entropy" and view.why.rank == 0
    assert [p.label for p in view.why.predicted] == ["sports", "finance", "science"]
    assert view.why.neighbours[0].snippet.startswith("a labelled neighbour")
    second = _take(db, project, alice, exclude={view.item_id})
    assert second.item_id == items[1].id


def test_reload_resumes_the_held_item_instead_of_taking_another(db: Session) -> None:
    project, (alice, _), _ = _setup(db)
    first = _take(db, project, alice)
    again = _take(db, project, alice)
    assert again.item_id == first.item_id
    assert db.scalar(select(func.count()).select_from(Lease)
                     .where(Lease.annotator_id == alice.id)) == 1


def test_two_annotators_never_receive_the_same_item(db: Session) -> None:
    project, (alice, bob), items = _setup(db, n_items=9)
    add_queue(db, project, items[:4])
    seen: dict[int, set[int]] = {alice.id: set(), bob.id: set()}
    for _ in range(10):
        for user in (alice, bob):
            view = ann.next_item(db, project, user, lease_seconds=LEASE, exclude=seen[user.id])
            if isinstance(view, ann.ItemView):
                seen[user.id].add(view.item_id)
    assert not seen[alice.id] & seen[bob.id]
    assert seen[alice.id] | seen[bob.id] == {i.id for i in items}
    assert isinstance(ann.next_item(db, project, alice, lease_seconds=LEASE,
                                    exclude=seen[alice.id]), ann.NoItem)


def test_overlap_projects_give_an_item_to_two_annotators_but_not_three(db: Session) -> None:
    project, (alice, bob, carol), items = _setup(db, n_items=1, annotators=3,
                                                 annotations_per_item=2)
    assert _take(db, project, alice).item_id == items[0].id
    assert _take(db, project, bob).item_id == items[0].id
    result = ann.next_item(db, project, carol, lease_seconds=LEASE)
    assert isinstance(result, ann.NoItem) and result.code == "exhausted"


def test_expired_lease_frees_the_item_for_others(db: Session) -> None:
    project, (alice, bob), items = _setup(db, n_items=1)
    view = _take(db, project, alice)
    later = utcnow() + timedelta(seconds=LEASE + 1)
    other = ann.next_item(db, project, bob, lease_seconds=LEASE, now=later)
    assert isinstance(other, ann.ItemView) and other.item_id == view.item_id


def test_label_is_stored_once_per_idempotency_key_and_releases_the_lease(
    db: Session, sent: list[Job]
) -> None:
    project, (alice, _), _ = _setup(db)
    view = _take(db, project, alice)
    label = get_labels(db, project.id)[1]
    first = ann.record_label(db, project, alice, item_id=view.item_id, label_id=label.id,
                             duration_ms=1234, idempotency_key="k-1")
    again = ann.record_label(db, project, alice, item_id=view.item_id, label_id=label.id,
                             duration_ms=1234, idempotency_key="k-1")
    assert not first.replayed and again.replayed
    assert again.annotation.id == first.annotation.id
    stored = db.scalars(select(Annotation).where(Annotation.item_id == view.item_id)).one()
    assert stored.duration_ms == 1234 and stored.source == "ui"
    assert stored.batch_id == ann.batch_id_for(project.data_version)
    assert db.scalars(select(Lease).where(Lease.annotator_id == alice.id)).first() is None
    assert _take(db, project, alice).item_id != view.item_id


def test_label_refuses_a_label_of_another_project_and_a_foreign_item(db: Session) -> None:
    project, (alice, _), items = _setup(db)
    other = make_project(db, labels=("x", "y"))
    foreign_label = get_labels(db, other.id)[0]
    foreign_item = make_items(db, other, ["elsewhere"])[0]
    with pytest.raises(InvalidInput):
        ann.record_label(db, project, alice, item_id=items[0].id, label_id=foreign_label.id)
    with pytest.raises(NotFound):
        ann.record_label(db, project, alice, item_id=foreign_item.id,
                         label_id=get_labels(db, project.id)[0].id)


def test_absurd_durations_are_clamped_or_dropped() -> None:
    assert ann.clamp_duration(-5) is None
    assert ann.clamp_duration(10**9) == ann.MAX_DURATION_MS
    assert ann.clamp_duration(850) == 850


def test_skip_passes_the_item_to_others_and_never_back(db: Session) -> None:
    project, (alice, bob), items = _setup(db, n_items=2)
    add_queue(db, project, items)
    view = _take(db, project, alice)
    ann.skip_item(db, project, alice, item_id=view.item_id)
    assert _take(db, project, alice).item_id == items[1].id
    assert _take(db, project, bob).item_id == view.item_id


def test_undo_deletes_the_last_label_and_hands_the_item_back(db: Session) -> None:
    project, (alice, _), _ = _setup(db)
    labels = get_labels(db, project.id)
    first = _take(db, project, alice)
    ann.record_label(db, project, alice, item_id=first.item_id, label_id=labels[0].id)
    second = _take(db, project, alice)
    ann.record_label(db, project, alice, item_id=second.item_id, label_id=labels[2].id)
    back = ann.undo_last(db, project, alice, lease_seconds=LEASE)
    assert back.item_id == second.item_id and back.previous_label_id == labels[2].id
    undone = db.scalars(select(Annotation).where(Annotation.item_id == second.item_id)).one()
    assert undone.deleted
    assert _take(db, project, alice).item_id == second.item_id  # held again
    assert ann.undo_last(db, project, alice, lease_seconds=LEASE).item_id == first.item_id
    with pytest.raises(Conflict):
        ann.undo_last(db, project, alice, lease_seconds=LEASE)


def test_edit_supersedes_and_undo_of_an_edit_restores_the_previous_label(db: Session) -> None:
    project, (alice, bob), _ = _setup(db)
    labels = get_labels(db, project.id)
    view = _take(db, project, alice)
    original = ann.record_label(db, project, alice, item_id=view.item_id,
                                label_id=labels[0].id).annotation
    edited = ann.edit_annotation(db, project, alice, annotation_id=original.id,
                                 label_id=labels[1].id)
    assert original.superseded_by_id == edited.id
    assert [r.label_id for r in ann.recent_labels(db, project, alice)] == [labels[1].id]
    with pytest.raises(NotFound):
        ann.edit_annotation(db, project, bob, annotation_id=edited.id, label_id=labels[2].id)
    ann.undo_last(db, project, alice, lease_seconds=LEASE)
    db.refresh(original)
    assert original.superseded_by_id is None and not original.deleted


def test_full_batch_closes_itself_and_requests_one_retrain(db: Session, sent: list[Job]) -> None:
    project, (alice, bob), _ = _setup(db, n_items=8, batch_size=3, label_budget=100)
    label = get_labels(db, project.id)[0]
    start_version = project.data_version
    runs = []
    for user in (alice, bob, alice):
        view = _take(db, project, user)
        result = ann.record_label(db, project, user, item_id=view.item_id, label_id=label.id)
        runs.append(result.submitted_run)
    assert runs[0] is None and runs[1] is None and runs[2] is not None
    assert runs[2].kind == RUN_RETRAIN and runs[2].status == RUN_QUEUED
    assert project.data_version == start_version + 1
    names = [j.name for j in pending_jobs(db)]
    assert [n for n in names if n != TASK_LIVE_REFIT] == [TASK_RETRAIN]
    assert names.count(TASK_LIVE_REFIT) == 1  # three labels, one coalesced live-head refit
    progress = ann.batch_progress(db, project, alice)
    assert progress.done == 0 and progress.labels_used == 3 and progress.retraining


def test_manual_submit_closes_a_partial_batch_and_refuses_an_empty_one(
    db: Session, sent: list[Job]
) -> None:
    project, (alice, _), _ = _setup(db, batch_size=50)
    view = _take(db, project, alice)
    ann.record_label(db, project, alice, item_id=view.item_id,
                     label_id=get_labels(db, project.id)[0].id)
    progress = ann.batch_progress(db, project, alice)
    assert (progress.done, progress.mine) == (1, 1)
    run = ann.submit_batch(db, project, alice, reason="submitted by hand")
    assert run is not None and run.params["reasons"] == ["submitted by hand"]
    with pytest.raises(Conflict):
        ann.submit_batch(db, project, alice)
    assert db.scalar(select(func.count()).select_from(TrainingRun)) == 1


def test_last_batch_is_cut_short_by_the_budget(db: Session, sent: list[Job]) -> None:
    project, (alice, _), _ = _setup(db, n_items=8, batch_size=100, label_budget=2,
                                    reserve_fraction=0.0)
    label = get_labels(db, project.id)[0]
    results = []
    for _ in range(2):
        view = _take(db, project, alice)
        results.append(ann.record_label(db, project, alice, item_id=view.item_id,
                                        label_id=label.id))
    assert results[-1].submitted_run is not None
    spent = ann.next_item(db, project, alice, lease_seconds=LEASE)
    assert isinstance(spent, ann.NoItem) and spent.code == "budget_spent"


def test_stopped_project_hands_out_nothing(db: Session) -> None:
    project, (alice, _), _ = _setup(db, stopped=True)
    result = ann.next_item(db, project, alice, lease_seconds=LEASE)
    assert isinstance(result, ann.NoItem) and result.code == "stopped"


def test_dev_items_are_never_handed_out(db: Session) -> None:
    project, (alice, _), _ = _setup(db, n_items=0)
    make_items(db, project, ["held-out text"], split=SPLIT_DEV)
    assert isinstance(ann.next_item(db, project, alice, lease_seconds=LEASE), ann.NoItem)


def test_label_keys_skip_reserved_and_repeated_shortcuts(db: Session) -> None:
    project, _, _ = _setup(db)
    labels = get_labels(db, project.id)
    labels[1].shortcut = "s"
    labels[2].shortcut = "1"
    assert ann.label_keys(labels) == {"1": labels[0].id}


def test_queue_status_reports_an_active_retrain(db: Session, sent: list[Job]) -> None:
    project, (alice, _), _ = _setup(db)
    assert ann.queue_status(db, project).retrain_status is None
    view = _take(db, project, alice)
    ann.record_label(db, project, alice, item_id=view.item_id,
                     label_id=get_labels(db, project.id)[0].id)
    ann.submit_batch(db, project, alice)
    status = ann.queue_status(db, project)
    assert status.retrain_status == RUN_QUEUED and status.retrain_phase == "retraining the model"
