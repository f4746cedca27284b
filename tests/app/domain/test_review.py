"""The review queue and adjudication: a noisy annotator's disagreements and gold misses reach the
queue, adjudication decides what the worker trains on, send-back returns items with a note, and
every decision is in the audit log. Also the reviewer role and versioned guidelines."""

from __future__ import annotations

from collections import Counter
from random import Random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import (
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    ROLE_REVIEWER,
    Annotation,
    AuditEvent,
    GoldItem,
    Item,
    Label,
    LabelIssue,
    OverlapItem,
    Project,
    User,
)
from app.domain import annotation as ann
from app.domain import audit, gold, guidelines, review
from app.domain.annotation import leases
from app.domain.annotation.common import labels_used
from app.domain.projects import (
    LastLead,
    ProjectSettings,
    get_labels,
    set_member_role,
    update_project,
)
from app.errors import InvalidInput, PermissionDenied
from tests.factories import make_items, make_project, make_user
from worker.tasks.project_data import labelled_set, load_snapshot

LEASE = 600


def _world(
    db: Session, n_pool: int, n_gold: int
) -> tuple[Project, User, User, User, list[Item], dict[int, Label], list[Label]]:
    careful, noisy = (make_user(db, role=ROLE_ANNOTATOR) for _ in range(2))
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(
        db, lead=lead, labels=("sports", "finance", "science"), annotators=[careful, noisy]
    )
    project.annotations_per_item = 2  # both annotators label every item: disagreements show
    labels = get_labels(db, project.id)
    items = make_items(db, project, [f"pool text {i}" for i in range(n_pool)])
    truth = {item.id: labels[i % len(labels)] for i, item in enumerate(items)}
    for item in items[:n_gold]:
        gold.mark_gold(db, project, item.id, truth[item.id].name, by=lead)
    return project, lead, careful, noisy, items, truth, labels


def _label_until_done(
    db: Session,
    project: Project,
    people: list[User],
    truth: dict[int, Label],
    labels: list[Label],
    flip: dict[int, float],
    rng: Random,
) -> dict[tuple[int, int], int]:
    """Annotators take turns until nothing is left; returns (annotator, item) -> label id."""
    given: dict[tuple[int, int], int] = {}
    active = list(people)
    while active:
        for person in list(active):
            got = ann.next_item(db, project, person, lease_seconds=LEASE)
            if not isinstance(got, ann.ItemView):
                active.remove(person)
                continue
            answer = truth[got.item_id]
            if rng.random() < flip[person.id]:
                answer = rng.choice([lbl for lbl in labels if lbl.id != answer.id])
            ann.record_label(db, project, person, item_id=got.item_id, label_id=answer.id)
            given[(person.id, got.item_id)] = answer.id
    return given


def _train(db: Session, project: Project) -> dict[int, str]:
    snapshot = load_snapshot(db, project.id, Settings())
    data = labelled_set(db, snapshot, "pool")
    return {
        item_id: snapshot.label_names[y]
        for item_id, y in zip(data.item_ids, data.labels, strict=True)
    }


