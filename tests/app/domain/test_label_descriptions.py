"""Label descriptions for the zero-shot cold start: parsing, validation, and a requested refit."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.domain.live_head import (
    label_descriptions_text,
    parse_label_descriptions,
    set_label_descriptions,
)
from app.errors import InvalidInput
from app.jobs import pending_jobs
from contract.tasks import TASK_LIVE_REFIT
from tests.app.domain.runs_support import make_project


def test_parse_descriptions_one_per_line() -> None:
    text = "billing: invoices, refunds\n\n  outage :  the service is down \nother:"
    assert parse_label_descriptions(text) == {
        "billing": "invoices, refunds", "outage": "the service is down", "other": ""}
    with pytest.raises(InvalidInput, match="Line 1"):
        parse_label_descriptions("no colon here")


def test_set_descriptions_validates_and_requests_a_live_refit(db: Session) -> None:
    project = make_project(db)
    names = ["neg", "pos"]
    set_label_descriptions(db, project.id, {names[0]: "  first   one "})
    assert label_descriptions_text(db, project.id).splitlines()[0] == f"{names[0]}: first one"
    assert [j.name for j in pending_jobs(db)] == [TASK_LIVE_REFIT]
    with pytest.raises(InvalidInput, match="No such label"):
        set_label_descriptions(db, project.id, {"nope": "x"})
    with pytest.raises(InvalidInput, match="longer than 300"):
        set_label_descriptions(db, project.id, {names[0]: "x" * 301})


@pytest.mark.db
def test_a_concurrent_first_refit_request_is_not_an_error(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two labels of a new project race to create its live-head row: the loser's insert hits the
    unique constraint, which must not fail the label (it was a 500 under load on Postgres)."""
    from app.db.models import LiveHeadState
    from app.domain import live_head

    project = make_project(db)
    db.add(LiveHeadState(project_id=project.id, refit_pending=True))
    db.flush()
    real_scalar = db.scalar
    # The loser's existence check ran before the winner's row was visible.
    monkeypatch.setattr(db, "scalar", lambda *a, **k: None)
    assert live_head.request_live_refit(db, project.id) is False
    monkeypatch.setattr(db, "scalar", real_scalar)
    rows = db.query(LiveHeadState).filter_by(project_id=project.id).count()
    assert rows == 1
