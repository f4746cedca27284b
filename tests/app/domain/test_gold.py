"""Gold items: interleaving, accuracy with a Wilson interval, the flag, budget and training."""

from __future__ import annotations

from random import Random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import (
    ROLE_ANNOTATOR,
    SPLIT_DEV,
    Annotation,
    Item,
    Label,
    OverlapItem,
    Project,
    User,
)
from app.domain import annotation as ann
from app.domain import gold
from app.domain.annotation import leases
from app.domain.annotation.common import labels_used
from app.domain.projects import get_labels
from app.errors import InvalidInput, NotFound
from tests.factories import make_items, make_project, make_user
from worker.tasks.project_data import labelled_set, load_snapshot, queueable_items

LEASE = 600


def test_wilson_interval_matches_textbook_values() -> None:
    # 8 of 10: Wilson 95 % interval (0.490, 0.943) (Newcombe 1998, method 3).
    low, high = gold.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)
    assert gold.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = gold.wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-3)
    with pytest.raises(ValueError):
        gold.wilson_interval(11, 10)


def _world(db: Session, n_pool: int, n_gold: int) -> tuple[Project, list[User], list[Item],
                                                            dict[int, Label], list[Label]]:
    people = [make_user(db, role=ROLE_ANNOTATOR) for _ in range(2)]
    project = make_project(db, labels=("sports", "finance", "science"), annotators=people)
    labels = get_labels(db, project.id)
    items = make_items(db, project, [f"pool text {i}" for i in range(n_pool)])
    truth = {item.id: labels[i % len(labels)] for i, item in enumerate(items)}
    for item in items[:n_gold]:
        gold.mark_gold(db, project, item.id, truth[item.id].name, by=None)
    return project, people, items, truth, labels


def _label_until_done(db: Session, project: Project, people: list[User],
                      truth: dict[int, Label], labels: list[Label],
                      flip: dict[int, float], rng: Random) -> dict[int, int]:
    """Both annotators take turns until nothing is left; returns hand-outs per annotator."""
    handed = {p.id: 0 for p in people}
    active = list(people)
    while active:
        for person in list(active):
            got = ann.next_item(db, project, person, lease_seconds=LEASE)
            if not isinstance(got, ann.ItemView):
                active.remove(person)
                continue
            handed[person.id] += 1
            right = truth[got.item_id]
            answer = right
            if rng.random() < flip[person.id]:
                answer = rng.choice([lbl for lbl in labels if lbl.id != right.id])
            ann.record_label(db, project, person, item_id=got.item_id, label_id=answer.id)
    return handed


def test_noisy_annotator_is_flagged_by_gold_and_the_careful_one_is_not(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "_random", Random(16))
    project, (careful, noisy), items, truth, labels = _world(db, n_pool=400, n_gold=60)
    gold.update_gold_settings(project, rate=0.3, min_accuracy=0.9, min_count=20)
    handed = _label_until_done(db, project, [careful, noisy], truth, labels,
                               {careful.id: 0.0, noisy.id: 0.2}, Random(3))

    report = gold.gold_report(db, project)
    by_user = {a.user_id: a for a in report.annotators}
    assert report.gold_items == 60
    # Gold is interleaved: each annotator saw many, but not all hand-outs were gold.
    for person in (careful, noisy):
        seen = by_user[person.id].total
        assert 20 <= seen <= 60
        assert seen < handed[person.id] / 2
    assert by_user[careful.id].correct == by_user[careful.id].total
    assert not by_user[careful.id].flagged
    noisy_row = by_user[noisy.id]
    assert noisy_row.flagged
    assert noisy_row.accuracy is not None and noisy_row.accuracy < 0.9
    assert noisy_row.low <= 0.8 <= noisy_row.high  # the interval covers the true 80 %
    assert [a.user_id for a in report.flagged] == [noisy.id]

    # Every non-gold pool item was labelled: overlap items (issue 16, 10 % by default) by both
    # annotators, the others by one. The budget counts every human label, gold answers left out.
    overlap_ids = set(db.scalars(select(OverlapItem.item_id)))
    assert 0.08 * 340 <= len(overlap_ids) <= 0.1 * 340 + 1
    assert labels_used(db, project.id) == 400 - 60 + len(overlap_ids)


