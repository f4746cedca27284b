"""The review queue over HTTP: who may open it (reviewers, leads; not annotators; not another
project's reviewer), what an annotator may not see (gold answers, teammates' labels before
they label), decisions through the page and the API, the audit log and the guideline history."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, ROLE_REVIEWER, Annotation, AuditEvent
from app.domain import annotation as ann
from app.domain import gold
from app.domain.projects import get_labels
from tests.factories import add_member, login_client, make_items, make_project, make_user

EVIL = '<script>alert("x")</script> & <b>bold</b>'


def _world(app: FastAPI, db: Session) -> dict[str, Any]:
    alice = make_user(db, role=ROLE_ANNOTATOR)
    bob = make_user(db, role=ROLE_ANNOTATOR)
    reviewer = make_user(db, role=ROLE_ANNOTATOR)  # a global annotator may review a project
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(
        db, lead=lead, labels=("sports", "finance", "science"), annotators=[alice, bob]
    )
    project.annotations_per_item = 2
    project.gold_rate = 0.0
    add_member(db, project, reviewer, ROLE_REVIEWER)
    labels = {lbl.name: lbl for lbl in get_labels(db, project.id)}
    disputed, golden, fresh = make_items(
        db, project, [f"disputed {EVIL}", "a gold text", "nobody labelled this yet"]
    )
    gold.mark_gold(db, project, golden.id, "science", by=lead)
    ann.record_label(db, project, alice, item_id=disputed.id, label_id=labels["sports"].id)
    ann.record_label(db, project, bob, item_id=disputed.id, label_id=labels["finance"].id)
    ann.record_label(db, project, alice, item_id=golden.id, label_id=labels["sports"].id)
    ann.record_label(db, project, alice, item_id=fresh.id, label_id=labels["finance"].id)
    db.commit()
    return {
        "project": project,
        "labels": labels,
        "disputed": disputed,
        "golden": golden,
        "fresh": fresh,
        "alice": login_client(app, user=alice),
        "bob": login_client(app, user=bob),
        "reviewer": login_client(app, user=reviewer),
        "lead": login_client(app, user=lead),
    }


def test_a_reviewer_sees_the_queue_with_user_text_escaped(app: FastAPI, db: Session) -> None:
    w = _world(app, db)
    pid = w["project"].id
    page = w["reviewer"].get(f"/projects/{pid}/review")
    assert page.status_code == 200
    assert f'data-item-id="{w["disputed"].id}" data-reason="disagreement"' in page.text
    assert f'data-item-id="{w["golden"].id}" data-reason="gold_miss"' in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text
    assert f'href="/projects/{pid}/review"' in page.text  # the tab
    listed = w["reviewer"].get(f"/api/v1/projects/{pid}/review").json()
    assert [e["item_id"] for e in listed["disagreements"]] == [w["disputed"].id]
    assert listed["disagreements"][0]["text"].endswith(EVIL)  # JSON carries the raw text
    assert [e["label"] for e in listed["gold_misses"]] == ["science"]
    # The reviewer's tabs stop there: lead pages stay closed.
    assert w["reviewer"].get(f"/projects/{pid}/audit").status_code == 403
    assert w["reviewer"].get(f"/api/v1/projects/{pid}/gold").status_code == 403


def test_an_annotator_cannot_open_the_review_queue_nor_decide(app: FastAPI, db: Session) -> None:
    w = _world(app, db)
    pid, item = w["project"].id, w["disputed"].id
    page = w["alice"].get(f"/projects/{pid}/review")
    assert page.status_code == 403 and "text/html" in page.headers["content-type"]
    assert w["alice"].get(f"/api/v1/projects/{pid}/review").status_code == 403
    assert (
        w["alice"]
        .post(f"/api/v1/projects/{pid}/review/items/{item}", json={"action": "accept"})
        .status_code
        == 403
    )
    assert (
        w["alice"]
        .post(f"/projects/{pid}/review/items/{item}", data={"action": "accept"})
        .status_code
        == 403
    )
    tabs = w["alice"].get(f"/projects/{pid}/annotate").text
    assert f'href="/projects/{pid}/review"' not in tabs
    assert db.scalar(select(AuditEvent.id).where(AuditEvent.action.like("review.%"))) is None


def test_a_reviewer_of_another_project_gets_404(app: FastAPI, db: Session) -> None:
    w = _world(app, db)
    other_reviewer = make_user(db, role=ROLE_ANNOTATOR)
    other = make_project(db)
    add_member(db, other, other_reviewer, ROLE_REVIEWER)
    db.commit()
    client = login_client(app, user=other_reviewer)
    pid = w["project"].id
    assert client.get(f"/projects/{pid}/review").status_code == 404
    assert client.get(f"/api/v1/projects/{pid}/review").status_code == 404
    answer = client.post(
        f"/api/v1/projects/{pid}/review/items/{w['disputed'].id}", json={"action": "accept"}
    )
    assert answer.status_code == 404
    assert client.get(f"/projects/{other.id}/review").status_code == 200


def test_an_annotator_sees_no_gold_answer_and_no_teammates_label(app: FastAPI, db: Session) -> None:
    w = _world(app, db)
    pid = w["project"].id
    bob = w["bob"]
    # The API lists only bob's own labels; alice's on the item bob is about to label are hidden.
    own = bob.get(f"/api/v1/projects/{pid}/annotations").json()["annotations"]
    assert {a["annotator"] for a in own} <= {bob.user.email}
    assert w["fresh"].id not in {a["item_id"] for a in own}
    by_item = bob.get(
        f"/api/v1/projects/{pid}/annotations", params={"item_id": w["fresh"].id}
    ).json()["annotations"]
    assert by_item == []
    exported = bob.get(f"/api/v1/projects/{pid}/annotations/export").text
    assert w["alice"].user.email not in exported
    # The item card for the item alice labelled shows no label of hers.
    page = bob.get(f"/projects/{pid}/annotate")
    assert w["fresh"].text in page.text
    assert w["alice"].user.email not in page.text and "was-chosen" not in page.text
    # Gold answers stay with reviewers and leads.
    for path in (
        f"/api/v1/projects/{pid}/gold",
        f"/projects/{pid}/gold",
        f"/api/v1/projects/{pid}/review",
    ):
        assert bob.get(path).status_code == 403, path
    # A lead sees every label.
    everything = w["lead"].get(f"/api/v1/projects/{pid}/annotations").json()["annotations"]
    assert len(everything) == 4


def test_decisions_through_page_and_api_write_the_audit_log(app: FastAPI, db: Session) -> None:
    w = _world(app, db)
    pid, item = w["project"].id, w["disputed"].id
    science = w["labels"]["science"].id
    reply = w["reviewer"].post(
        f"/projects/{pid}/review/items/{item}",
        data={"action": "change", "label_id": str(science), "reason": "disagreement"},
    )
    assert reply.status_code == 200 and f"Item {item} relabelled as science." in reply.text
    bad = w["reviewer"].post(
        f"/api/v1/projects/{pid}/review/items/{w['fresh'].id}",
        json={"action": "send_back", "note": ""},
    )
    assert bad.status_code == 422
    sent = w["reviewer"].post(
        f"/api/v1/projects/{pid}/review/items/{w['fresh'].id}",
        json={"action": "send_back", "note": f"re-read {EVIL}"},
    )
    assert sent.status_code == 200 and sent.json()["action"] == "send_back"
    foreign = make_items(db, make_project(db), ["elsewhere"])[0]
    db.commit()
    assert (
        w["reviewer"]
        .post(f"/api/v1/projects/{pid}/review/items/{foreign.id}", json={"action": "accept"})
        .status_code
        == 404
    )

    log = w["lead"].get(f"/api/v1/projects/{pid}/audit", params={"limit": 1}).json()
    assert [(e["action"], e["item_id"]) for e in log["events"]] == [
        ("review.send_back", w["fresh"].id)
    ]
    older = (
        w["lead"]
        .get(f"/api/v1/projects/{pid}/audit", params={"before": log["next_before"], "limit": 1})
        .json()
    )
    assert [(e["action"], e["item_id"]) for e in older["events"]] == [("review.adjudicate", item)]
    assert older["events"][0]["detail"]["to"] == "science"
    assert older["events"][0]["actor"] == w["reviewer"].user.email
    page = w["lead"].get(f"/projects/{pid}/audit")
    assert page.status_code == 200 and "review.adjudicate" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    # The note reaches API annotators with the item, and the item card, escaped.
    leased = w["alice"].post(f"/api/v1/projects/{pid}/queue/lease", json={"n": 1}).json()
    assert [(i["item_id"], i["review_note"]) for i in leased["items"]] == [
        (w["fresh"].id, f"re-read {EVIL}")
    ]
    w["alice"].post(f"/api/v1/projects/{pid}/queue/release", json={"item_ids": [w["fresh"].id]})
    card = w["bob"].get(f"/projects/{pid}/annotate").text
    assert "data-review-note" in card and "&lt;script&gt;alert" in card
    assert "<script>alert" not in card
    # why it is there: sent back, not a random pick (this project has no queue)
    assert "sent back</span>" in card and "random pick" not in card
    assert "A reviewer sent it back for another look" in card
    kept = db.scalars(select(Annotation).where(Annotation.item_id == w["fresh"].id)).all()
    assert len(kept) == 1 and kept[0].deleted


def test_guideline_history_and_roles_through_the_settings_pages(app: FastAPI, db: Session) -> None:
    w = _world(app, db)
    pid = w["project"].id
    lead = w["lead"]
    newcomer = make_user(db, role=ROLE_ANNOTATOR)
    db.commit()
    added = lead.post(
        f"/projects/{pid}/members", data={"email": newcomer.email, "role": "reviewer"}
    )
    assert added.status_code == 200 and "is now a reviewer" in added.text
    settings_page = lead.get(f"/projects/{pid}/settings").text
    assert '<option value="reviewer"' in settings_page
    assert "Version 1;" in settings_page
    patched = lead.patch(f"/api/v1/projects/{pid}", json={"guidelines": f"Rule 2 {EVIL}"})
    assert patched.status_code == 200, patched.text
    versions = lead.get(f"/api/v1/projects/{pid}/guidelines").json()
    assert [(v["version"], v["current"]) for v in versions] == [(2, True), (1, False)]
    page = lead.get(f"/projects/{pid}/guidelines")
    assert page.status_code == 200 and "Version 2" in page.text and "&lt;script&gt;" in page.text
    assert w["reviewer"].get(f"/projects/{pid}/guidelines").status_code == 403
    actions = [e["action"] for e in lead.get(f"/api/v1/projects/{pid}/audit").json()["events"]]
    assert actions[:2] == ["guidelines.edit", "member.role"]


def test_every_label_has_its_annotation_key_in_the_review_queue(app: FastAPI, db: Session) -> None:
    """A dozen labels (the playbook's case): keys 1-9, then 0, q, w, ... as when annotating, not
    only the first nine."""
    first, second = make_user(db, role=ROLE_ANNOTATOR), make_user(db, role=ROLE_ANNOTATOR)
    lead = make_user(db, role=ROLE_LEAD)
    names = tuple(f"class{n:02d}" for n in range(12))
    project = make_project(db, lead=lead, labels=names, annotators=[first, second])
    project.annotations_per_item = 2
    labels = {lbl.name: lbl for lbl in get_labels(db, project.id)}
    (item,) = make_items(db, project, ["disputed between the last two classes"])
    ann.record_label(db, project, first, item_id=item.id, label_id=labels["class10"].id)
    ann.record_label(db, project, second, item_id=item.id, label_id=labels["class11"].id)
    db.commit()
    page = login_client(app, user=lead).get(f"/projects/{project.id}/review").text
    keys = ann.label_keys(get_labels(db, project.id))
    assert len(keys) == 12
    for key, label_id in keys.items():
        assert f'value="{label_id}" class="small" data-key="{key}"' in page, key