def test_a_noisy_annotators_mistakes_reach_the_review_queue_and_adjudication_trains(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "_random", Random(16))
    project, lead, careful, noisy, items, truth, labels = _world(db, n_pool=120, n_gold=20)
    gold.update_gold_settings(project, rate=0.3)
    given = _label_until_done(
        db, project, [careful, noisy], truth, labels, {careful.id: 0.0, noisy.id: 0.2}, Random(3)
    )
    gold_ids = {i.id for i in items[:20]}
    noisy_wrong = {
        item for (who, item), lab in given.items() if who == noisy.id and lab != truth[item].id
    }
    assert 10 <= len(noisy_wrong) <= 45  # about 20 % of ~140 hand-outs

    queue = review.review_queue(db, project, limit=200)
    disagreement_ids = {e.item_id for e in queue.disagreements}
    miss_ids = {e.item_id for e in queue.gold_misses}
    # Every disagreement is one of the noisy annotator's mistakes (the careful one is always
    # right), and each of their mistakes on an item both labelled is listed.
    both = {item for (who, item) in given if who == careful.id} & {
        item for (who, item) in given if who == noisy.id
    }
    assert disagreement_ids == (noisy_wrong & both) - gold_ids
    assert disagreement_ids  # the simulation produced some
    assert miss_ids == noisy_wrong & gold_ids
    assert miss_ids
    for entry in queue.gold_misses:
        assert entry.label == truth[entry.item_id].name  # the gold answer, for reviewers only
        assert any(v.label != entry.label for v in entry.votes)  # the miss itself

    used_before = labels_used(db, project.id)
    # Gold answers are not budget; an item counts once, an overlap item once per annotator.
    per_item = Counter(item for (_, item) in given if item not in gold_ids)
    overlap_ids = set(db.scalars(select(OverlapItem.item_id)))
    assert used_before == len(per_item) + sum(
        n - 1 for item, n in per_item.items() if item in overlap_ids
    )
    annotations_before = db.scalar(select(func.count()).select_from(Annotation))

    # Adjudicate: the first item gets a label no annotator chose (proves the override), the
    # others the true label by "change", one by "accept" of its majority.
    reviewer = make_user(db, role=ROLE_ANNOTATOR)
    set_member_role(db, project.id, reviewer, ROLE_REVIEWER, by=lead)
    ordered = sorted(disagreement_ids)
    # Decided items leave the list in SQL: the next page-full appears behind them.
    assert len(ordered) > 4
    page = [e.item_id for e in review.review_queue(db, project, limit=2).disagreements]
    assert page == ordered[:2]
    first = ordered[0]
    for item_id in ordered[1:3]:
        review.decide(db, project, reviewer, item_id=item_id, action="accept")
    page = [e.item_id for e in review.review_queue(db, project, limit=2).disagreements]
    assert page == [ordered[0], ordered[3]]
    chosen = {lab for (who, item), lab in given.items() if item == first}
    unused = next(lbl for lbl in labels if lbl.id not in chosen)
    review.decide(
        db,
        project,
        reviewer,
        item_id=first,
        action="change",
        label_id=unused.id,
        reason="disagreement",
    )
    for item_id in ordered[1:]:
        review.decide(
            db,
            project,
            reviewer,
            item_id=item_id,
            action="change",
            label_id=truth[item_id].id,
            reason="disagreement",
        )

    trained = _train(db, project)
    assert trained[first] == unused.name
    for item_id in ordered[1:]:
        assert trained[item_id] == truth[item_id].name
    assert not set(trained) & gold_ids  # gold answers never train
    # Every individual annotation is kept; the budget did not move.
    assert db.scalar(select(func.count()).select_from(Annotation)) == annotations_before
    assert labels_used(db, project.id) == used_before
    # Decided items left the queue; each decision has its audit row.
    after = review.review_queue(db, project, limit=200)
    assert not {e.item_id for e in after.disagreements} & disagreement_ids
    rows = db.scalars(
        select(AuditEvent).where(
            AuditEvent.project_id == project.id, AuditEvent.action == audit.ADJUDICATE
        )
    ).all()
    audited = sorted(r.item_id for r in rows if r.item_id is not None)
    assert audited == sorted([*ordered, *ordered[1:3]])  # two items were decided twice
    assert all(r.actor_id == reviewer.id for r in rows)
    first_row = next(r for r in rows if r.item_id == first)
    assert first_row.detail["to"] == unused.name and first_row.detail["action"] == "change"

    # The data manager (and its exports) show the label training uses.
    from app.domain import data_manager as dm

    rows = {r.id: r for r in dm.browse(db, project, {}, limit=500).rows}
    assert rows[first].label == unused.name
    assert dm.item_detail(db, project, first).label == unused.name

    # A lead's relabel in the data manager replaces the adjudication.

    dm.relabel(db, project, lead, dm.Target(item_ids=(first,)), truth[first].name)
    assert _train(db, project)[first] == truth[first].name
    relabel = db.scalars(select(AuditEvent).where(AuditEvent.action == audit.RELABEL)).one()
    assert (relabel.item_id, relabel.actor_id) == (first, lead.id)
    assert relabel.detail["label"] == truth[first].name and relabel.detail["items"] == 1


