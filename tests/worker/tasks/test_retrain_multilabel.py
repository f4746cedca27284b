"""The adapter round of a multi-label project (issue 19) on a tiny BERT: a multi-label version
with dev-tuned thresholds, its round metric, the live refit it asks for, idempotency, the
minimum it waits for, warm start and LP-FT, and the served choice between the adapter and the
live head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db.models import (
    RUN_QUEUE,
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    SERVED_ADAPTER,
    SERVED_LIVE_HEAD,
    SPLIT_DEV,
    SPLIT_POOL,
    TASK_MULTI_LABEL,
    VERSION_PROMOTED,
    Annotation,
    AnnotationLabel,
    Label,
    LiveHeadState,
    ModelVersion,
    Project,
    RoundMetric,
    TrainingRun,
)
from app.domain.live_head import served_live_head
from app.domain.model_versions import list_versions, resolve_artifact
from app.domain.runs import list_runs, lock_project, request_retrain
from app.jobs import Job
from contract.tasks import TASK_LIVE_REFIT, TASK_RECOMPUTE_QUEUE
from tests.app.domain.runs_support import Db, add_items
from tests.worker.ml.tiny import LABEL_NAMES, make_multilabel_corpus
from tests.worker.tasks.seed import TINY_TRAIN_CONFIG
from worker.tasks.live_multilabel import (
    MIN_DEV,
    MIN_LABELLED,
    SERVED_MIN_GAIN,
    AdapterScore,
    dev_fingerprint,
    served_choice,
)
from worker.tasks.live_refit import refit_live_head
from worker.tasks.project_data import LabelledSets, labelled_sets, load_snapshot
from worker.tasks.retrain import retrain_body
from worker.tasks.runner import execute_run


@dataclass
class MultiSeeded:
    project_id: int
    label_ids: list[int]
    pool: dict[int, list[int]]
    """Pool item id -> its gold label set (label indices)."""
    dev_ids: list[int]


def _answer(session: object, project_id: int, item_id: int, label_ids: list[int]) -> None:
    annotation = Annotation(project_id=project_id, item_id=item_id, label_id=None)
    session.add(annotation)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    for label_id in label_ids:
        session.add(AnnotationLabel(annotation_id=annotation.id, label_id=label_id))  # type: ignore[attr-defined]


def seed_multi_label(file_db: Db, tiny_model: Path, *, dev_size: int = 14) -> MultiSeeded:
    texts, sets = make_multilabel_corpus(60 + dev_size, seed=4)
    with file_db.session() as session:
        project = Project(name="tags", base_model=str(tiny_model), task_type=TASK_MULTI_LABEL,
                          train_config=dict(TINY_TRAIN_CONFIG), batch_size=6,
                          label_budget=1000, overlap_rate=0.0)
        session.add(project)
        session.flush()
        labels = [Label(project_id=project.id, name=n, position=i)
                  for i, n in enumerate(LABEL_NAMES)]
        session.add_all(labels)
        session.flush()
        label_ids = [label.id for label in labels]
        pool = add_items(session, project, texts[:60], split=SPLIT_POOL)
        dev = add_items(session, project, texts[60:], split=SPLIT_DEV)
        for item, answer in zip(dev, sets[60:], strict=True):
            _answer(session, project.id, item.id, [label_ids[t] for t in answer])
        session.commit()
        return MultiSeeded(project.id, label_ids,
                           {item.id: s for item, s in zip(pool, sets[:60], strict=True)},
                           [item.id for item in dev])


@pytest.fixture()
def multi(file_db: Db, tiny_model: Path) -> MultiSeeded:
    return seed_multi_label(file_db, tiny_model)


def submit(file_db: Db, seeded: MultiSeeded, item_ids: list[int]) -> TrainingRun:
    """Label ``item_ids`` with their gold sets, close the batch and ask for a retrain."""
    with file_db.session() as session:
        project = lock_project(session, seeded.project_id)
        for item_id in item_ids:
            _answer(session, seeded.project_id, item_id,
                    [seeded.label_ids[t] for t in seeded.pool[item_id]])
        project.data_version += 1
        session.flush()
        run = request_retrain(session, project, reason=f"batch of {len(item_ids)}")
        session.commit()
        return run


def execute(file_db: Db, run_id: int) -> TrainingRun:
    execute_run(run_id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    with file_db.session() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def labelled(seeded: MultiSeeded, n: int, start: int = 0) -> list[int]:
    return list(seeded.pool)[start:start + n]


def metric_of(file_db: Db, version_id: int) -> RoundMetric:
    with file_db.session() as session:
        row = session.scalars(select(RoundMetric)
                              .where(RoundMetric.model_version_id == version_id)).one()
        session.expunge(row)
        return row


def dev_sets(file_db: Db, seeded: MultiSeeded) -> LabelledSets:
    with file_db.session() as session:
        snapshot = load_snapshot(session, seeded.project_id, file_db.settings)
        return labelled_sets(session, snapshot, SPLIT_DEV)


def test_a_round_writes_a_multi_label_version_measures_it_and_asks_for_a_live_refit(
    file_db: Db, multi: MultiSeeded, sent: list[Job]
) -> None:
    run = execute(file_db, submit(file_db, multi, labelled(multi, 24)).id)
    assert run.status == RUN_SUCCEEDED, run.error
    assert "multi-label adapter on 24 label sets" in str(run.message)
    with file_db.session() as session:
        project = session.get(Project, multi.project_id)
        version = session.get(ModelVersion, run.model_version_id)
        assert project is not None and version is not None
        assert project.current_model_version_id == version.id
        assert version.status == VERSION_PROMOTED and version.labels_used == 24
        path = resolve_artifact(version.artifact_path, file_db.settings)
        version_metrics = dict(version.metrics)
        queue_runs = list_runs(session, multi.project_id, kind=RUN_QUEUE)
    from worker.ml.artifacts import load_artifact, read_card, read_meta
    from worker.ml.multilabel import label_matrix, report

    meta = read_meta(path)
    assert meta["task_type"] == "multi_label" and len(meta["thresholds"]) == 3
    assert read_card(path)["task_type"] == "multi_label"
    assert not (path / "trained.npz").exists()  # replay is single-label only
    classifier = load_artifact(path, device="cpu")
    assert classifier.multi_label
    # the recorded dev figures are the artifact's own at its stored (dev-tuned) thresholds
    dev = dev_sets(file_db, multi)
    again = report(label_matrix(dev.sets, 3), classifier.predict_sets(dev.texts), LABEL_NAMES)
    metric = metric_of(file_db, version.id)
    assert metric.macro_f1 == pytest.approx(again["macro_f1"], abs=1e-6)
    assert metric.dev_accuracy == pytest.approx(again["subset_accuracy"], abs=1e-6)
    assert metric.per_class_f1 == {row["label"]: row["f1"] for row in again["per_label"]}
    details = metric.details
    assert details["task_type"] == "multi_label" and details["dev_n"] == 14
    assert details["micro_f1"] == pytest.approx(again["micro_f1"], abs=1e-6)
    assert details["hamming_loss"] == pytest.approx(again["hamming_loss"], abs=1e-6)
    assert list(details["thresholds"]) == LABEL_NAMES
    assert [details["thresholds"][n] for n in LABEL_NAMES] == pytest.approx(meta["thresholds"])
    assert details["dev_fingerprint"] == dev_fingerprint(dev)
    assert details["train_seconds"] > 0 and details["warm_start"] is False
    assert details["trainable_params"] > 0 and details["base_model"]
    assert {r["rule"] for r in metric.stop_recommendations} >= {"dev_gain", "budget"}
    assert version_metrics["dev_macro_f1"] == pytest.approx(metric.macro_f1)
    assert version_metrics["dev_micro_f1"] == pytest.approx(details["micro_f1"])
    # the hand-off: a live refit (it builds the queue and picks the served model), no rebuild
    names = [j.name for j in sent]
    assert TASK_LIVE_REFIT in names and TASK_RECOMPUTE_QUEUE not in names
    assert queue_runs == []


def test_the_same_data_version_is_not_trained_twice(
    file_db: Db, multi: MultiSeeded, sent: list[Job]
) -> None:
    first = execute(file_db, submit(file_db, multi, labelled(multi, 12)).id)
    assert first.status == RUN_SUCCEEDED, first.error
    with file_db.session() as session:
        again = request_retrain(session, multi.project_id, reason="admin button")
        session.commit()
    summary = execute_run(again.id, RUN_RETRAIN, retrain_body, settings=file_db.settings)
    assert "already covers data version 1" in summary
    with file_db.session() as session:
        assert len(list_versions(session, multi.project_id)) == 1


def test_below_the_minimum_the_round_waits(
    file_db: Db, multi: MultiSeeded, sent: list[Job]
) -> None:
    few = execute(file_db, submit(file_db, multi, labelled(multi, MIN_LABELLED - 1)).id)
    assert few.status == RUN_SUCCEEDED and few.model_version_id is None
    assert f"waiting for {MIN_LABELLED} labelled items" in str(few.message)
    assert f"({MIN_LABELLED - 1} labelled so far" in str(few.message)
    with file_db.session() as session:
        assert list_versions(session, multi.project_id) == []


def test_a_single_label_in_use_is_not_enough(
    file_db: Db, multi: MultiSeeded, sent: list[Job]
) -> None:
    one_label = [i for i, s in multi.pool.items() if s in ([0], [])][:MIN_LABELLED + 2]
    assert len(one_label) == MIN_LABELLED + 2
    run = execute(file_db, submit(file_db, multi, one_label).id)
    assert run.status == RUN_SUCCEEDED and run.model_version_id is None
    assert "two labels in use" in str(run.message)
    assert "1 label(s) with a positive" in str(run.message)
    with file_db.session() as session:
        assert list_versions(session, multi.project_id) == []


def test_the_next_round_warm_starts_from_a_multi_label_version_and_lp_ft_from_the_live_head(
    file_db: Db, multi: MultiSeeded, sent: list[Job]
) -> None:
    file_db.settings.adapter_growth_factor = 1.0  # every batch retrains, as on a GPU worker
    first = execute(file_db, submit(file_db, multi, labelled(multi, 12)).id)
    assert first.status == RUN_SUCCEEDED, first.error
    assert first.metrics["warm_start"] is False
    assert refit_live_head(multi.project_id, file_db.settings, file_db.sessions) is not None
    second = execute(file_db, submit(file_db, multi, labelled(multi, 12, start=12)).id)
    assert second.status == RUN_SUCCEEDED, second.error
    assert second.metrics["warm_start"] is True
    # the head starts from a one-vs-rest regression on the stored embeddings of all 24 items
    assert ("head from a one-vs-rest regression on the stored embeddings of this round's 24 "
            "label sets") in str(second.log_tail)
    assert first.model_version_id is not None and second.model_version_id is not None
    def head_source(version_id: int) -> list[str]:
        return [h["source"] for h in metric_of(file_db, version_id).details["history"]
                if h.get("event") == "head_init"]

    # LP-FT: the head started from the regression; the first round had no live head yet, so its
    # head started from scratch with each label's bias at its base rate
    assert head_source(second.model_version_id) == ["linear probe (live head)"]
    assert head_source(first.model_version_id) == ["label base rates (bias at their log-odds)"]
    from worker.tasks.round_parts import warm_start_source

    with file_db.session() as session:
        snapshot = load_snapshot(session, multi.project_id, file_db.settings)
    from worker.ml.artifacts import read_meta

    assert snapshot.current_artifact is not None
    meta = read_meta(Path(snapshot.current_artifact))
    adapter = meta["adapter_config"]
    base = str(snapshot.base_model)
    assert warm_start_source(snapshot, base, adapter, True, multi_label=True) \
        == snapshot.current_artifact
    # a single-label round never starts from a multi-label artifact (nor the reverse)
    assert warm_start_source(snapshot, base, adapter, True) is None


def test_the_live_refit_serves_the_adapter_only_when_it_wins_on_the_same_dev_set(
    file_db: Db, multi: MultiSeeded, sent: list[Job]
) -> None:
    run = execute(file_db, submit(file_db, multi, labelled(multi, 24)).id)
    assert run.status == RUN_SUCCEEDED and run.model_version_id is not None

    def refit_with(adapter_macro_f1: float) -> LiveHeadState:
        with file_db.session() as session:
            row = session.scalars(select(RoundMetric).where(
                RoundMetric.model_version_id == run.model_version_id)).one()
            row.macro_f1 = adapter_macro_f1
            session.commit()
        assert refit_live_head(multi.project_id, file_db.settings, file_db.sessions)
        with file_db.session() as session:
            state = session.scalars(select(LiveHeadState).where(
                LiveHeadState.project_id == multi.project_id)).one()
            session.expunge(state)
            return state

    better = refit_with(1.0)
    live = better.scores["live_head"]
    assert live < 1.0 and better.scores["adapter"] == 1.0
    assert better.served == SERVED_ADAPTER
    assert f"adapter v1 serves: dev macro-F1 1.000 against the live head's {live:.3f}" \
        in better.served_reason
    assert "the queue still comes from the live head's probabilities" in better.served_reason
    with file_db.session() as session:
        assert served_live_head(session, multi.project_id) is None  # /predict -> the adapter
    worse = refit_with(0.0)
    assert worse.served == SERVED_LIVE_HEAD
    assert f"the live head serves: dev macro-F1 {worse.scores['live_head']:.3f} against " \
           "adapter v1's 0.000" in worse.served_reason
    tie = refit_with(worse.scores["live_head"] + SERVED_MIN_GAIN / 2)
    assert tie.served == SERVED_LIVE_HEAD and "the adapter must win by more than 0.01" \
        in tie.served_reason
    # a dev set changed since the round: the adapter's score is not comparable any more
    with file_db.session() as session:
        extra = add_items(session, session.get(Project, multi.project_id),  # type: ignore[arg-type]
                          ["goal team bank"], split=SPLIT_DEV)[0]
        _answer(session, multi.project_id, extra.id, multi.label_ids[:2])
        session.commit()
    stale = refit_with(1.0)
    assert stale.served == SERVED_LIVE_HEAD and "adapter" not in stale.scores
    assert "measured on another dev set (14 items" in stale.served_reason


def test_without_a_dev_set_the_version_is_written_but_the_live_head_serves(
    file_db: Db, tiny_model: Path, sent: list[Job]
) -> None:
    seeded = seed_multi_label(file_db, tiny_model, dev_size=MIN_DEV - 1)
    run = execute(file_db, submit(file_db, seeded, labelled(seeded, 14)).id)
    assert run.status == RUN_SUCCEEDED, run.error
    assert run.model_version_id is not None
    metric = metric_of(file_db, run.model_version_id)
    assert metric.macro_f1 is None and metric.details["dev_fingerprint"] is None
    assert metric.details["thresholds"] == {name: 0.5 for name in LABEL_NAMES}
    assert refit_live_head(seeded.project_id, file_db.settings, file_db.sessions)
    with file_db.session() as session:
        state = session.scalars(select(LiveHeadState)).one()
        assert state.served == SERVED_LIVE_HEAD
        assert "adapter v1 has no dev score" in state.served_reason


# --------------------------------------------------------------------- the comparison itself
def _dev(n: int = MIN_DEV) -> LabelledSets:
    return LabelledSets(item_ids=list(range(n)), texts=[""] * n,
                        sets=[[i % 3] if i % 4 else [] for i in range(n)])


def _adapter(macro: float | None, dev: LabelledSets | None = None) -> AdapterScore:
    return AdapterScore(version=3, macro_f1=macro, micro_f1=None, dev_n=MIN_DEV,
                        dev_fingerprint=dev_fingerprint(dev if dev is not None else _dev()))


def test_served_choice_picks_the_better_dev_macro_f1_and_the_live_head_on_a_tie() -> None:
    dev = _dev()
    served, why = served_choice(0.60, _adapter(0.70), dev)
    assert served == SERVED_ADAPTER
    assert "adapter v3 serves: dev macro-F1 0.700 against the live head's 0.600" in why
    served, why = served_choice(0.70, _adapter(0.60), dev)
    assert served == SERVED_LIVE_HEAD
    assert "the live head serves: dev macro-F1 0.700 against adapter v3's 0.600" in why
    assert served_choice(0.65, _adapter(0.65), dev)[0] == SERVED_LIVE_HEAD
    assert served_choice(0.65, _adapter(0.650004), dev)[0] == SERVED_LIVE_HEAD  # float noise
    # a gain within the margin is noise on a small dev set: the cheaper live head serves
    assert served_choice(0.65, _adapter(0.65 + SERVED_MIN_GAIN), dev)[0] == SERVED_LIVE_HEAD
    assert served_choice(0.65, _adapter(0.65 + 2 * SERVED_MIN_GAIN), dev)[0] == SERVED_ADAPTER
    assert served_choice(0.65, None, dev) == (SERVED_LIVE_HEAD, "")


def test_served_choice_keeps_the_live_head_without_a_comparable_adapter_score() -> None:
    dev = _dev()
    served, why = served_choice(0.5, _adapter(None), dev)
    assert served == SERVED_LIVE_HEAD and "has no dev score" in why
    served, why = served_choice(None, _adapter(0.9), dev)
    assert served == SERVED_LIVE_HEAD and f"fewer than {MIN_DEV} items" in why
    changed = LabelledSets(dev.item_ids, dev.texts, [[0, 1], *dev.sets[1:]])
    served, why = served_choice(0.5, _adapter(0.9), changed)  # a dev set changed
    assert served == SERVED_LIVE_HEAD and "another dev set" in why
    grown = _dev(MIN_DEV + 1)
    assert served_choice(0.5, _adapter(0.9), grown)[0] == SERVED_LIVE_HEAD


def test_the_dev_fingerprint_follows_items_and_sets_not_their_order_inside_a_set() -> None:
    a = LabelledSets([1, 2], ["x", "y"], [[0, 2], []])
    assert dev_fingerprint(a) == dev_fingerprint(LabelledSets([1, 2], ["", ""], [[2, 0], []]))
    assert dev_fingerprint(a) != dev_fingerprint(LabelledSets([1, 3], ["", ""], [[0, 2], []]))
    assert dev_fingerprint(a) != dev_fingerprint(LabelledSets([1, 2], ["", ""], [[0], []]))
    assert len(dev_fingerprint(a)) == 20