def test_default_rate_is_five_percent_and_zero_disables_gold(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "_random", Random(5))
    project, (alice, _), items, truth, labels = _world(db, n_pool=30, n_gold=10)
    assert project.gold_rate == pytest.approx(0.05)
    assert project.gold_min_accuracy == pytest.approx(0.8)
    gold.update_gold_settings(project, rate=0.0)
    gold_ids = {i.id for i in items[:10]}
    for _ in range(20):
        got = ann.next_item(db, project, alice, lease_seconds=LEASE)
        assert isinstance(got, ann.ItemView)
        assert got.item_id not in gold_ids
        ann.record_label(db, project, alice, item_id=got.item_id, label_id=labels[0].id)
    got = ann.next_item(db, project, alice, lease_seconds=LEASE)
    assert isinstance(got, ann.NoItem)  # only gold is left, and gold is off
    with pytest.raises(InvalidInput):
        gold.update_gold_settings(project, rate=0.9)


def test_gold_answers_ignore_the_budget_and_never_train(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "_random", Random(1))
    project, (alice, bob), items, truth, labels = _world(db, n_pool=12, n_gold=4)
    project.label_budget = 3
    gold.update_gold_settings(project, rate=0.5)
    gold_ids = {i.id for i in items[:4]}
    handed_gold = 0
    while True:
        got = ann.next_item(db, project, alice, lease_seconds=LEASE)
        if not isinstance(got, ann.ItemView):
            assert got.code == "budget_spent"
            break
        handed_gold += got.item_id in gold_ids
        ann.record_label(db, project, alice, item_id=got.item_id, label_id=truth[got.item_id].id)
    assert handed_gold >= 1  # gold answers did not use up the budget of 3
    assert labels_used(db, project.id) == 3

    snapshot = load_snapshot(db, project.id, Settings())
    train = labelled_set(db, snapshot, "pool")
    assert len(train) == 3
    assert not set(train.item_ids) & gold_ids
    queued, _ = queueable_items(db, snapshot)
    assert not set(queued) & gold_ids


def test_marking_gold_is_scoped_and_checked(db: Session) -> None:
    project, _, items, _, labels = _world(db, n_pool=3, n_gold=0)
    other = make_project(db, labels=("a", "b"))
    foreign = make_items(db, other, ["elsewhere"])[0]
    with pytest.raises(NotFound):
        gold.mark_gold(db, project, foreign.id, "sports", by=None)
    with pytest.raises(InvalidInput):
        gold.mark_gold(db, project, items[0].id, "no such label", by=None)
    dev = make_items(db, project, ["a dev text"], split=SPLIT_DEV)[0]
    with pytest.raises(InvalidInput):
        gold.mark_gold(db, project, dev.id, "sports", by=None)
    gold.mark_gold(db, project, items[0].id, "sports", by=None)
    gold.mark_gold(db, project, items[0].id, labels[1].id, by=None)  # changes the answer
    rows = gold.gold_items(db, project)
    assert [(r.item_id, r.label) for r in rows] == [(items[0].id, labels[1].name)]
    assert gold.unmark_gold(db, project, items[0].id)
    assert not gold.unmark_gold(db, project, items[0].id)
    assert gold.gold_items(db, project) == []


def _import(db: Session, project: Project, data: str, **mapping: str) -> object:
    import io

    from app.domain.imports import ColumnMapping, ImportOptions, import_items

    options = ImportOptions(format="csv", mapping=ColumnMapping(**mapping))
    return import_items(db, project=project, user=make_user(db), source=io.BytesIO(data.encode()),
                        options=options)


def test_a_gold_column_imports_gold_items_without_seed_labels(db: Session) -> None:
    from sqlalchemy import func, select

    from app.db.models import Annotation, GoldItem
    from app.errors import ImportRejected

    project = make_project(db, labels=("sports", "finance"))
    data = "text,label,gold\nfirst,sports,\nsecond,,finance\nthird,sports,sports\n"
    report = _import(db, project, data, text="text", label="label", gold="gold")
    assert report.gold == 2 and report.annotations == 1
    golds = {g.item_id: g.label_id for g in db.scalars(select(GoldItem))}
    texts = {i.id: i.text for i in db.scalars(select(Item).where(Item.project_id == project.id))}
    names = {lbl.id: lbl.name for lbl in get_labels(db, project.id)}
    assert {texts[i]: names[label] for i, label in golds.items()} == {
        "second": "finance", "third": "sports"}
    assert db.scalar(select(func.count()).select_from(Annotation)) == 1  # "first" only
    assert labels_used(db, project.id) == 1

    # Re-importing a row already in the project changes its answer.
    _import(db, project, "text,gold\nsecond,sports\n", text="text", gold="gold")
    assert {texts[g.item_id]: names[g.label_id] for g in db.scalars(select(GoldItem))}[
        "second"] == "sports"

    # Bad answers and gold rows outside the pool are refused with their line; nothing is written.
    with pytest.raises(ImportRejected) as caught:
        _import(db, project, "text,label,split,gold\nfourth,sports,dev,sports\nfifth,,,nope\n",
                text="text", label="label", split="split", gold="gold")
    messages = [e["message"] for e in caught.value.details["errors"]]
    assert any("only pool rows can be gold" in m for m in messages)
    assert any("'nope'" in m for m in messages)


