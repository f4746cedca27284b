"""Gold items: interleaving, accuracy with a Wilson interval, the flag, budget and training."""

from __future__ import annotations

from random import Random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ANNOTATOR, SPLIT_DEV, Item, Label, OverlapItem, Project, User
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