def test_accept_keeps_the_majority_and_send_back_returns_the_item_with_its_note(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "_random", Random(2))
    project, lead, alice, bob, items, truth, labels = _world(db, n_pool=3, n_gold=0)
    gold.update_gold_settings(project, rate=0.0)
    carol = make_user(db, role=ROLE_ANNOTATOR)
    set_member_role(db, project.id, carol, ROLE_ANNOTATOR, by=lead)
    a, b, _ = items
    for person, label in ((alice, labels[0]), (bob, labels[1]), (carol, labels[1])):
        ann.record_label(db, project, person, item_id=a.id, label_id=label.id)
    ann.record_label(db, project, alice, item_id=b.id, label_id=labels[0].id)
    ann.record_label(db, project, bob, item_id=b.id, label_id=labels[2].id)

    queue = review.review_queue(db, project)
    assert [e.item_id for e in queue.disagreements] == [a.id, b.id]
    assert queue.disagreements[0].label == labels[1].name  # majority of 3

    decision = review.decide(db, project, lead, item_id=a.id, action="accept")
    assert decision.label == labels[1].name
    assert _train(db, project)[a.id] == labels[1].name

    # A note is required, and a refused decision writes nothing.
    with pytest.raises(InvalidInput):
        review.decide(db, project, lead, item_id=b.id, action="send_back", note="  ")
    with pytest.raises(InvalidInput):
        review.decide(db, project, lead, item_id=b.id, action="change", label_id=999_999)
    with pytest.raises(InvalidInput):
        review.decide(db, project, lead, item_id=b.id, action="delete")
    assert (
        db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action.like("review.%"))
        )
        == 1
    )

    note = "Finance news about a sports club is <b>finance</b>; see the guidelines."
    review.decide(db, project, lead, item_id=b.id, action="send_back", note=note)
    kept = db.scalars(select(Annotation).where(Annotation.item_id == b.id)).all()
    assert len(kept) == 2 and all(k.deleted for k in kept)  # kept, out of play
    assert b.id not in _train(db, project)
    # It goes back to annotators first (both who labelled it included), with the note.
    for person in (alice, bob):
        got = ann.next_item(db, project, person, lease_seconds=LEASE)
        assert isinstance(got, ann.ItemView)
        assert got.item_id == b.id and got.review_note == note
    ann.record_label(db, project, alice, item_id=b.id, label_id=labels[1].id)
    ann.record_label(db, project, bob, item_id=b.id, label_id=labels[1].id)
    assert _train(db, project)[b.id] == labels[1].name
    sent = db.scalars(select(AuditEvent).where(AuditEvent.action == audit.SEND_BACK)).one()
    assert sent.item_id == b.id and sent.detail["note"] == note
    assert sent.detail["annotations_returned"] == 2


def test_gold_misses_a_reviewer_may_not_change_the_answer_a_lead_may(db: Session) -> None:
    project, lead, alice, bob, items, truth, labels = _world(db, n_pool=2, n_gold=1)
    g = items[0]
    wrong = next(lbl for lbl in labels if lbl.id != truth[g.id].id)
    ann.record_label(db, project, alice, item_id=g.id, label_id=wrong.id)
    ann.record_label(db, project, bob, item_id=g.id, label_id=truth[g.id].id)
    queue = review.review_queue(db, project)
    assert [e.item_id for e in queue.gold_misses] == [g.id]
    assert queue.disagreements == []  # gold items are reviewed as gold misses only
    reviewer = make_user(db, role=ROLE_ANNOTATOR)
    set_member_role(db, project.id, reviewer, ROLE_REVIEWER, by=lead)
    with pytest.raises(PermissionDenied):
        review.decide(db, project, reviewer, item_id=g.id, action="change", label_id=wrong.id)
    review.decide(
        db, project, lead, item_id=g.id, action="change", label_id=wrong.id, may_change_gold=True
    )
    assert db.scalar(select(GoldItem.label_id).where(GoldItem.item_id == g.id)) == wrong.id
    actions = set(db.scalars(select(AuditEvent.action).where(AuditEvent.item_id == g.id)))
    assert {audit.GOLD_SET, audit.ADJUDICATE} <= actions


