"""The data manager on a multi-label project: label filter, votes and history show sets;
relabelling (one label for many items) is refused until it takes sets."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD, Label
from app.domain import data_manager as dm
from app.domain.annotation.labels import record_label
from app.errors import NotSupported
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
    with pytest.raises(NotSupported, match="Relabelling in the data manager"):
        dm.relabel(db, project, lead, dm.Target(item_ids=(one.id,)), "feature")
