"""Idempotency keys belong to one caller (user and token): another caller with the same key,
item and label gets their own label stored, never the first caller's annotation replayed."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, Annotation, Label
from tests.app.api.support import caller, lead_with_project
from tests.factories import add_member, login_client, make_items, make_user


def _live_labels(db: Session, project_id: int) -> dict[int | None, int]:
    rows = db.execute(select(Annotation.annotator_id, Annotation.id).where(
        Annotation.project_id == project_id, Annotation.deleted.is_(False)))
    return {annotator: annotation_id for annotator, annotation_id in rows}


def test_two_users_with_one_key_each_get_their_own_label(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    project.annotations_per_item = 2
    other = make_user(db, role=ROLE_ANNOTATOR)
    add_member(db, project, other)
    second = caller(app, db, user=other, scopes=("annotate",))
    item = make_items(db, project, ["one text, two annotators"])[0]
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    body = {"annotations": [{"item_id": item.id, "label": "positive"}]}
    key = {"Idempotency-Key": "nightly-2026-11-28"}

    first = lead.post(url, json=body, headers=key)
    theirs = second.post(url, json=body, headers=key)

    assert first.status_code == 200 and theirs.status_code == 200, theirs.text
    assert theirs.json()["created"] == 1 and theirs.json()["replayed"] == 0
    assert not theirs.json()["annotations"][0]["replayed"]
    stored = _live_labels(db, project.id)
    assert set(stored) == {lead.user.id, other.id}
    assert theirs.json()["annotations"][0]["annotation_id"] == stored[other.id]
    assert first.json()["annotations"][0]["annotation_id"] == stored[lead.user.id]
    # Each caller's own retry still replays their own annotation.
    again = second.post(url, json=body, headers=key)
    assert again.json()["replayed"] == 1
    assert again.json()["annotations"][0]["annotation_id"] == stored[other.id]


def test_one_users_two_tokens_and_session_do_not_share_keys(app: FastAPI, db: Session) -> None:
    lead, project = lead_with_project(app, db)
    a, b = make_items(db, project, ["first", "second"])
    db.commit()
    other_token = caller(app, db, user=lead.user)
    url = f"/api/v1/projects/{project.id}/annotations"
    key = {"Idempotency-Key": "k"}

    created = lead.post(url, json={"annotations": [{"item_id": a.id, "label": "positive"}]},
                        headers=key)
    # The same key through another token labels another item: no 409, no replay.
    elsewhere = other_token.post(
        url, json={"annotations": [{"item_id": b.id, "label": "negative"}]}, headers=key)
    assert created.status_code == 200 and elsewhere.status_code == 200, elsewhere.text
    assert elsewhere.json()["created"] == 1
    # The browser session of that same user: its own scope too.
    browser = login_client(app, db, user=lead.user)
    answer = browser.post(f"/projects/{project.id}/annotate/items/{a.id}/label",
                          data={"label_id": _label_id(db, project.id, "negative"), "key": "k"})
    assert answer.status_code == 200, answer.text
    labels = db.scalars(select(Annotation.idempotency_scope).where(
        Annotation.project_id == project.id).order_by(Annotation.id)).all()
    assert len(labels) == 3 and len(set(labels)) == 3


def _label_id(db: Session, project_id: int, name: str) -> int:
    label_id = db.scalar(select(Label.id).where(Label.project_id == project_id,
                                                Label.name == name))
    assert label_id is not None
    return int(label_id)