# --------------------------------------------------------------------------- multi-label gold


def _set_world(db: Session) -> tuple[Project, list[User], list[Item], dict[str, int]]:
    from app.db.models import TASK_MULTI_LABEL

    people = [make_user(db, role=ROLE_ANNOTATOR, name=name) for name in ("Ana", "Ben")]
    project = make_project(db, labels=("billing", "bug", "feature"), annotators=people,
                           task_type=TASK_MULTI_LABEL)
    ids = {label.name: label.id for label in get_labels(db, project.id)}
    items = make_items(db, project, [f"ticket {i}" for i in range(4)])
    return project, people, items, ids


def test_jaccard_is_partial_credit_and_two_empty_sets_agree() -> None:
    assert gold.jaccard({1, 2}, {1, 2}) == 1.0
    assert gold.jaccard({1}, {1, 2}) == 0.5
    assert gold.jaccard({1, 2, 3}, {2, 3, 4}) == pytest.approx(0.5)
    assert gold.jaccard(set(), set()) == 1.0
    assert gold.jaccard({1}, set()) == 0.0


def test_a_multi_label_gold_answer_is_a_set_and_sets_are_scored_exactly_and_by_jaccard(
    db: Session,
) -> None:
    from app.db.models import AuditEvent

    project, (ana, ben), items, ids = _set_world(db)
    both, one, empty, _ = items
    gold.mark_gold(db, project, both.id, ["bug", "billing"], by=None)  # names, any order
    gold.mark_gold(db, project, one.id, [ids["feature"]], by=None)  # ids
    gold.mark_gold(db, project, empty.id, [], by=None)  # none of these
    rows = {r.item_id: r for r in gold.gold_items(db, project)}
    assert {i: (r.label, r.labels) for i, r in rows.items()} == {
        both.id: ("billing, bug", ("billing", "bug")),
        one.id: ("feature", ("feature",)),
        empty.id: ("none of these", ()),
    }
    # Ana: exact, exact, exact. Ben: partial (1 of 2), wrong (disjoint), a label on "none".
    answers = {ana: ([ids["billing"], ids["bug"]], [ids["feature"]], []),
               ben: ([ids["bug"]], [ids["billing"]], [ids["bug"]])}
    for person, sets in answers.items():
        for item, label_ids in zip((both, one, empty), sets, strict=True):
            ann.record_label(db, project, person, item_id=item.id, label_ids=label_ids)
    report = gold.gold_report(db, project)
    assert report.multi_label
    by_user = {a.name: a for a in report.annotators}
    assert (by_user["Ana"].correct, by_user["Ana"].total) == (3, 3)
    assert by_user["Ana"].mean_jaccard == pytest.approx(1.0)
    assert (by_user["Ben"].correct, by_user["Ben"].total) == (0, 3)
    assert by_user["Ben"].mean_jaccard == pytest.approx(0.5 / 3)
    assert (by_user["Ben"].low, by_user["Ben"].high) == pytest.approx(gold.wilson_interval(0, 3))
    rows = {r.item_id: r for r in gold.gold_items(db, project)}
    assert (rows[both.id].answers, rows[both.id].correct) == (2, 1)
    assert rows[both.id].mean_jaccard == pytest.approx(0.75)
    assert rows[empty.id].mean_jaccard == pytest.approx(0.5)
    # Ben edits his answer to the empty gold item: his latest live set is what counts.
    latest = db.scalars(select(Annotation.id).where(
        Annotation.item_id == empty.id, Annotation.annotator_id == ben.id)).one()
    ann.edit_annotation(db, project, ben, annotation_id=latest, label_ids=[])
    by_user = {a.name: a for a in gold.gold_report(db, project).annotators}
    assert by_user["Ben"].correct == 1
    assert by_user["Ben"].mean_jaccard == pytest.approx(1.5 / 3)
    # Marking again replaces the set and writes an audit row naming both sets.
    gold.mark_gold(db, project, both.id, ["bug"], by=None)
    assert gold.gold_set_of_item(db, project, both.id) == [ids["bug"]]
    event = db.scalars(select(AuditEvent).where(AuditEvent.item_id == both.id)
                       .order_by(AuditEvent.id.desc())).first()
    assert event is not None and event.detail == {"from_labels": ["billing", "bug"],
                                                  "to_labels": ["bug"]}
    # Single-label projects keep their own report: no Jaccard.
    single, *_ = _world(db, n_pool=1, n_gold=1)
    assert not gold.gold_report(db, single).multi_label
    assert all(r.labels is None for r in gold.gold_items(db, single))