def test_likely_errors_come_from_the_stored_label_issues_ranked_by_score(db: Session) -> None:
    project, lead, alice, _, items, truth, labels = _world(db, n_pool=4, n_gold=0)
    for item in items:
        ann.record_label(db, project, alice, item_id=item.id, label_id=labels[0].id)
    for item, score, flagged in zip(
        items, (0.4, 0.9, 0.7, 0.95), (True, True, True, False), strict=True
    ):
        db.add(
            LabelIssue(
                project_id=project.id,
                item_id=item.id,
                given_label_id=labels[0].id,
                suggested_label_id=labels[1].id,
                score=score,
                flagged=flagged,
            )
        )
    db.flush()
    queue = review.review_queue(db, project)
    assert [e.item_id for e in queue.likely_errors] == [items[1].id, items[2].id, items[0].id]
    assert queue.likely_errors[0].suggested == labels[1].name
    review.decide(
        db,
        project,
        lead,
        item_id=items[1].id,
        action="change",
        label_id=labels[1].id,
        reason="likely_error",
    )
    queue = review.review_queue(db, project)
    assert [e.item_id for e in queue.likely_errors] == [items[2].id, items[0].id]
    assert _train(db, project)[items[1].id] == labels[1].name


def test_reviewer_is_a_project_role_and_the_last_lead_rule_still_holds(db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    membership = set_member_role(db, project.id, annotator, ROLE_REVIEWER, by=lead)
    assert membership.role == ROLE_REVIEWER
    with pytest.raises(LastLead):
        set_member_role(db, project.id, lead, ROLE_REVIEWER, by=lead)
    with pytest.raises(InvalidInput):
        set_member_role(db, project.id, annotator, "owner", by=lead)
    roles = db.scalars(
        select(AuditEvent).where(
            AuditEvent.project_id == project.id, AuditEvent.action == audit.ROLE_SET
        )
    ).all()
    assert [(r.detail["to"], r.actor_id) for r in roles] == [(ROLE_REVIEWER, lead.id)]


def test_editing_guidelines_creates_version_2_and_labels_record_their_version(db: Session) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    project = make_project(db, lead=lead, annotators=[annotator])
    first, second = make_items(db, project, ["one", "two"])
    label = get_labels(db, project.id)[0]
    ann.record_label(db, project, annotator, item_id=first.id, label_id=label.id)

    settings = ProjectSettings(
        name=project.name, labels=("positive", "negative"), guidelines="Sarcasm counts as negative."
    )
    update_project(db, project, settings, by=lead)
    update_project(db, project, settings, by=lead)  # the same text: no new version
    assert project.guidelines_version == 2
    ann.record_label(db, project, annotator, item_id=second.id, label_id=label.id)
    versions = {
        a.item_id: a.guideline_version
        for a in db.scalars(select(Annotation).where(Annotation.project_id == project.id))
    }
    assert versions == {first.id: 1, second.id: 2}
    history = guidelines.guideline_history(db, project)
    assert [(v.version, v.text, v.current) for v in history] == [
        (2, "Sarcasm counts as negative.", True),
        (1, "", False),
    ]
    assert history[0].author == lead.email
    edits = db.scalars(select(AuditEvent).where(AuditEvent.action == audit.GUIDELINES)).all()
    assert [e.detail["version"] for e in edits] == [2]


# --------------------------------------------------------------------------- multi-label


def _set_world(db: Session) -> tuple[Project, User, User, User, list[Item], dict[str, int]]:
    from app.db.models import TASK_MULTI_LABEL

    lead = make_user(db, role=ROLE_LEAD)
    alice = make_user(db, role=ROLE_ANNOTATOR, name="Alice")
    bob = make_user(db, role=ROLE_ANNOTATOR, name="Bob")
    project = make_project(db, lead=lead, labels=("billing", "bug", "feature"),
                           annotators=[alice, bob], task_type=TASK_MULTI_LABEL)
    ids = {label.name: label.id for label in get_labels(db, project.id)}
    items = make_items(db, project, [f"ticket {i}" for i in range(4)])
    return project, lead, alice, bob, items, ids


def _trained_sets(db: Session, project: Project) -> dict[int, list[int]]:
    from worker.tasks.project_data import labelled_sets

    snapshot = load_snapshot(db, project.id, Settings())
    found = labelled_sets(db, snapshot, "pool")
    index = snapshot.label_ids
    return {item_id: [index[i] for i in chosen]
            for item_id, chosen in zip(found.item_ids, found.sets, strict=True)}


def test_a_reviewer_changes_a_disagreement_to_a_set_and_training_uses_it(db: Session) -> None:
    from app.db.models import ReviewDecisionLabel
    from app.domain import data_manager as dm

    project, lead, alice, bob, items, ids = _set_world(db)
    a, b, untouched, _ = items
    ann.record_label(db, project, alice, item_id=a.id, label_ids=[ids["billing"]])
    ann.record_label(db, project, bob, item_id=a.id, label_ids=[ids["bug"]])
    ann.record_label(db, project, alice, item_id=b.id, label_ids=[ids["bug"], ids["feature"]])
    ann.record_label(db, project, bob, item_id=b.id, label_ids=[ids["bug"]])
    queue = review.review_queue(db, project)
    entry = next(e for e in queue.disagreements if e.item_id == a.id)
    assert entry.label == "bug" and entry.label_ids == (ids["bug"],)  # tie: the latest set

    decision = review.decide(db, project, lead, item_id=a.id, action="change",
                             label_ids=[ids["feature"], ids["billing"]], reason="disagreement")
    assert (decision.label, decision.labels) == ("billing, feature", ("billing", "feature"))
    stored = set(db.scalars(select(ReviewDecisionLabel.label_id)
                            .where(ReviewDecisionLabel.decision_id == decision.id)))
    assert stored == {ids["billing"], ids["feature"]}
    # An empty set is an answer too: none of these.
    none = review.decide(db, project, lead, item_id=b.id, action="change", label_ids=[])
    assert (none.label, none.labels) == ("none of these", ())
    assert review.adjudicated_sets(db, project.id) == {
        a.id: [ids["billing"], ids["feature"]], b.id: []}
    assert _trained_sets(db, project) == {a.id: [ids["billing"], ids["feature"]], b.id: []}
    assert untouched.id not in _trained_sets(db, project)
    assert [e.item_id for e in review.review_queue(db, project).disagreements] == []
    assert dm.item_detail(db, project, a.id).label == "billing, feature"
    recent = review.recent_decisions(db, project)
    assert [(r.item_id, r.label) for r in recent] == [
        (b.id, "none of these"), (a.id, "billing, feature")]
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == audit.ADJUDICATE,
                                                AuditEvent.item_id == a.id)).one()
    assert (event.detail["from"], event.detail["to"]) == (["bug"], ["billing", "feature"])

    # Accept keeps the majority set; a newer annotation reopens, a lead relabel clears it.
    ann.record_label(db, project, alice, item_id=untouched.id, label_ids=[ids["bug"]])
    accepted = review.decide(db, project, lead, item_id=untouched.id, action="accept")
    assert accepted.labels == ("bug",)
    dm.relabel_set(db, project, lead, dm.Target(item_ids=(a.id,)), label_ids=[ids["bug"]])
    assert a.id not in review.adjudicated_sets(db, project.id)
    assert _trained_sets(db, project)[a.id] == [ids["bug"]]


