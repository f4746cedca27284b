"""Overlap routing and agreement (issue 16): the statistics against textbook and hand-computed
values, the routing of overlap items to k distinct annotators, the budget, the labelled set, blind
labelling, and a noisy annotator caught by gold and by agreement."""

from __future__ import annotations

from random import Random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ANNOTATOR, Annotation, Item, Label, OverlapItem, Project, User
from app.domain import annotation as ann
from app.domain import gold
from app.domain.agreement import (
    agreement_by_version,
    agreement_detail,
    agreement_report,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_sets,
    masi_distance,
    one_vs_rest,
    update_overlap_settings,
)
from app.domain.annotation import leases, overlap
from app.domain.annotation.common import labelled_items, labels_used
from app.domain.projects import get_labels
from app.errors import InvalidInput
from tests.app.domain.annotation_data import add_queue
from tests.factories import make_items, make_project, make_user
from worker.tasks.project_data import labelled_set, load_snapshot

LEASE = 600
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal data with missing
# values: 4 coders (rows), 12 units (columns); alpha = 0.743.
_TABLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]
KRIPPENDORFF_2011 = [[row[j] for row in _TABLE if row[j] is not None] for j in range(12)]


# --- the statistics -------------------------------------------------------------------------


def test_cohen_kappa_textbook_two_by_two() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_fleiss_kappa_textbook_example() -> None:
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210.
    rows = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    units = [[c for c, n in enumerate(row) for _ in range(n)] for row in rows]
    assert fleiss_kappa(units) == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_alpha_published_nominal_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal data with
    # missing values: 4 coders, 12 units -> alpha = 0.743.
    units = KRIPPENDORFF_2011
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)


def test_small_tables_by_hand() -> None:
    # [a a] [a b] [b b]: coincidences o_aa 2, o_ab = o_ba 1, o_bb 2; n 6, n_a = n_b = 3.
    # D_o = 2/6, D_e = 2*3*3/(6*5) = 0.6 -> alpha = 1 - (1/3)/0.6 = 4/9.
    # Fleiss: P = (1 + 0 + 1)/3, P_e = 0.5 -> kappa = 1/3.
    units = [["a", "a"], ["a", "b"], ["b", "b"]]
    assert krippendorff_alpha(units) == pytest.approx(4 / 9)
    assert fleiss_kappa(units) == pytest.approx(1 / 3)
    # Undefined without variation, or without a pairable unit.
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None
    assert krippendorff_alpha([["a"], ["b"]]) is None
    # One class against the rest: [a a] [a b] [c c] [b c], class a -> [T T] [T F] [F F] [F F].
    # Fleiss: P = 3/4, p_T = 3/8 -> P_e = 34/64 -> kappa = 7/15.
    # alpha: o_TT 2, o_TF = o_FT 1, o_FF 4, n 8, n_T 3, n_F 5 -> 1 - (2/8)/(30/56) = 8/15.
    three = [["a", "a"], ["a", "b"], ["c", "c"], ["b", "c"]]
    assert one_vs_rest(three, "a") == [[True, True], [True, False], [False, False], [False, False]]
    assert fleiss_kappa(one_vs_rest(three, "a")) == pytest.approx(7 / 15)
    assert krippendorff_alpha(one_vs_rest(three, "a")) == pytest.approx(8 / 15)


