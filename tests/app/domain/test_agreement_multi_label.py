"""Agreement on label sets (issue 19): a multi-label project with overlap items or several
annotations per item, labelled through the annotate path (``next_item`` hands the item out,
``record_label`` stores the set), measured with Krippendorff's alpha and the MASI distance; the
review queue's and the data manager's disagreements on sets. Single-label agreement is covered by
``test_agreement.py``, which must stay unchanged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ANNOTATOR,
    TASK_MULTI_LABEL,
    Annotation,
    GoldItem,
    Item,
    OverlapItem,
    Project,
    User,
)
from app.domain import annotation as ann
from app.domain import data_manager as dm
from app.domain import review
from app.domain.agreement import (
    METHOD_MASI,
    AgreementReport,
    agreement_report,
    compute_set_agreement,
    krippendorff_alpha,
    krippendorff_alpha_sets,
    masi_distance,
    set_agreement_detail,
    update_overlap_settings,
)
from app.domain.annotation import overlap
from app.domain.guidelines import set_guidelines
from app.domain.projects import get_labels
from tests.factories import make_items, make_project, make_user

LEASE = 600
LABELS = ("billing", "bug", "feature")


def _people(db: Session, n: int) -> list[User]:
    return [make_user(db, role=ROLE_ANNOTATOR) for _ in range(n)]


def _project(db: Session, people: Iterable[User], labels: Iterable[str] = LABELS) -> Project:
    return make_project(db, labels=tuple(labels), annotators=people, task_type=TASK_MULTI_LABEL)


def _ids(db: Session, project: Project) -> dict[str, int]:
    return {label.name: label.id for label in get_labels(db, project.id)}


def _label_all(
    db: Session, project: Project, people: list[User], answer: Mapping[int, Mapping[int, set[str]]]
) -> dict[int, dict[int, frozenset[int]]]:
    """Every annotator takes items through the hand-out until none is left and answers each with
    ``answer[item][annotator]`` (default: the item's ``answer[item][0]``); returns what was
    recorded, {item: {annotator: frozenset of label ids}}."""
    ids = _ids(db, project)
    recorded: dict[int, dict[int, frozenset[int]]] = {}
    active = list(people)
    while active:
        for person in list(active):
            got = ann.next_item(db, project, person, lease_seconds=LEASE)
            if not isinstance(got, ann.ItemView):
                active.remove(person)
                continue
            names = answer[got.item_id].get(person.id, answer[got.item_id][0])
            ann.record_label(db, project, person, item_id=got.item_id,
                             label_ids=[ids[name] for name in names])
            recorded.setdefault(got.item_id, {})[person.id] = frozenset(ids[n] for n in names)
    return recorded


def _units(recorded: Mapping[int, Mapping[int, frozenset[int]]]) -> list[list[frozenset[int]]]:
    return [list(by.values()) for by in recorded.values() if len(by) >= 2]


# --- the statistics, by hand ----------------------------------------------------------------


def test_set_statistics_by_hand() -> None:
    a, b, ab, none = frozenset("a"), frozenset("b"), frozenset("ab"), frozenset()
    votes = {
        1: {10: ab, 11: ab},  # identical
        2: {10: a, 11: ab},  # a subset: partial credit
        3: {10: b, 11: none},  # none of these against b: a full miss
        4: {10: a},  # one set: not shared
    }
    method, alpha, items, raters, percent = compute_set_agreement(votes)
    units = [[ab, ab], [a, ab], [b, none]]
    assert (method, items, raters, percent) == (METHOD_MASI, 3, 2, pytest.approx(1 / 3))
    assert alpha == pytest.approx(krippendorff_alpha_sets(units))
    # By hand: D_o = 2 * (d(a, ab) + d(b, {})) / 6; the six values ab ab a ab b {}: D_e over
    # every ordered pair of them, n (n - 1) = 30.
    values = [ab, ab, a, ab, b, none]
    d_e = sum(masi_distance(x, y) for i, x in enumerate(values)
              for j, y in enumerate(values) if i != j) / 30
    d_o = 2 * (masi_distance(a, ab) + masi_distance(b, none)) / 6
    assert alpha == pytest.approx(1 - d_o / d_e)

    detail = set_agreement_detail(votes, classes=["a", "b"], class_names={"a": "A", "b": "B"},
                                  names={10: "Ten", 11: "Eleven"}, min_items=3, min_kappa=0.9)
    assert detail.fleiss_kappa is None and detail.alpha == pytest.approx(alpha)
    (pair,) = detail.pairs
    assert (pair.first, pair.second, pair.items, pair.percent) == ("Ten", "Eleven", 3,
                                                                  pytest.approx(1 / 3))
    assert pair.kappa == pytest.approx(alpha)  # two annotators: the pair is everything
    # Per label, present or not: "a" -> units [TT] [TT] [FF]; "b" -> [TT] [FT] [TF].
    per_class = {c.label: c for c in detail.per_class}
    assert per_class["A"].votes == 4 and per_class["B"].votes == 4
    assert per_class["B"].alpha == pytest.approx(
        krippendorff_alpha([[True, True], [False, True], [True, False]]))
    assert per_class["A"].alpha == pytest.approx(
        krippendorff_alpha([[True, True], [True, True], [False, False]]))
    # Each annotator against the other one (the others' majority, with one other: their set).
    for row in detail.annotators:
        assert row.items == 3 and row.kappa == pytest.approx(alpha)
        assert row.flagged  # below 0.9 after 3 shared items


def test_the_others_majority_set_leaves_out_an_even_split() -> None:
    a, ab, b = frozenset("a"), frozenset("ab"), frozenset("b")
    votes = {
        1: {1: a, 2: a, 3: a},
        2: {1: ab, 2: ab, 3: a},
        3: {1: a, 2: b, 3: ab},  # for 3: the others split on a and on b -> left out for 3
        4: {1: b, 2: b, 3: b},
    }
    detail = set_agreement_detail(votes)
    by_user = {row.user_id: row for row in detail.annotators}
    # Annotator 3 against the others' majority: items 1 (a vs a), 2 (a vs ab), 4 (b vs b).
    assert by_user[3].items == 4
    assert by_user[3].kappa == pytest.approx(krippendorff_alpha_sets([[a, a], [a, ab], [b, b]]))
    assert by_user[3].percent == pytest.approx(2 / 3)
    # Annotator 1: the others on item 3 are b and ab: b in both -> {b}; a in one of two -> split.
    assert by_user[1].kappa == pytest.approx(krippendorff_alpha_sets([[a, a], [ab, ab], [b, b]]))


def test_alpha_masi_is_read_on_krippendorffs_scale() -> None:
    def reading(kappa: float | None, method: str | None = METHOD_MASI) -> str:
        return AgreementReport(method=method, kappa=kappa, items=3, raters=2,
                               percent_agreement=1.0, disagreements=(), disagreement_count=0,
                               multi_label=method == METHOD_MASI).interpretation

    assert [reading(k) for k in (1.0, 0.8, 0.7, 0.667, 0.66, -0.2)] == [
        "reliable", "reliable", "tentative", "tentative", "unreliable", "unreliable"]
    assert reading(None) == "not enough overlap yet"
    assert reading(0.7, "cohen") == "substantial"  # kappa keeps Landis & Koch's bands


# --- the report, through the annotate path --------------------------------------------------


def test_overlap_items_of_a_multi_label_project_go_to_k_annotators_and_alpha_masi_measures_them(
    db: Session,
) -> None:
    alice, bob, carol = people = _people(db, 3)
    project = _project(db, people)
    update_overlap_settings(project, rate=0.5, k=3)
    items = make_items(db, project, [f"ticket {i}" for i in range(24)])
    cycle = [{"billing"}, {"bug"}, {"billing", "bug"}, set(), {"feature"}, {"bug", "feature"}]
    answer: dict[int, dict[int, set[str]]] = {}
    for i, item in enumerate(items):
        truth = cycle[i % len(cycle)]
        answer[item.id] = {0: truth}
        if i % 4 == 1:
            answer[item.id][carol.id] = truth | {"feature"}  # adds a label: partial agreement
        if i % 4 == 3:
            answer[item.id][bob.id] = {"billing"} if truth != {"billing"} else {"bug"}
    recorded = _label_all(db, project, people, answer)

    marked = set(db.scalars(select(OverlapItem.item_id).where(
        OverlapItem.project_id == project.id)))
    assert len(marked) >= 8
    for item_id, by in recorded.items():
        assert len(by) == (3 if item_id in marked else 1), item_id  # k distinct annotators
    units = _units(recorded)
    assert len(units) == len(marked)

    report = agreement_report(db, project.id)
    expected = krippendorff_alpha_sets(units)
    assert expected is not None
    assert report.method == METHOD_MASI and report.multi_label
    assert report.statistic == "Krippendorff's α (MASI)"
    assert report.kappa == pytest.approx(expected)
    assert report.detail is not None and report.detail.alpha == pytest.approx(expected)
    assert report.detail.fleiss_kappa is None
    assert (report.items, report.raters) == (len(units), 3)
    identical = sum(1 for unit in units if len(set(unit)) == 1)
    assert report.percent_agreement == pytest.approx(identical / len(units))
    differing = {item for item, by in recorded.items()
                 if len(by) >= 2 and len(set(by.values())) > 1}
    assert report.disagreement_count == len(differing) > 0
    assert {d.item_id for d in report.disagreements} == differing
    # Each vote reads as the set, in the project's label order.
    names = {user.id: user.name for user in people}
    ids = _ids(db, project)
    order = list(LABELS)
    for d in report.disagreements:
        expected_votes = {
            (names[who], ", ".join(n for n in order if ids[n] in labels) or "none of these")
            for who, labels in recorded[d.item_id].items()
        }
        assert {(v.annotator, v.label) for v in d.votes} == expected_votes
    assert report.interpretation in ("reliable", "tentative", "unreliable")
    # The budget counts every label a person made, overlap labels once per annotator.
    assert ann.labels_used(db, project.id) == 24 + 2 * len(marked)


def test_identical_sets_agree_fully(db: Session) -> None:
    people = _people(db, 2)
    project = _project(db, people)
    update_overlap_settings(project, rate=0.0)
    project.annotations_per_item = 2  # several annotations per item, allowed for sets now
    items = make_items(db, project, [f"text {i}" for i in range(6)])
    sets = [{"billing"}, {"bug", "feature"}, set(), {"billing", "bug", "feature"}, {"bug"},
            {"feature"}]
    recorded = _label_all(db, project, people,
                          {item.id: {0: s} for item, s in zip(items, sets, strict=True)})
    assert all(len(by) == 2 for by in recorded.values())  # every item went to both

    report = agreement_report(db, project.id)
    assert report.kappa == pytest.approx(1.0) and report.percent_agreement == 1.0
    assert (report.items, report.disagreement_count, report.disagreements) == (6, 0, ())
    assert report.interpretation == "reliable"
    assert report.detail is not None
    assert all(a.kappa == pytest.approx(1.0) and not a.flagged for a in report.detail.annotators)
    assert [v.kappa for v in report.by_version] == [pytest.approx(1.0)]


def test_an_annotator_whose_sets_stray_is_flagged(db: Session) -> None:
    careful, second, noisy = people = _people(db, 3)
    project = _project(db, people)
    update_overlap_settings(project, rate=1.0, k=3, min_kappa=0.6, min_items=10)
    items = make_items(db, project, [f"text {i}" for i in range(12)])
    cycle = [{"billing"}, {"bug"}, {"feature"}, {"billing", "bug"}]
    answer: dict[int, dict[int, set[str]]] = {}
    for i, item in enumerate(items):
        truth = cycle[i % len(cycle)]
        answer[item.id] = {0: truth}
        if i % 2:  # half of the items: a set that shares nothing with the truth
            answer[item.id][noisy.id] = set(LABELS) - truth
    recorded = _label_all(db, project, people, answer)
    assert all(len(by) == 3 for by in recorded.values())

    report = agreement_report(db, project.id)
    assert report.detail is not None
    assert [a.user_id for a in report.flagged] == [noisy.id]
    by_user = {a.user_id: a for a in report.detail.annotators}
    # The noisy annotator against the others' majority set (careful and second agree: the truth).
    against = [[by[noisy.id], by[careful.id]] for by in recorded.values()]
    assert by_user[noisy.id].kappa == pytest.approx(krippendorff_alpha_sets(against))
    assert by_user[noisy.id].percent == pytest.approx(0.5)
    for person in (careful, second):  # the others' majority: careful and second agree
        row = by_user[person.id]
        assert row.kappa is not None and row.kappa > 0.6 and not row.flagged
    # Per pair: careful and second agree fully.
    pairs = {frozenset((p.first, p.second)): p for p in report.detail.pairs}
    assert pairs[frozenset((careful.name, second.name))].kappa == pytest.approx(1.0)
    assert report.kappa == pytest.approx(krippendorff_alpha_sets(_units(recorded)))
    # Raising the bar on items: nobody has enough shared items to be flagged.
    update_overlap_settings(project, min_items=13)
    assert agreement_report(db, project.id).flagged == ()


def test_gold_items_and_single_annotations_are_left_out(db: Session) -> None:
    first, second = people = _people(db, 2)
    project = _project(db, people)
    ids = _ids(db, project)
    shared, golden, alone = make_items(db, project, ["shared", "golden", "alone"])
    db.add(GoldItem(project_id=project.id, item_id=golden.id, label_id=ids["bug"]))
    db.flush()
    for person, labels in ((first, ["bug"]), (second, ["bug", "billing"])):
        ann.record_label(db, project, person, item_id=shared.id,
                         label_ids=[ids[n] for n in labels])
    for person, labels in ((first, ["feature"]), (second, [])):  # they disagree on gold
        ann.record_label(db, project, person, item_id=golden.id,
                         label_ids=[ids[n] for n in labels])
    ann.record_label(db, project, first, item_id=alone.id, label_ids=[ids["feature"]])

    report = agreement_report(db, project.id)
    assert report.items == 1 and report.disagreement_count == 1
    (d,) = report.disagreements
    assert d.item_id == shared.id
    assert sorted(v.label for v in d.votes) == ["billing, bug", "bug"]
    # One unit with two distinct values: alpha over just that unit.
    bug, both = frozenset([ids["bug"]]), frozenset([ids["bug"], ids["billing"]])
    assert report.kappa == pytest.approx(krippendorff_alpha_sets([[bug, both]]))
    # A later set replaces the annotator's earlier one: now both say bug.
    ann.record_label(db, project, second, item_id=shared.id, label_ids=[ids["bug"]])
    again = agreement_report(db, project.id)
    assert (again.disagreement_count, again.percent_agreement) == (0, 1.0)
    assert again.kappa is None  # one value only: no disagreement possible, alpha undefined


def test_agreement_on_sets_splits_by_guidelines_version(db: Session) -> None:
    first, second = people = _people(db, 2)
    project = _project(db, people)
    ids = _ids(db, project)
    items = make_items(db, project, [f"text {i}" for i in range(5)])

    def both(item: Item, a: list[str], b: list[str]) -> None:
        ann.record_label(db, project, first, item_id=item.id, label_ids=[ids[n] for n in a])
        ann.record_label(db, project, second, item_id=item.id, label_ids=[ids[n] for n in b])

    both(items[0], ["bug"], ["bug"])
    both(items[1], ["bug", "billing"], ["billing"])
    ann.record_label(db, project, first, item_id=items[4].id, label_ids=[ids["feature"]])
    set_guidelines(db, project, "Tag every product area the ticket mentions.", by=None)
    both(items[2], ["feature"], ["feature"])
    both(items[3], ["feature"], [])
    ann.record_label(db, project, second, item_id=items[4].id, label_ids=[ids["bug"]])

    report = agreement_report(db, project.id)
    assert report.mixed_version_items == 1
    first_version, second_version = report.by_version
    bug, feature = frozenset([ids["bug"]]), frozenset([ids["feature"]])
    billing, bug_billing = frozenset([ids["billing"]]), frozenset([ids["bug"], ids["billing"]])
    assert (first_version.items, first_version.percent_agreement) == (2, 0.5)
    assert first_version.method == METHOD_MASI
    assert first_version.kappa == pytest.approx(
        krippendorff_alpha_sets([[bug, bug], [bug_billing, billing]]))
    assert first_version.alpha == first_version.kappa
    assert second_version.kappa == pytest.approx(
        krippendorff_alpha_sets([[feature, feature], [feature, frozenset()]]))
    assert report.items == 5 and report.kappa == pytest.approx(krippendorff_alpha_sets([
        [bug, bug], [bug_billing, billing], [feature, feature], [feature, frozenset()],
        [feature, bug]]))


def test_an_open_multi_label_overlap_item_is_labelled_blind(db: Session) -> None:
    alice, bob = people = _people(db, 2)
    project = _project(db, people)
    ids = _ids(db, project)
    (item,) = make_items(db, project, ["shared"])
    overlap.mark(db, project, item.id)
    ann.record_label(db, project, alice, item_id=item.id, label_ids=[ids["bug"]])
    assert overlap.hidden_from(db, project, bob.id, [item.id]) == {item.id}
    got = ann.next_item(db, project, bob, lease_seconds=LEASE)
    assert isinstance(got, ann.ItemView) and got.item_id == item.id  # goes to a second person
    ann.record_label(db, project, bob, item_id=item.id, label_ids=[])
    assert overlap.hidden_from(db, project, bob.id, [item.id]) == set()


def test_single_label_projects_keep_kappa(db: Session) -> None:
    first, second = people = _people(db, 2)
    project = make_project(db, labels=("a", "b"), annotators=people)
    a, b = get_labels(db, project.id)
    x, y = make_items(db, project, ["x", "y"])
    for person, item, label in ((first, x, a), (second, x, a), (first, y, a), (second, y, b)):
        ann.record_label(db, project, person, item_id=item.id, label_id=label.id)
    report = agreement_report(db, project.id)
    assert report.method == "cohen" and not report.multi_label
    assert report.statistic == "Cohen's κ" and report.symbol == "κ"
    assert [v.label for v in report.disagreements[0].votes] == ["a", "b"]


# --- review queue and data manager ----------------------------------------------------------


def test_the_review_queue_and_the_data_manager_find_items_whose_sets_differ(
    db: Session,
) -> None:
    first, second, third = people = _people(db, 3)
    project = _project(db, people)
    ids = _ids(db, project)
    same, differ, subset, empty_vs_one, alone = make_items(
        db, project, ["same", "differ", "subset", "empty", "alone"])
    votes = {
        same: [["bug", "billing"], ["billing", "bug"]],
        differ: [["bug"], ["feature"], ["bug"]],
        subset: [["bug"], ["bug", "feature"]],
        empty_vs_one: [[], ["billing"]],
        alone: [["bug"]],
    }
    for item, sets in votes.items():
        for person, labels in zip(people, sets, strict=False):
            ann.record_label(db, project, person, item_id=item.id,
                             label_ids=[ids[n] for n in labels])
    expected = {differ.id, subset.id, empty_vs_one.id}

    queue = review.review_queue(db, project)
    assert {e.item_id for e in queue.disagreements} == expected
    entry = next(e for e in queue.disagreements if e.item_id == differ.id)
    assert entry.label == "bug"  # the majority set
    assert [v.label for v in entry.votes] == ["bug", "feature", "bug"]
    assert next(e for e in queue.disagreements if e.item_id == empty_vs_one.id).label == \
        "billing"  # an even split: the most recent set, as the worker resolves it

    matching = dm.browse(db, project, dm.parse_filters({"disagreement": "yes"}))
    assert {row.id for row in matching.rows} == expected
    assert all(row.disagreement for row in matching.rows)
    agreeing = dm.browse(db, project, dm.parse_filters({"disagreement": "no"}))
    assert {row.id for row in agreeing.rows} == {same.id, alone.id}
    assert not any(row.disagreement for row in agreeing.rows)
    rows = {row.id: row for row in dm.browse(db, project, {}).rows}
    assert rows[same.id].label == "billing, bug"
    assert rows[differ.id].label == "bug"
    assert dm.item_detail(db, project, differ.id).label == "bug"
    # A set label in more than half of the sets wins even if no one gave exactly that set.
    (mixed,) = make_items(db, project, ["mixed"])
    for person, labels in zip(people, [["bug", "billing"], ["bug"], ["billing"]], strict=True):
        ann.record_label(db, project, person, item_id=mixed.id,
                         label_ids=[ids[n] for n in labels])
    assert dm.item_detail(db, project, mixed.id).label == "billing, bug"
    assert dm.browse(db, project, {}, after_id=mixed.id - 1).rows[0].label == "billing, bug"
    live = db.scalars(select(Annotation.id).where(Annotation.item_id == mixed.id)).all()
    assert len(live) == 3
