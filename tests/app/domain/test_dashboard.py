"""The lead dashboard's numbers: budget, learning curve, evaluation, distribution, stop advice,
throughput, and inter-annotator agreement (checked against textbook values)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ROLE_ANNOTATOR, Annotation, Item, Project, User
from app.domain import adapter_card, dashboard
from app.domain.agreement import agreement_report, cohen_kappa, compute_agreement, fleiss_kappa
from app.domain.projects import get_labels
from tests.app.domain.annotation_data import add_rounds
from tests.factories import make_items, make_project, make_user


def _label(db: Session, project: Project, item: Item, user: User, position: int,
           duration_ms: int | None = 2000, **fields: object) -> Annotation:
    label = get_labels(db, project.id)[position]
    annotation = Annotation(project_id=project.id, item_id=item.id, annotator_id=user.id,
                            label_id=label.id, duration_ms=duration_ms, source="ui", **fields)
    db.add(annotation)
    db.flush()
    return annotation


# --------------------------------------------------------------------------- kappa


def test_cohen_kappa_matches_the_textbook_example() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_is_one_for_agreement_and_undefined_without_variation() -> None:
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None
    assert cohen_kappa([]) is None


def test_fleiss_kappa_matches_the_wikipedia_example() -> None:
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    ratings = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=0.001)


def test_compute_agreement_picks_cohen_for_two_raters_and_fleiss_for_more() -> None:
    two = {1: {10: "a", 11: "a"}, 2: {10: "b", 11: "a"}, 3: {10: "b", 11: "b"}, 4: {10: "a"}}
    method, kappa, items, raters, percent = compute_agreement(two)
    assert (method, items, raters) == ("cohen", 3, 2)
    assert percent == pytest.approx(2 / 3) and kappa is not None
    three = {1: {10: "a", 11: "a", 12: "a"}, 2: {10: "b", 12: "a"}}
    assert compute_agreement(three)[0] == "fleiss"
    assert compute_agreement({1: {10: "a"}})[0] is None


def test_agreement_report_lists_disagreeing_items_with_votes(db: Session) -> None:
    alice = make_user(db, role=ROLE_ANNOTATOR, name="Alice")
    bob = make_user(db, role=ROLE_ANNOTATOR, name="Bob")
    project = make_project(db, labels=("pos", "neg"), annotators=[alice, bob])
    items = make_items(db, project, ["one", "two", "three"])
    for item, (a, b) in zip(items, [(0, 0), (0, 1), (1, 1)], strict=True):
        _label(db, project, item, alice, a)
        _label(db, project, item, bob, b)
    stale = _label(db, project, items[0], bob, 1)
    stale.deleted = True  # an undone label does not count
    report = agreement_report(db, project.id)
    assert report.method == "cohen" and report.items == 3
    assert report.disagreement_count == 1
    (disputed,) = report.disagreements
    assert disputed.text == "two"
    assert {(v.annotator, v.label) for v in disputed.votes} == {("Alice", "pos"), ("Bob", "neg")}


# --------------------------------------------------------------------------- dashboard


def test_budget_summary_uses_the_worker_plan(db: Session) -> None:
    project = make_project(db)
    project.label_budget, project.batch_size, project.reserve_fraction = 200, 50, 0.1
    user = make_user(db)
    for item in make_items(db, project, [f"t{i}" for i in range(12)]):
        _label(db, project, item, user, 0)
    summary = dashboard.budget_summary(db, project)
    assert (summary.used, summary.left, summary.reserve, summary.main_budget) == (12, 188, 20, 180)
    assert summary.phase == "acquire" and summary.next_batch == 50
    assert summary.batches_left == 5  # 50, 50, 50, 18 (main) + 20 (reserve)


def test_learning_curve_and_latest_evaluation(db: Session) -> None:
    project = make_project(db, labels=("a", "b", "c"))
    add_rounds(db, project, [(100, 0.6, 0.5), (200, 0.7, 0.65), (300, 0.75, 0.7)])
    curve = dashboard.learning_curve(db, project.id)
    assert [p.labels for p in curve] == [100, 200, 300]
    assert [p.macro_f1 for p in curve] == [0.5, 0.65, 0.7]
    evaluation = dashboard.latest_evaluation(db, project)
    assert evaluation is not None and evaluation.labels_used == 300
    assert evaluation.label_names == ("a", "b", "c")
    assert evaluation.confusion[0][0] == 12 and evaluation.max_cell == 12
    assert [c.f1 for c in evaluation.per_class] == [0.7, 0.65, 0.6]


def test_confusion_is_padded_when_labels_were_added_after_the_round(db: Session) -> None:
    project = make_project(db, labels=("a", "b"))
    (row,) = add_rounds(db, project, [(50, 0.5, 0.5)])
    row.confusion = [[3]]
    evaluation = dashboard.latest_evaluation(db, project)
    assert evaluation is not None and evaluation.confusion == ((3, 0), (0, 0))


def test_label_distribution_counts_live_pool_labels(db: Session) -> None:
    project = make_project(db, labels=("a", "b"))
    user = make_user(db)
    items = make_items(db, project, ["x", "y", "z"])
    _label(db, project, items[0], user, 0)
    _label(db, project, items[1], user, 0)
    _label(db, project, items[2], user, 1, deleted=True)
    dist = dashboard.label_distribution(db, project.id)
    assert [(d.label, d.count, d.share) for d in dist] == [("a", 2, 1.0), ("b", 0, 0.0)]


def test_stop_advice_carries_the_evidence(db: Session) -> None:
    project = make_project(db)
    assert dashboard.stop_advice(db, project) is None
    add_rounds(db, project, [(100, 0.6, 0.5), (200, 0.61, 0.501)], stop=True)
    advice = dashboard.stop_advice(db, project)
    assert advice is not None and advice.recommend_stop
    (rule,) = advice.firing
    assert rule.rule == "dev_gain" and "per 100 labels" in rule.evidence
    assert rule.title == "Dev-set gain per 100 labels"


def test_throughput_per_annotator(db: Session) -> None:
    project = make_project(db)
    fast, slow = make_user(db, name="Fast"), make_user(db, name="Slow")
    items = make_items(db, project, [f"t{i}" for i in range(5)])
    for item, ms in zip(items[:3], (1000, 2000, 3000), strict=True):
        _label(db, project, item, fast, 0, duration_ms=ms)
    _label(db, project, items[3], slow, 0, duration_ms=9000,
           created_at=utcnow() - timedelta(days=2))
    stats = dashboard.throughput(db, project.id)
    assert [s.name for s in stats] == ["Fast", "Slow"]
    assert stats[0].median_seconds == 2.0 and stats[0].per_hour == 1800.0
    assert (stats[0].labels_24h, stats[1].labels_24h) == (3, 0)


# --------------------------------------------------------------------------- adapter card


CARD = """---
base_model: /models/minilm
adapter_type: lora
adapter_config:
  r: 8
  alpha: 16.0
labels: [pos, neg]
dev_metrics: {accuracy: 0.91234567, macro_f1: 0.9}
---

# lora adapter on `minilm`

<script>alert(1)</script> stays text.
"""


def test_card_front_matter_becomes_rows_and_the_body_stays_text() -> None:
    view = adapter_card.parse_card_text(CARD)
    rows = dict(view.rows)
    assert rows["adapter_config.r"] == "8" and rows["labels"] == "pos, neg"
    assert rows["dev_metrics.accuracy"] == "0.912346"
    assert "<script>alert(1)</script>" in view.body and view.problem is None


def test_broken_cards_are_reported_not_raised() -> None:
    assert adapter_card.parse_card_text("no front matter").problem
    assert adapter_card.parse_card_text("---\n: [\n---\nbody").problem
    assert adapter_card.parse_card_text("---\nkey: 1\nbody").problem