def test_detail_per_pair_per_class_and_per_annotator_by_hand() -> None:
    a, b, c = 1, 2, 3
    votes = {
        10: {a: "x", b: "x", c: "y"},
        11: {a: "y", b: "y", c: "y"},
        12: {a: "x", b: "x"},
        13: {a: "y", c: "x"},
        14: {c: "x"},  # one label only: not shared, counts nowhere
    }
    detail = agreement_detail(
        votes, classes=["x", "y"], names={a: "A", b: "B", c: "C"}, min_kappa=0.0, min_items=3
    )
    pairs = {(p.first, p.second): p for p in detail.pairs}
    assert pairs[("A", "B")].items == 3 and pairs[("A", "B")].kappa == pytest.approx(1.0)
    # A-C on 10, 11, 13: (x,y) (y,y) (y,x): p_o 1/3, p_e 5/9 -> kappa -1/2.
    assert pairs[("A", "C")].items == 3 and pairs[("A", "C")].kappa == pytest.approx(-0.5)
    assert pairs[("A", "C")].percent == pytest.approx(1 / 3)
    people = {r.name: r for r in detail.annotators}
    # Each against the others' majority (an even split among the others is left out).
    # C: 10 -> (y, x), 11 -> (y, y), 13 -> (x, y): p_o 1/3, p_e 5/9 -> kappa -1/2.
    assert people["C"].kappa == pytest.approx(-0.5) and people["C"].percent == pytest.approx(1 / 3)
    assert people["C"].items == 3 and people["C"].flagged
    # A: 10 left out (B x, C y); 11 (y, y), 12 (x, x), 13 (y, x): p_o 2/3, p_e 4/9 -> 2/5.
    assert people["A"].kappa == pytest.approx(0.4) and people["A"].items == 4
    assert not people["A"].flagged
    # B: 11 (y, y), 12 (x, x) -> 1.
    assert people["B"].kappa == pytest.approx(1.0)
    assert [r.name for r in detail.annotators][0] == "C"  # flagged first
    assert [c.label for c in detail.per_class] == ["x", "y"]
    units = [["x", "x", "y"], ["y", "y", "y"], ["x", "x"], ["y", "x"]]
    assert detail.fleiss_kappa == pytest.approx(fleiss_kappa(units))
    assert detail.alpha == pytest.approx(krippendorff_alpha(units))
    x = detail.per_class[0]
    assert x.votes == 5 and x.alpha == pytest.approx(krippendorff_alpha(one_vs_rest(units, "x")))
    # Too few shared items: not flagged, whatever the kappa.
    strict = agreement_detail(votes, min_kappa=0.99, min_items=5)
    assert not any(r.flagged for r in strict.annotators)


def test_van_der_corput_quantiles_spread_over_the_range() -> None:
    assert [overlap.quantile(n) for n in range(1, 8)] == [
        0.5,
        0.25,
        0.75,
        0.125,
        0.625,
        0.375,
        0.875,
    ]
    with pytest.raises(ValueError):
        overlap.quantile(0)


# --- settings -------------------------------------------------------------------------------


def test_settings_defaults_and_bounds(db: Session) -> None:
    project = make_project(db)
    assert (project.overlap_rate, project.overlap_k) == (pytest.approx(0.1), 2)
    for bad in (
        {"rate": -0.1},
        {"rate": 1.01},
        {"k": 1},
        {"k": 6},
        {"min_kappa": 1.5},
        {"min_items": 0},
        {"rate": float("nan")},
    ):
        with pytest.raises(InvalidInput):
            update_overlap_settings(project, **{"rate": 0.5, "k": 3, **bad})
        assert (project.overlap_rate, project.overlap_k) == (pytest.approx(0.1), 2)
    update_overlap_settings(project, rate=1.0, k=5, min_kappa=0.5, min_items=3)
    assert (
        project.overlap_rate,
        project.overlap_k,
        project.agreement_min_kappa,
        project.agreement_min_items,
    ) == (1.0, 5, 0.5, 3)


# --- routing --------------------------------------------------------------------------------


def _people(db: Session, n: int) -> list[User]:
    return [make_user(db, role=ROLE_ANNOTATOR) for _ in range(n)]


def _label(db: Session, project: Project, person: User, item_id: int, label: Label) -> None:
    ann.record_label(db, project, person, item_id=item_id, label_id=label.id)


def _annotators_by_item(db: Session, project: Project) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for item_id, annotator_id in db.execute(
        select(Annotation.item_id, Annotation.annotator_id).where(
            Annotation.project_id == project.id,
            Annotation.deleted.is_(False),
            Annotation.superseded_by_id.is_(None),
        )
    ):
        out.setdefault(item_id, []).append(annotator_id)
    return out


