"""The data manager's domain: keyset paging, each filter, each bulk action, one item's history."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ADMIN,
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    SPLIT_DEV,
    SPLIT_TEST,
    Annotation,
    GoldItem,
    Item,
    ItemEvent,
    Label,
    LabelIssue,
    Project,
    QueueEntry,
    User,
)
from app.domain import data_manager as dm
from app.errors import InvalidInput, NotFound
from tests.factories import make_items, make_project, make_user

pytestmark = pytest.mark.db


def _label(db: Session, project: Project, name: str) -> Label:
    label = db.scalar(select(Label).where(Label.project_id == project.id, Label.name == name))
    assert label is not None
    return label


def _annotate(db: Session, project: Project, item: Item, user: User, name: str) -> Annotation:
    annotation = Annotation(project_id=project.id, item_id=item.id, annotator_id=user.id,
                            label_id=_label(db, project, name).id)
    db.add(annotation)
    db.flush()
    return annotation


class World:
    def __init__(self, db: Session) -> None:
        self.lead = make_user(db, role=ROLE_LEAD)
        self.ann1 = make_user(db, role=ROLE_ANNOTATOR)
        self.ann2 = make_user(db, role=ROLE_ANNOTATOR)
        self.project = make_project(db, lead=self.lead, annotators=[self.ann1, self.ann2])
        texts = [
            "The stock market rallied after the central bank report",
            "A thrilling football match ended in a draw",
            "Quarterly earnings beat the analysts' forecasts",
            "The goalkeeper saved a penalty in extra time",
            "Nothing much happened in the village today",
            "Market vendors sell fresh bread every morning",
        ]
        self.items = make_items(db, self.project, texts)
        self.dev = make_items(db, self.project, ["Dev set sentence about markets"], split=SPLIT_DEV)
        i = self.items
        _annotate(db, self.project, i[0], self.ann1, "positive")
        _annotate(db, self.project, i[1], self.ann1, "negative")
        _annotate(db, self.project, i[1], self.ann2, "positive")  # disagreement
        _annotate(db, self.project, i[2], self.ann2, "positive")
        self.project.queue_version = 3
        for rank, (item, label, prob) in enumerate(
            [(i[3], "negative", 0.91), (i[4], "positive", 0.55), (i[5], "negative", 0.62)]
        ):
            db.add(QueueEntry(project_id=self.project.id, queue_version=3, item_id=item.id,
                              rank=rank, predicted=[{"label": label, "prob": prob},
                                                    {"label": "x", "prob": 1 - prob}]))
        # An older queue version must not count as the current prediction.
        db.add(QueueEntry(project_id=self.project.id, queue_version=2, item_id=i[0].id, rank=0,
                          predicted=[{"label": "negative", "prob": 0.99}]))
        db.flush()
        # Another project with matching text: never in this project's results.
        other = make_project(db, lead=make_user(db, role=ROLE_LEAD))
        self.other_items = make_items(db, other, ["The stock market rallied again"])

    def ids(self, db: Session, **raw: str) -> list[int]:
        filters = dm.parse_filters(raw, strict=True)
        return [row.id for row in dm.browse(db, self.project, filters, limit=500).rows]


@pytest.fixture()
def world(db: Session) -> World:
    return World(db)


def test_each_filter_matches_exactly_its_items(db: Session, world: World) -> None:
    i = [item.id for item in world.items]
    assert world.ids(db) == i + [world.dev[0].id]
    assert world.ids(db, q="market") == [i[0], i[5], world.dev[0].id]  # word and prefix "markets"
    assert world.ids(db, q="stock rall") == [i[0]]  # every word, the last as a prefix
    assert world.ids(db, q="penalty goalkeeper") == [i[3]]
    assert world.ids(db, q="%' OR 1=1 --") == []  # punctuation is never syntax
    assert world.ids(db, label="positive") == [i[0], i[1], i[2]]
    assert world.ids(db, label="negative") == [i[1]]
    assert world.ids(db, annotator=str(world.ann1.id)) == [i[0], i[1]]
    assert world.ids(db, split="dev") == [world.dev[0].id]
    assert world.ids(db, labelled="yes") == [i[0], i[1], i[2]]
    assert world.ids(db, labelled="no") == [i[3], i[4], i[5], world.dev[0].id]
    assert world.ids(db, disagreement="yes") == [i[1]]
    assert i[1] not in world.ids(db, disagreement="no")
    assert world.ids(db, predicted="negative") == [i[3], i[5]]
    assert world.ids(db, min_confidence="0.6") == [i[3], i[5]]
    assert world.ids(db, min_confidence="0.6", max_confidence="0.7") == [i[5]]
    assert world.ids(db, excluded="no") == i + [world.dev[0].id]
    assert world.ids(db, excluded="yes") == []
    assert world.ids(db, q="market", labelled="no") == [i[5], world.dev[0].id]
    assert dm.count_matching(db, world.project, {"q": "market"}) == dm.MatchCount(3)


def test_rows_carry_votes_label_and_current_prediction(db: Session, world: World) -> None:
    rows = {row.id: row for row in dm.browse(db, world.project, {}).rows}
    disputed = rows[world.items[1].id]
    assert [v.label for v in disputed.votes] == ["negative", "positive"]
    assert disputed.label == "positive"  # a tie goes to the latest vote, as in the worker
    assert disputed.disagreement
    assert rows[world.items[0].id].prediction is None  # only an old queue version has one
    assert rows[world.items[3].id].prediction == dm.Prediction("negative", 0.91)


def test_bad_filter_values_are_refused(db: Session, world: World) -> None:
    for raw in ({"split": "train"}, {"labelled": "maybe"}, {"min_confidence": "2"},
                {"annotator": "abc"}, {"nope": "1"}):
        with pytest.raises(InvalidInput):
            dm.parse_filters(raw, strict=True)
    assert dm.parse_filters({"nope": "1", "split": ""}) == {}


def test_keyset_pages_have_no_duplicates_or_gaps_while_rows_are_inserted(
    db: Session, world: World
) -> None:
    make_items(db, world.project, [f"bulk text number {n}" for n in range(23)])
    expected = set(world.ids(db))
    seen: list[int] = []
    after = 0
    inserted: list[int] = []
    while True:
        page = dm.browse(db, world.project, {}, after_id=after, limit=4)
        seen.extend(row.id for row in page.rows)
        # Rows arrive between page loads; they have higher ids and show up at the end.
        inserted.extend(item.id for item in make_items(
            db, world.project, [f"inserted while paging {len(inserted)}"]
        ))
        if page.next_after is None:
            break
        after = page.next_after
    assert len(seen) == len(set(seen)), "a row appeared on two pages"
    assert expected <= set(seen), "a row that existed before paging was skipped"
    assert seen == sorted(seen)
    assert set(seen) - expected <= set(inserted)


def test_search_pages_and_capped_counts_agree_with_one_pass(
    db: Session, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny search windows (SQLite walks the matches window by window, Postgres windows of ids)
    and a tiny count cap: every page and count equals what one pass over all matches gives."""
    monkeypatch.setattr(dm, "SEARCH_WINDOW", 2)
    monkeypatch.setattr(dm, "MAX_SEARCH_WINDOW", 4)
    monkeypatch.setattr(dm, "PG_SEARCH_WINDOW", 2)
    extra = make_items(db, world.project, [
        f"alpha report {n}" if n % 3 else f"alpha beta {n}" for n in range(40)
    ])
    for item in extra[::4]:
        _annotate(db, world.project, item, world.ann1, "positive")
    for raw in ({"q": "alpha"}, {"q": "alpha", "labelled": "yes"}, {"q": "beta"},
                {"q": "alpha", "labelled": "no", "split": "pool"}, {"q": "al"}, {"q": "zzz"}):
        filters = dm.parse_filters(raw, strict=True)
        expected = dm.target_ids(db, world.project, dm.Target(filters=filters))
        for limit in (1, 3, 500):
            seen, after = [], 0
            while True:
                page = dm.browse(db, world.project, filters, after_id=after, limit=limit)
                seen.extend(row.id for row in page.rows)
                if page.next_after is None:
                    break
                after = page.next_after
            assert seen == expected, (raw, limit)
        assert dm.count_matching(db, world.project, filters, cap=None) == dm.MatchCount(
            len(expected))
        capped = dm.count_matching(db, world.project, filters, cap=5)
        if len(expected) > 5:
            assert capped == dm.MatchCount(5, capped=True) and str(capped) == "5+"
        else:
            assert capped == dm.MatchCount(len(expected))
    assert len(dm.target_ids(db, world.project, dm.Target(filters={"q": "alpha"}))) == 40