def test_multi_label_decisions_check_everything_before_writing(db: Session) -> None:
    from app.db.models import ReviewDecision

    project, lead, alice, _, items, ids = _set_world(db)
    ann.record_label(db, project, alice, item_id=items[0].id, label_ids=[ids["bug"]])
    other = make_project(db, labels=("billing", "bug"), task_type="multi_label")
    foreign = get_labels(db, other.id)[1].id
    with pytest.raises(InvalidInput, match="is not one of this project's labels"):
        review.decide(db, project, lead, item_id=items[0].id, action="change",
                      label_ids=[ids["bug"], foreign])
    with pytest.raises(InvalidInput, match="This project is multi-label: send label_ids"):
        review.decide(db, project, lead, item_id=items[0].id, action="change",
                      label_id=ids["bug"])
    with pytest.raises(InvalidInput, match="has no label set to accept"):
        review.decide(db, project, lead, item_id=items[1].id, action="accept")
    assert db.scalar(select(func.count()).select_from(ReviewDecision)) == 0
    assert db.scalar(select(func.count()).select_from(AuditEvent)
                     .where(AuditEvent.action == audit.ADJUDICATE)) == 0
    # A single-label project refuses a set.
    single, single_lead, *_ = _world(db, n_pool=1, n_gold=0)
    item = db.scalars(select(Item).where(Item.project_id == single.id)).first()
    assert item is not None
    with pytest.raises(InvalidInput, match="single-label: send one label_id"):
        review.decide(db, single, single_lead, item_id=item.id, action="change", label_ids=[1])