def test_an_overlap_item_goes_to_k_distinct_annotators_and_never_twice_to_one(
    db: Session,
) -> None:
    people = _people(db, 4)
    project = make_project(db, labels=("a", "b"), annotators=people)
    update_overlap_settings(project, rate=0.5, k=3)
    gold.update_gold_settings(project, rate=0.0)
    label = get_labels(db, project.id)[0]
    make_items(db, project, [f"text {i}" for i in range(40)])
    handed: list[tuple[int, int]] = []
    active = list(people)
    while active:
        for person in list(active):
            got = ann.next_item(db, project, person, lease_seconds=LEASE)
            if not isinstance(got, ann.ItemView):
                active.remove(person)
                continue
            handed.append((got.item_id, person.id))
            # Asking again while holding it (another tab, the prefetch) never yields it again.
            again = ann.next_item(db, project, person, lease_seconds=LEASE, exclude=[got.item_id])
            assert not isinstance(again, ann.ItemView) or again.item_id != got.item_id
            if isinstance(again, ann.ItemView):
                ann.release_leases(db, project, person, [again.item_id])
            _label(db, project, person, got.item_id, label)
    assert len(handed) == len(set(handed))  # nobody got an item twice
    by_item = _annotators_by_item(db, project)
    marked = set(db.scalars(select(OverlapItem.item_id)))
    assert len(marked) >= 15  # about half of the items
    for item_id, who in by_item.items():
        assert len(who) == len(set(who))
        assert len(who) == (3 if item_id in marked else 1), item_id
    assert set(by_item) == {i.id for i in db.scalars(select(Item))}  # everything labelled
    # The budget counts every human label: overlap items count once per annotator.
    assert labelled_items(db, project.id) == 40
    assert labels_used(db, project.id) == 40 + 2 * len(marked)


def test_overlap_off_hands_out_exactly_as_before(db: Session) -> None:
    people = _people(db, 3)
    project = make_project(db, labels=("a", "b"), annotators=people)
    update_overlap_settings(project, rate=0.0)
    label = get_labels(db, project.id)[0]
    items = make_items(db, project, [f"text {i}" for i in range(12)])
    add_queue(db, project, items)
    order = []
    for _ in range(4):
        for person in people:
            got = ann.next_item(db, project, person, lease_seconds=LEASE)
            assert isinstance(got, ann.ItemView)
            order.append(got.item_id)
            _label(db, project, person, got.item_id, label)
    assert order == [i.id for i in items]  # queue order, one annotator per item
    assert db.scalar(select(OverlapItem.id)) is None


def test_overlap_items_come_from_across_the_queue_score_range(db: Session) -> None:
    (alice,) = _people(db, 1)
    project = make_project(db, labels=("a", "b"), annotators=[alice])
    update_overlap_settings(project, rate=0.1, k=2)
    gold.update_gold_settings(project, rate=0.0)
    label = get_labels(db, project.id)[0]
    items = make_items(db, project, [f"text {i}" for i in range(200)])
    add_queue(db, project, items)  # rank 0 has the highest score
    rank = {item.id: r for r, item in enumerate(items)}
    handed = []
    for _ in range(60):
        got = ann.next_item(db, project, alice, lease_seconds=LEASE)
        assert isinstance(got, ann.ItemView)
        handed.append(got.item_id)
        _label(db, project, alice, got.item_id, label)
    marked = list(db.scalars(select(OverlapItem.item_id).order_by(OverlapItem.id)))
    assert len(marked) == 6  # every tenth item, deterministically
    ranks = [rank[i] for i in marked]
    # The first sits at the median score of the queue, the next ones at its quartiles...
    # (quantiles of what is still available, the head already labelled: 191 entries from rank 9,
    # then 181 from rank 18 less one, then 171 from rank 27 less two).
    assert ranks[0] == 9 + int(0.5 * 191)
    assert ranks[1] == 18 + int(0.25 * 181)
    assert ranks[2] == 27 + int(0.75 * 171) + 2
    assert max(ranks) - min(ranks) > 80
    # ...the others follow the queue from its head.
    rest = [rank[i] for i in handed if i not in set(marked)]
    assert rest == list(range(len(rest)))


def test_imported_seed_labels_do_not_call_for_overlap_items(db: Session) -> None:
    (alice,) = _people(db, 1)
    project = make_project(db, labels=("a", "b"), annotators=[alice])
    gold.update_gold_settings(project, rate=0.0)
    label = get_labels(db, project.id)[0]
    items = make_items(db, project, [f"text {i}" for i in range(130)])
    for item in items[:100]:  # a large labelled import
        db.add(
            Annotation(
                project_id=project.id,
                item_id=item.id,
                annotator_id=alice.id,
                label_id=label.id,
                source=overlap.SEED_SOURCE,
            )
        )
    db.flush()
    assert not overlap.due(db, project)
    for _ in range(20):
        got = ann.next_item(db, project, alice, lease_seconds=LEASE)
        assert isinstance(got, ann.ItemView)
        _label(db, project, alice, got.item_id, label)
    assert overlap.marked_count(db, project.id) == 2  # 10 % of the 20 labelled here


