"""The data manager on a multi-label project: label filter, votes and history show sets;
relabelling gives many items one label set (replacing theirs), with the single-label rules."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD, Label
from app.domain import data_manager as dm
from app.domain.annotation.labels import record_label
from app.errors import InvalidInput, NotFound
from tests.factories import make_items, make_project, make_user


def test_sets_are_found_by_label_and_shown_as_sets(db: Session) -> None:
    project = make_project(db, labels=("billing", "bug", "feature"), task_type="multi_label")
    ids = dict(db.execute(select(Label.name, Label.id)
                          .where(Label.project_id == project.id)).tuples().all())
    user = make_user(db)
    both, one, none, untouched = make_items(db, project, ["a", "b", "c", "d"])
    record_label(db, project, user, item_id=both.id, label_ids=[ids["bug"], ids["billing"]])
    record_label(db, project, user, item_id=one.id, label_ids=[ids["bug"]])
    record_label(db, project, user, item_id=none.id, label_ids=[])
    ctx = dm.FilterContext(project=project, dialect=db.get_bind().dialect.name)
    found = set(db.scalars(select(dm.Item.id).where(dm._has_label(ctx, "bug"))))
    assert found == {both.id, one.id}
    votes = dm.live_votes(db, project.id, [both.id, one.id, none.id, untouched.id])
    assert [v.label for v in votes[both.id]] == ["billing, bug"]
    assert [v.label for v in votes[none.id]] == ["none of these"]
    assert untouched.id not in votes
    detail = dm.item_detail(db, project, both.id)
    assert [a.label for a in detail.annotations] == ["billing, bug"]
    lead = make_user(db, role=ROLE_LEAD)
    with pytest.raises(InvalidInput, match="This project is multi-label: give the new label set"):
        dm.relabel(db, project, lead, dm.Target(item_ids=(one.id,)), "feature")


def _names(db: Session, project_id: int) -> dict[int, str]:
    return dict(db.execute(select(Label.id, Label.name)
                           .where(Label.project_id == project_id)).tuples().all())


def test_bulk_relabel_replaces_each_items_set_and_supersedes_the_others(db: Session) -> None:
    from app.db.models import Annotation, AuditEvent, ItemEvent
    from app.domain import audit, review
    from app.domain.annotation.label_sets import label_sets

    project = make_project(db, labels=("billing", "bug", "feature"), task_type="multi_label")
    ids = {name: label_id for label_id, name in _names(db, project.id).items()}
    ana, ben, lead = make_user(db), make_user(db), make_user(db, role=ROLE_LEAD)
    first, second, untouched = make_items(db, project, ["a", "b", "c"])
    record_label(db, project, ana, item_id=first.id, label_ids=[ids["billing"]])
    record_label(db, project, ben, item_id=first.id, label_ids=[ids["bug"]])
    record_label(db, project, ana, item_id=second.id, label_ids=[])
    record_label(db, project, ana, item_id=untouched.id, label_ids=[ids["bug"]])
    review.decide(db, project, lead, item_id=first.id, action="change", label_ids=[])

    result = dm.run_bulk_action(db, project, lead, dm.Target(item_ids=(first.id, second.id)),
                                "relabel", label_ids=[ids["feature"], ids["billing"]])
    assert (result.items, result.annotations_added, result.annotations_superseded) == (2, 2, 3)
    live = db.execute(select(Annotation.item_id, Annotation.id, Annotation.label_id)
                      .where(Annotation.project_id == project.id, Annotation.deleted.is_(False),
                             Annotation.superseded_by_id.is_(None))).tuples().all()
    sets = label_sets(db, [a for _, a, _ in live])
    assert {item: sets[a] for item, a, _ in live} == {
        first.id: [ids["billing"], ids["feature"]], second.id: [ids["billing"], ids["feature"]],
        untouched.id: [ids["bug"]]}
    assert all(label_id is None for *_, label_id in live)
    assert first.id not in review.adjudicated_sets(db, project.id)  # the lead's set wins now
    page = dm.browse(db, project, {})
    assert {r.id: r.label for r in page.rows}[first.id] == "billing, feature"
    events = db.scalars(select(ItemEvent).where(ItemEvent.item_id == first.id)).all()
    assert [e.detail["labels"] for e in events] == [["billing", "feature"]]
    record = db.scalars(select(AuditEvent).where(AuditEvent.action == audit.RELABEL)).one()
    assert record.detail["labels"] == ["billing", "feature"] and record.detail["items"] == 2

    # By name, and the empty set (none of these), on every item matching a filter.
    dm.run_bulk_action(db, project, lead, dm.Target(filters={"label": "bug"}), "relabel",
                       labels=[])
    votes = dm.live_votes(db, project.id, [untouched.id])
    assert [v.label for v in votes[untouched.id]] == ["none of these"]


def test_bulk_relabel_to_a_set_checks_everything_before_writing(db: Session) -> None:
    from app.db.models import Annotation

    project = make_project(db, labels=("billing", "bug"), task_type="multi_label")
    other = make_project(db, labels=("billing", "bug"), task_type="multi_label")
    lead = make_user(db, role=ROLE_LEAD)
    (item,) = make_items(db, project, ["a"])
    (theirs,) = make_items(db, other, ["b"])
    mine = {name: label_id for label_id, name in _names(db, project.id).items()}
    foreign = next(iter(_names(db, other.id)))
    target = dm.Target(item_ids=(item.id,))
    with pytest.raises(InvalidInput, match="is not one of this project's labels"):
        dm.run_bulk_action(db, project, lead, target, "relabel",
                           label_ids=[mine["bug"], foreign])
    with pytest.raises(InvalidInput, match="'nope' is not a label of this project"):
        dm.run_bulk_action(db, project, lead, target, "relabel", labels=["bug", "nope"])
    with pytest.raises(InvalidInput, match="give the new label set"):
        dm.run_bulk_action(db, project, lead, target, "relabel")
    with pytest.raises(InvalidInput, match="not one label"):
        dm.run_bulk_action(db, project, lead, target, "relabel", label="bug")
    with pytest.raises(NotFound):
        dm.run_bulk_action(db, project, lead, dm.Target(item_ids=(theirs.id,)), "relabel",
                           label_ids=[mine["bug"]])
    assert db.scalar(select(func.count()).select_from(Annotation)) == 0
    single = make_project(db, labels=("billing", "bug"))
    (plain,) = make_items(db, single, ["c"])
    with pytest.raises(InvalidInput, match="single-label: give one label"):
        dm.run_bulk_action(db, single, lead, dm.Target(item_ids=(plain.id,)), "relabel",
                           label_ids=[mine["bug"]])