def test_the_last_word_is_a_prefix_from_two_characters(db: Session, world: World) -> None:
    alpha, single = make_items(db, world.project, ["alpha centauri", "plan a and plan b"])
    assert alpha.id in world.ids(db, q="al") and single.id not in world.ids(db, q="al")
    one_letter = world.ids(db, q="a")  # one character: the word itself, not a prefix
    assert single.id in one_letter and alpha.id not in one_letter
    assert world.ids(db, q="plan a") == [single.id]


def test_search_index_follows_updates_and_deletes(db: Session, world: World) -> None:
    item = world.items[4]
    item.text = "A brand new zeppelin story"
    db.flush()
    assert world.ids(db, q="zeppelin") == [item.id]
    assert world.ids(db, q="village") == []
    db.delete(item)
    db.flush()
    assert world.ids(db, q="zeppelin") == []


def test_relabel_on_a_filter_keeps_every_annotation(db: Session, world: World) -> None:
    version = world.project.data_version
    target = dm.Target(filters={"label": "positive"})
    result = dm.run_bulk_action(db, world.project, world.lead, target, "relabel", label="negative")
    relabelled = [world.items[0].id, world.items[1].id, world.items[2].id]
    assert result.items == 3 and result.annotations_superseded == 4
    rows = {r.id: r for r in dm.browse(db, world.project, {}).rows}
    for item_id in relabelled:
        assert rows[item_id].label == "negative"
        assert [v.source for v in rows[item_id].votes] == [dm.LEAD_SOURCE]
    all_annotations = db.scalars(
        select(Annotation).where(Annotation.project_id == world.project.id)
    ).all()
    assert len(all_annotations) == 4 + 3  # nothing deleted
    superseded = [a for a in all_annotations if a.superseded_by_id is not None]
    assert len(superseded) == 4
    detail = dm.item_detail(db, world.project, world.items[1].id)
    assert [a.status for a in detail.annotations] == ["superseded", "superseded", "live"]
    assert detail.events[0].action == "relabel" and detail.events[0].actor == world.lead.email
    db.refresh(world.project)
    assert world.project.data_version == version + 1