def test_labelled_set_keeps_a_majority_and_leaves_out_an_unsettled_overlap_tie(
    db: Session,
) -> None:
    people = _people(db, 3)
    project = make_project(db, labels=("a", "b"), annotators=people)
    a, b = get_labels(db, project.id)
    tie, majority_item, plain_tie = make_items(db, project, ["tie", "two to one", "plain"])
    for item in (tie, majority_item):
        overlap.mark(db, project, item.id)
    votes = {tie: (a, b), majority_item: (a, b, a), plain_tie: (a, b)}
    for item, labels in votes.items():
        for person, lbl in zip(people, labels, strict=False):
            db.add(
                Annotation(
                    project_id=project.id, item_id=item.id, annotator_id=person.id, label_id=lbl.id
                )
            )
    db.flush()
    snapshot = load_snapshot(db, project.id, Settings())
    result = labelled_set(db, snapshot, "pool")
    got = dict(zip(result.item_ids, result.labels, strict=True))
    assert tie.id not in got  # overlap disagreement, nobody settled it: not a label yet
    assert got[majority_item.id] == 0  # "a", two to one
    assert got[plain_tie.id] == 1  # not an overlap item: the most recent label wins, as before


# --- blind labelling ------------------------------------------------------------------------


def test_neighbours_never_show_an_open_overlap_item(db: Session) -> None:
    alice, bob = _people(db, 2)
    project = make_project(db, labels=("a", "b"), annotators=[alice, bob])
    gold.update_gold_settings(project, rate=0.0)
    a = get_labels(db, project.id)[0]
    shared, other, target = make_items(db, project, ["shared", "other", "target"])
    overlap.mark(db, project, shared.id)
    _label(db, project, alice, shared.id, a)
    _label(db, project, alice, other.id, a)
    add_queue(db, project, [target], neighbours=[shared, other])
    view = leases.item_view(db, project, target.id, expires_at=target.created_at)
    assert [n.item_id for n in view.why.neighbours] == [other.id]
    _label(db, project, bob, shared.id, a)  # now done: 2 of 2
    view = leases.item_view(db, project, target.id, expires_at=target.created_at)
    assert [n.item_id for n in view.why.neighbours] == [shared.id, other.id]


# --- the noisy annotator --------------------------------------------------------------------


def test_a_noisy_annotator_is_flagged_by_gold_and_by_agreement(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "_random", Random(16))
    careful, second, noisy = _people(db, 3)
    project = make_project(
        db, labels=("sports", "finance", "science"), annotators=[careful, second, noisy]
    )
    labels = get_labels(db, project.id)
    items = make_items(db, project, [f"pool text {i}" for i in range(360)])
    truth = {item.id: labels[i % 3] for i, item in enumerate(items)}
    for item in items[:40]:
        gold.mark_gold(db, project, item.id, truth[item.id].name, by=None)
    gold.update_gold_settings(project, rate=0.2, min_accuracy=0.9, min_count=15)
    update_overlap_settings(project, rate=0.3, k=3, min_kappa=0.85, min_items=20)
    flip = {careful.id: 0.0, second.id: 0.02, noisy.id: 0.2}
    rng = Random(7)
    active = [careful, second, noisy]
    while active:
        for person in list(active):
            got = ann.next_item(db, project, person, lease_seconds=LEASE)
            if not isinstance(got, ann.ItemView):
                active.remove(person)
                continue
            answer = truth[got.item_id]
            if rng.random() < flip[person.id]:  # flips to one of the other labels at random
                answer = rng.choice([lbl for lbl in labels if lbl.id != answer.id])
            _label(db, project, person, got.item_id, answer)

    golden = gold.gold_report(db, project)
    assert [a.user_id for a in golden.flagged] == [noisy.id]

    report = agreement_report(db, project.id)
    assert report.detail is not None
    assert report.overlap_items >= 0.25 * 320
    assert [a.user_id for a in report.flagged] == [noisy.id]
    by_user = {a.user_id: a for a in report.detail.annotators}
    assert all(by_user[p.id].items >= 20 for p in (careful, second, noisy))
    noisy_kappa = by_user[noisy.id].kappa
    assert noisy_kappa is not None and noisy_kappa < 0.85
    assert by_user[careful.id].kappa is not None and by_user[careful.id].kappa > 0.85
    pairs = {frozenset((p.first, p.second)): p.kappa for p in report.detail.pairs}
    name = {u.id: u.name or u.email for u in (careful, second, noisy)}
    careful_pair = pairs[frozenset((name[careful.id], name[second.id]))]
    with_noisy = pairs[frozenset((name[careful.id], name[noisy.id]))]
    assert careful_pair is not None and with_noisy is not None
    assert with_noisy < careful_pair - 0.15  # the third, careful annotator agrees less with noisy
    assert report.detail.alpha is not None and 0.5 < report.detail.alpha < 0.95
    assert len(report.detail.per_class) == 3