def test_multi_label_gold_misses_send_back_and_a_lead_changes_the_gold_set(db: Session) -> None:
    project, lead, alice, bob, items, ids = _set_world(db)
    g = items[0]
    gold.mark_gold(db, project, g.id, ["billing", "bug"], by=lead)
    ann.record_label(db, project, alice, item_id=g.id, label_ids=[ids["bug"], ids["billing"]])
    ann.record_label(db, project, bob, item_id=g.id, label_ids=[ids["bug"]])
    (miss,) = review.review_queue(db, project).gold_misses
    assert (miss.item_id, miss.label, miss.label_ids) == (
        g.id, "billing, bug", (ids["billing"], ids["bug"]))
    assert [v.label for v in miss.votes] == ["billing, bug", "bug"]
    # A send-back returns only the set that is not exactly the gold set.
    sent = review.decide(db, project, lead, item_id=g.id, action="send_back", note="re-read")
    assert sent.labels is None
    live_sets = {a: s for a, s in db.execute(
        select(Annotation.annotator_id, Annotation.deleted).where(Annotation.item_id == g.id))}
    assert live_sets == {alice.id: False, bob.id: True}
    assert review.review_queue(db, project).gold_misses == []
    ann.record_label(db, project, bob, item_id=g.id, label_ids=[ids["feature"]])
    assert [e.item_id for e in review.review_queue(db, project).gold_misses] == [g.id]
    # Only a lead changes the gold set; the change replaces it.
    reviewer = make_user(db, role=ROLE_ANNOTATOR)
    set_member_role(db, project.id, reviewer, ROLE_REVIEWER, by=lead)
    with pytest.raises(PermissionDenied):
        review.decide(db, project, reviewer, item_id=g.id, action="change",
                      label_ids=[ids["feature"]])
    assert gold.gold_set_of_item(db, project, g.id) == [ids["billing"], ids["bug"]]
    review.decide(db, project, reviewer, item_id=g.id, action="accept")  # keeps the gold set
    review.decide(db, project, lead, item_id=g.id, action="change", label_ids=[ids["feature"]],
                  may_change_gold=True)
    assert gold.gold_set_of_item(db, project, g.id) == [ids["feature"]]
    actions = set(db.scalars(select(AuditEvent.action).where(AuditEvent.item_id == g.id)))
    assert {audit.GOLD_SET, audit.ADJUDICATE, audit.SEND_BACK} <= actions
    assert g.id not in _trained_sets(db, project)  # gold never trains


@pytest.mark.parametrize("task_type", ["single_label", "multi_label"])
def test_a_label_a_reviewer_decided_on_cannot_be_removed(db: Session, task_type: str) -> None:
    from app.domain.projects import set_labels
    from app.errors import Conflict

    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead, labels=("sports", "finance", "science"),
                           task_type=task_type)
    ids = {label.name: label.id for label in get_labels(db, project.id)}
    (item,) = make_items(db, project, ["a text nobody labelled science"])
    if task_type == "single_label":
        review.decide(db, project, lead, item_id=item.id, action="change",
                      label_id=ids["science"])
    else:
        review.decide(db, project, lead, item_id=item.id, action="change",
                      label_ids=[ids["finance"], ids["science"]])
    with pytest.raises(Conflict, match="'science' is what a reviewer decided for 1 items"):
        set_labels(db, project.id, ["sports", "finance"])
    assert review.adjudicated_names(db, project.id, [item.id])  # the decision is intact
    set_labels(db, project.id, ["finance", "science"])  # an unused label still goes