def test_move_exclude_include_on_a_selection(db: Session, world: World) -> None:
    chosen = (world.items[0].id, world.items[3].id)
    target = dm.Target(item_ids=chosen)
    moved = dm.run_bulk_action(db, world.project, world.lead, target, "move", split=SPLIT_TEST)
    assert moved.changed == 2
    assert world.ids(db, split="test") == list(chosen)
    assert dm.run_bulk_action(db, world.project, world.lead, target, "move",
                              split=SPLIT_TEST).changed == 0
    excluded = dm.run_bulk_action(db, world.project, world.lead, target, "exclude")
    assert excluded.changed == 2
    assert world.ids(db, excluded="yes") == list(chosen)
    dm.run_bulk_action(db, world.project, world.lead, dm.Target(item_ids=chosen[:1]), "include")
    assert world.ids(db, excluded="yes") == [chosen[1]]
    history = dm.item_detail(db, world.project, chosen[0]).events
    assert [(e.action, e.detail) for e in history] == [
        ("move", {"from": "pool", "to": "test"}), ("exclude", {}), ("include", {}),
    ]


def test_exclusion_is_honoured_by_the_workers_labelled_set(db: Session, world: World) -> None:
    from app.config import Settings
    from worker.tasks.project_data import labelled_set, load_snapshot

    snapshot = load_snapshot(db, world.project.id, Settings())
    before = labelled_set(db, snapshot, "pool").item_ids
    assert world.items[0].id in before
    dm.set_excluded(db, world.project, world.lead, dm.Target(item_ids=(world.items[0].id,)), True)
    after = labelled_set(db, snapshot, "pool").item_ids
    assert after == [i for i in before if i != world.items[0].id]