def test_agreement_splits_by_guidelines_version_and_leaves_mixed_items_out() -> None:
    votes = {
        1: {10: "a", 11: "a"},  # version 1, agree
        2: {10: "a", 11: "b"},  # version 1, disagree
        3: {10: "b", 11: "b"},  # version 2, agree
        4: {10: "a", 11: "a"},  # version 2, agree
        5: {10: "a", 11: "b"},  # mixed: one label under each version
        6: {10: "a"},  # one label: no agreement to measure
    }
    versions = {(1, 10): 1, (1, 11): 1, (2, 10): 1, (2, 11): 1, (3, 10): 2, (3, 11): 2,
                (4, 10): 2, (4, 11): 2, (5, 10): 1, (5, 11): 2, (6, 10): 2}
    rows, mixed = agreement_by_version(votes, versions)
    assert mixed == 1
    assert [(r.version, r.items, r.percent_agreement) for r in rows] == [(1, 2, 0.5), (2, 2, 1.0)]
    # Version 1 by hand: observed 1/2; rater 10 says a, a and rater 11 a, b, so chance agreement
    # is 1 * 1/2 + 0 * 1/2 = 1/2 and kappa = (1/2 - 1/2) / (1 - 1/2) = 0.
    first, second = rows
    assert first.method == "cohen"
    assert first.kappa is not None and abs(first.kappa) < 1e-9
    assert second.kappa is not None and second.percent_agreement == 1.0
    unversioned, _ = agreement_by_version({1: {10: "a", 11: "a"}}, {})
    assert [r.version for r in unversioned] == [None]  # labels from before versions existed


def test_masi_distance_follows_its_definition() -> None:
    a, b, c = frozenset("a"), frozenset("ab"), frozenset("bc")
    assert masi_distance(b, b) == 0.0 and masi_distance(frozenset(), frozenset()) == 0.0
    assert masi_distance(a, b) == pytest.approx(1 - 0.5 * 0.67)  # subset: J 1/2, M 0.67
    assert masi_distance(b, c) == pytest.approx(1 - (1 / 3) * 0.33)  # overlap: J 1/3, M 0.33
    assert masi_distance(a, c) == 1.0 and masi_distance(a, frozenset()) == 1.0


def test_alpha_for_label_sets_reduces_to_nominal_alpha_and_credits_partial_agreement() -> None:
    units = KRIPPENDORFF_2011
    singletons = [[frozenset([v]) for v in u] for u in units]
    assert krippendorff_alpha_sets(singletons) == pytest.approx(krippendorff_alpha(units))
    # [ab ab] [a ab] [c c]: D_o = (2 * 0.665) / 6; values ab x2+1, a x1, c x2, n = 6:
    # D_e = 2 * (3*1*0.665 + 3*2*1 + 1*2*1) / 30
    ab, a, c = frozenset("ab"), frozenset("a"), frozenset("c")
    sets = [[ab, ab], [a, ab], [c, c]]
    d_o = 2 * (1 - 0.5 * 0.67) / 6
    d_e = 2 * (3 * 1 * (1 - 0.5 * 0.67) + 3 * 2 + 1 * 2) / 30
    assert krippendorff_alpha_sets(sets) == pytest.approx(1 - d_o / d_e)
    strict = krippendorff_alpha([["ab", "ab"], ["a", "ab"], ["c", "c"]])
    assert strict is not None and krippendorff_alpha_sets(sets) > strict  # a ~ ab counts
    assert krippendorff_alpha_sets([[ab, ab], [c, c]]) == 1.0
    assert krippendorff_alpha_sets([[ab], [c]]) is None
