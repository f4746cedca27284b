"""The live head of a multi-label project: cold start, the fitted head and its thresholds, the
queue entries the annotator's page reads, and /predict's worker answer from the saved head."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.db.models import (
    SERVED_LIVE_HEAD,
    SERVED_ZERO_SHOT,
    SPLIT_DEV,
    SPLIT_POOL,
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    Label,
    LiveHeadState,
    Project,
    QueueEntry,
)
from app.domain.annotation.label_sets import majority_set
from tests.app.domain.runs_support import Db, add_items
from tests.worker.ml.tiny import FILLER, LABEL_NAMES, TOPICS
from worker.ml.multilabel import MultiLabelHead
from worker.ml.sentence_encoder import SentenceEncoder
from worker.tasks import live_multilabel
from worker.tasks.inference import predict_body
from worker.tasks.live_refit import refit_live_head
from worker.tasks.project_data import LabelledSets


def corpus(n: int, seed: int) -> tuple[list[str], list[list[int]]]:
    """Texts made of the topic words of 0, 1 or 2 topics; the set is those topics."""
    rng = random.Random(seed)
    texts, sets = [], []
    for i in range(n):
        topics = sorted(rng.sample(range(len(LABEL_NAMES)), rng.choice([0, 1, 1, 2])))
        words = [rng.choice(TOPICS[LABEL_NAMES[t]]) for t in topics for _ in range(3)]
        words += rng.sample(FILLER, 4)
        rng.shuffle(words)
        texts.append(" ".join(words) + f" {i}")
        sets.append(topics)
    return texts, sets


class Seeded:
    def __init__(self, project_id: int, label_ids: list[int], pool: dict[int, list[int]]):
        self.project_id = project_id
        self.label_ids = label_ids
        self.pool = pool


@pytest.fixture()
def seeded(file_db: Db, tiny_model: Path) -> Seeded:
    texts, sets = corpus(92, seed=5)
    with file_db.session() as session:
        project = Project(name="tags", base_model=str(tiny_model), task_type=TASK_MULTI_LABEL,
                          batch_size=6, label_budget=1000, overlap_rate=0.0)
        session.add(project)
        session.flush()
        labels = [Label(project_id=project.id, name=n, position=i)
                  for i, n in enumerate(LABEL_NAMES)]
        session.add_all(labels)
        session.flush()
        pool = add_items(session, project, texts[:72], split=SPLIT_POOL)
        dev = add_items(session, project, texts[72:], split=SPLIT_DEV)
        label_ids = [label.id for label in labels]
        for item, labelled in zip(dev, sets[72:], strict=True):
            _annotate(session, project.id, item.id, [label_ids[t] for t in labelled])
        session.commit()
        return Seeded(project.id, label_ids,
                      {item.id: s for item, s in zip(pool, sets[:72], strict=True)})


def _annotate(session: object, project_id: int, item_id: int, label_ids: list[int]) -> None:
    annotation = Annotation(project_id=project_id, item_id=item_id, label_id=None)
    session.add(annotation)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    for label_id in label_ids:
        session.add(AnnotationLabel(annotation_id=annotation.id, label_id=label_id))  # type: ignore[attr-defined]


def label(file_db: Db, seeded: Seeded, item_ids: list[int]) -> None:
    with file_db.session() as session:
        for item_id in item_ids:
            _annotate(session, seeded.project_id, item_id,
                      [seeded.label_ids[t] for t in seeded.pool[item_id]])
        session.commit()


def state(file_db: Db, seeded: Seeded) -> LiveHeadState:
    with file_db.session() as session:
        row = session.scalars(select(LiveHeadState)
                              .where(LiveHeadState.project_id == seeded.project_id)).one()
        session.expunge(row)
        return row


def queue(file_db: Db, seeded: Seeded) -> list[QueueEntry]:
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        return list(session.scalars(
            select(QueueEntry).where(QueueEntry.project_id == seeded.project_id,
                                     QueueEntry.queue_version == project.queue_version)
            .order_by(QueueEntry.rank)))


def test_below_the_minimum_no_head_is_fitted_and_items_come_at_random(
    file_db: Db, seeded: Seeded
) -> None:
    label(file_db, seeded, list(seeded.pool)[: live_multilabel.MIN_LABELLED - 1])
    result = refit_live_head(seeded.project_id, file_db.settings, file_db.sessions)
    assert result is not None and result.queued == 0
    after = state(file_db, seeded)
    assert after.served == SERVED_ZERO_SHOT and after.artifact_path in (None, "")
    assert "needs 10 labelled items (9 so far)" in after.served_reason
    assert queue(file_db, seeded) == []


def test_the_head_queues_the_most_doubtful_items_with_labels_in_doubt(
    file_db: Db, seeded: Seeded, tiny_model: Path
) -> None:
    chosen = list(seeded.pool)[:30]
    label(file_db, seeded, chosen)
    result = refit_live_head(seeded.project_id, file_db.settings, file_db.sessions)
    assert result is not None and result.labels_used == 30
    after = state(file_db, seeded)
    assert after.served == SERVED_LIVE_HEAD
    assert set(after.scores) == {"micro_f1", "macro_f1", "subset_accuracy", "hamming_loss",
                                 "live_head"}
    assert after.scores["live_head"] == after.scores["macro_f1"]
    assert "thresholds tuned on the dev set (20 items)" in after.served_reason
    head_dir = Path(str(after.artifact_path))
    head = MultiLabelHead.load(head_dir)
    assert head.extra["label_names"] == LABEL_NAMES and head.n_labels == 3
    evaluation = head.extra["evaluation"]
    assert evaluation["dev_n"] == 20 and evaluation["micro_f1"] == after.scores["micro_f1"]
    assert [row["label"] for row in evaluation["per_label"]] == LABEL_NAMES
    entries = queue(file_db, seeded)
    assert len(entries) == 12 and not {e.item_id for e in entries} & set(chosen)
    # independent recomputation: the queue is in increasing distance of the most doubtful
    # label to its threshold, over every unlabelled pool item
    encoder = SentenceEncoder(str(tiny_model), max_length=int(head.extra["max_length"]))
    with file_db.session() as session:
        from app.db.models import Item

        texts = dict(session.execute(select(Item.id, Item.text).where(
            Item.id.in_(list(seeded.pool)))).tuples().all())
    rest = [i for i in seeded.pool if i not in chosen]
    probs = head.predict_proba(encoder.embed([texts[i] for i in rest]))
    margin = np.abs(probs - head.thresholds).min(axis=1)
    expected = [rest[j] for j in np.argsort(margin, kind="stable")[:12]]
    assert [e.item_id for e in entries] == expected
    first = entries[0]
    assert first.reason.startswith("Labels in doubt: ")
    assert [p["label"] for p in first.predicted] == sorted(
        LABEL_NAMES, key=lambda n: -next(p["prob"] for p in first.predicted if p["label"] == n))
    assert all(p["proposed"] == (p["prob"] >= p["threshold"]) for p in first.predicted)
    assert len(first.neighbours) == 3
    for neighbour in first.neighbours:
        names = [LABEL_NAMES[t] for t in seeded.pool[neighbour["item_id"]]]
        assert neighbour["labels"] == names
        assert neighbour["label"] == (", ".join(names) or "none of these")


def test_predict_reads_the_saved_head_and_applies_its_thresholds(
    file_db: Db, seeded: Seeded, tiny_model: Path
) -> None:
    label(file_db, seeded, list(seeded.pool)[:30])
    refit_live_head(seeded.project_id, file_db.settings, file_db.sessions)
    after = state(file_db, seeded)
    texts = ["goal team match bank stock", "the a of and"]
    answer = predict_body({"texts": texts, "live_head": {"served": after.served,
                                                         "path": after.artifact_path}},
                          None, file_db.settings)
    head = MultiLabelHead.load(str(after.artifact_path))
    encoder = SentenceEncoder(str(tiny_model), max_length=int(head.extra["max_length"]))
    probs = head.predict_proba(encoder.embed(texts))
    np.testing.assert_allclose(answer["probabilities"], probs, atol=1e-4)
    assert answer["label_names"] == LABEL_NAMES
    assert answer["thresholds"] == pytest.approx(head.thresholds.tolist(), abs=1e-4)
    assert answer["label_sets"] == [[LABEL_NAMES[j] for j in np.flatnonzero(row >= head.thresholds)]
                                    for row in probs]
    meta = json.loads((Path(str(after.artifact_path)) / "multilabel_head.json").read_text())
    assert meta["extra"]["encoder"] == str(tiny_model)


def test_several_answers_make_a_majority_set() -> None:
    assert majority_set([{0, 1}]) == {0, 1}
    assert majority_set([{0, 1}, {0}, {0, 2}]) == {0}
    assert majority_set([{0}, {1}]) == {1}, "a tie takes the most recent set"
    assert majority_set([set(), set(), {2}]) == set()
    assert majority_set([("bug",), ("bug", "billing"), ("bug",)]) == {"bug"}


def test_choose_refuses_nothing_and_returns_no_rows_when_the_queue_is_full() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    labelled = LabelledSets(item_ids=list(range(20)), texts=[""] * 20,
                            sets=[[i % 2] for i in range(20)])
    picked = live_multilabel.choose(["a", "b"], emb[20:], list(range(20, 40)), labelled,
                                    emb[:20], LabelledSets(), np.zeros((0, 8)), 0)
    assert picked.head is not None and picked.rows == []
    assert "out-of-fold" in picked.reason


@pytest.mark.parametrize("strategy", ["cluster_threshold_margin", "mmc", "binary_entropy",
                                      "random", "entropy"])
def test_every_multi_label_strategy_fills_the_queue(strategy: str) -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(300, 8))
    labelled = LabelledSets(item_ids=list(range(30)), texts=[""] * 30,
                            sets=[[i % 3] if i % 4 else [] for i in range(30)])
    picked = live_multilabel.choose(["a", "b", "c"], emb[30:], list(range(30, 300)), labelled,
                                    emb[:30], LabelledSets(), np.zeros((0, 8)), 12,
                                    strategy=strategy, seed=2)
    assert len(picked.rows) == 12 and len(set(picked.rows)) == 12
    assert set(picked.rows) <= set(range(30, 300))
    # a single-label name (the project was created single-label) falls back to the default
    assert picked.strategy == ("threshold_margin" if strategy == "entropy" else strategy)
    if strategy == "cluster_threshold_margin":  # 270 items > 10 x 12: candidates narrowed
        from worker.ml.multilabel import threshold_margin

        margin = threshold_margin(picked.head.predict_proba(emb[30:]), picked.head.thresholds)
        candidates = set((np.argsort(-margin, kind="stable")[:120] + 30).tolist())
        assert set(picked.rows) <= candidates