def test_multi_label_gold_refuses_other_projects_labels_and_single_answers(db: Session) -> None:
    from app.db.models import GoldItem, GoldItemLabel

    project, _, items, ids = _set_world(db)
    other = make_project(db, labels=("billing", "bug"), task_type="multi_label")
    foreign_label = get_labels(db, other.id)[0].id
    with pytest.raises(InvalidInput, match="is not a label of this project"):
        gold.mark_gold(db, project, items[0].id, [ids["bug"], foreign_label], by=None)
    with pytest.raises(InvalidInput, match="'nope' is not a label"):
        gold.mark_gold(db, project, items[0].id, ["bug", "nope"], by=None)
    with pytest.raises(InvalidInput, match="This project is multi-label"):
        gold.mark_gold(db, project, items[0].id, "bug", by=None)
    with pytest.raises(NotFound):
        gold.mark_gold(db, project, make_items(db, other, ["theirs"])[0].id, ["bug"], by=None)
    assert db.scalar(select(func.count()).select_from(GoldItem)) == 0
    assert db.scalar(select(func.count()).select_from(GoldItemLabel)) == 0
    single, *_ = _world(db, n_pool=1, n_gold=0)
    pool_item = db.scalars(select(Item).where(Item.project_id == single.id)).first()
    assert pool_item is not None
    with pytest.raises(InvalidInput, match="single-label"):
        gold.mark_gold(db, single, pool_item.id, ["sports"], by=None)
    # Unmarking removes the set with the gold item.
    gold.mark_gold(db, project, items[0].id, ["bug", "feature"], by=None)
    assert gold.unmark_gold(db, project, items[0].id)
    assert db.scalar(select(func.count()).select_from(GoldItemLabel)) == 0


def test_multi_label_gold_items_are_handed_out_and_never_train(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.tasks.project_data import labelled_sets

    monkeypatch.setattr(leases, "_random", Random(1))
    project, (ana, _), items, ids = _set_world(db)
    gold.mark_gold(db, project, items[0].id, ["bug"], by=None)
    gold.update_gold_settings(project, rate=0.5)
    seen = set()
    while isinstance(got := ann.next_item(db, project, ana, lease_seconds=LEASE), ann.ItemView):
        seen.add(got.item_id)
        ann.record_label(db, project, ana, item_id=got.item_id, label_ids=[ids["bug"]])
    assert items[0].id in seen  # the gold item reached the annotator like any other
    snapshot = load_snapshot(db, project.id, Settings())
    assert items[0].id not in labelled_sets(db, snapshot, "pool").item_ids
    assert labels_used(db, project.id) == len(items) - 1


@pytest.mark.parametrize("task_type", ["single_label", "multi_label"])
def test_a_label_that_is_a_gold_answer_cannot_be_removed(db: Session, task_type: str) -> None:
    from app.domain.projects import set_labels
    from app.errors import Conflict

    project = make_project(db, labels=("sports", "finance", "science"), task_type=task_type)
    (item,) = make_items(db, project, ["a text"])
    answer: str | list[str] = "science" if task_type == "single_label" else ["finance", "science"]
    gold.mark_gold(db, project, item.id, answer, by=None)
    with pytest.raises(Conflict, match="'science' is the answer of 1 gold items"):
        set_labels(db, project.id, ["sports", "finance"])
    assert [row.item_id for row in gold.gold_items(db, project)] == [item.id]  # intact
    set_labels(db, project.id, ["finance", "science"])  # an unused label still goes
    assert [label.name for label in get_labels(db, project.id)] == ["finance", "science"]