def test_delete_needs_confirmation_when_annotations_would_be_lost(
    db: Session, world: World
) -> None:
    labelled = dm.Target(filters={"labelled": "yes"})
    with pytest.raises(dm.ConfirmationRequired) as refused:
        dm.run_bulk_action(db, world.project, world.lead, dm.Target(filters={"q": "market"}),
                           "delete")
    assert refused.value.details == {"items": 3, "labelled_items": 1, "annotations": 1}
    assert len(world.ids(db)) == 7  # nothing deleted
    unlabelled = dm.Target(item_ids=(world.items[4].id,))
    assert dm.run_bulk_action(db, world.project, world.lead, unlabelled, "delete").items == 1
    result = dm.run_bulk_action(db, world.project, world.lead, labelled, "delete", confirm=True)
    assert result.items == 3 and result.annotations_deleted == 4
    assert world.ids(db) == [world.items[3].id, world.items[5].id, world.dev[0].id]
    assert db.scalar(select(Annotation.id).where(Annotation.project_id == world.project.id)) is None
    events = db.scalars(select(ItemEvent.action).where(ItemEvent.item_id == world.items[0].id))
    assert list(events) == ["delete"]


def test_another_projects_items_are_not_found(db: Session, world: World) -> None:
    foreign = world.other_items[0].id
    with pytest.raises(NotFound):
        dm.item_detail(db, world.project, foreign)
    with pytest.raises(NotFound):
        dm.run_bulk_action(db, world.project, world.lead, dm.Target(item_ids=(foreign,)),
                           "exclude")
    assert db.get(Item, foreign) is not None and not db.get(Item, foreign).excluded  # type: ignore[union-attr]


def test_relabel_refuses_an_unknown_label_and_action(db: Session, world: World) -> None:
    target = dm.Target(item_ids=(world.items[0].id,))
    with pytest.raises(InvalidInput):
        dm.run_bulk_action(db, world.project, world.lead, target, "relabel", label="nope")
    with pytest.raises(InvalidInput):
        dm.run_bulk_action(db, world.project, world.lead, target, "explode")


def test_annotators_lists_members_and_importers(db: Session, world: World) -> None:
    admin = make_user(db, role=ROLE_ADMIN)
    _annotate(db, world.project, world.items[5], admin, "negative")
    emails = {a.email for a in dm.annotators(db, world.project)}
    assert {world.lead.email, world.ann1.email, world.ann2.email, admin.email} == emails


def test_gold_and_likely_error_filters(db: Session, world: World) -> None:
    i = world.items
    positive = _label(db, world.project, "positive")
    negative = _label(db, world.project, "negative")
    db.add(GoldItem(project_id=world.project.id, item_id=i[4].id, label_id=positive.id))
    for item, score in ((i[0], 0.9), (i[2], 0.35)):
        db.add(LabelIssue(project_id=world.project.id, item_id=item.id,
                          given_label_id=positive.id, suggested_label_id=negative.id,
                          score=score))
    db.flush()
    assert world.ids(db, gold="yes") == [i[4].id]
    assert i[4].id not in world.ids(db, gold="no") and i[0].id in world.ids(db, gold="no")
    assert world.ids(db, min_error_score="0.3") == [i[0].id, i[2].id]
    assert world.ids(db, min_error_score="0.5") == [i[0].id]
    assert world.ids(db, min_error_score="0.5", label="positive") == [i[0].id]
    with pytest.raises(InvalidInput):
        dm.parse_filters({"min_error_score": "1.5"}, strict=True)
