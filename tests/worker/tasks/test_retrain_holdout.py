"""Adapter rounds without a dev set: a stratified slice is held out of training, scored, and used
by the live refit to choose the served model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from app.db.models import RUN_SUCCEEDED, LiveHeadState, ModelVersion, RoundMetric
from app.domain.model_versions import resolve_artifact
from app.jobs import Job
from tests.app.domain.runs_support import Db
from tests.worker.tasks.seed import Seeded, seed_project
from tests.worker.tasks.test_retrain import retrain
from worker.ml import training
from worker.ml.live_head import holdout_slice
from worker.tasks.live_refit import HELD_OUT_FILE, load_held_out, refit_live_head


@pytest.fixture()
def no_dev(file_db: Db, tiny_model: Path) -> Seeded:
    with file_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model), dev_size=0)
        session.commit()
    return seeded


@pytest.fixture()
def trained_texts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts every adapter round really trained on (the real trainer still runs)."""
    seen: list[list[str]] = []
    real = training.train_classifier

    def recording(texts: Any, labels: Any, **kw: Any) -> Any:
        seen.append(list(texts))
        return real(texts, labels, **kw)

    monkeypatch.setattr(training, "train_classifier", recording)
    return seen


def _texts(file_db: Db, ids: list[int]) -> list[str]:
    from app.db.models import Item

    with file_db.session() as session:
        by_id = dict(session.execute(select(Item.id, Item.text).where(Item.id.in_(ids))).all())
    return [by_id[i] for i in ids]


def test_a_round_without_dev_set_holds_out_a_stratified_slice_it_never_trains_on(
    file_db: Db, no_dev: Seeded, trained_texts: list[list[str]], sent: list[Job]
) -> None:
    labelled = no_dev.pool_ids[:30]
    run = retrain(file_db, no_dev, 30)
    assert run.status == RUN_SUCCEEDED, run.error
    gold = [no_dev.pool_gold[i] for i in labelled]
    mask = holdout_slice(labelled, gold, seed=no_dev.project_id)
    held = [i for i, m in zip(labelled, mask, strict=True) if m]
    rest = [i for i, m in zip(labelled, mask, strict=True) if not m]
    assert held and {no_dev.pool_gold[i] for i in held} == set(gold)  # every class in the slice
    # the adapter trained on exactly the other labelled items
    assert len(trained_texts) == 1
    assert sorted(trained_texts[0]) == sorted(_texts(file_db, rest))
    assert not set(trained_texts[0]) & set(_texts(file_db, held))
    with file_db.session() as session:
        version = session.get(ModelVersion, run.model_version_id)
        metric = session.scalars(select(RoundMetric)).one()
        assert version is not None
        artifact = resolve_artifact(version.artifact_path, file_db.settings)
    assert version.labels_used == 30  # the round covers every label; it trained on the rest
    assert metric.macro_f1 is None  # no dev set: the dev metrics stay empty
    summary = metric.details["held_out"]
    assert summary["n"] == len(held) and summary["trained_on"] == len(rest)
    assert 0.0 <= summary["macro_f1"] <= 1.0
    # the slice's probabilities sit next to the adapter and match it
    assert (artifact / HELD_OUT_FILE).is_file()
    stored = load_held_out(str(artifact))
    assert stored is not None and stored.item_ids.tolist() == held
    from worker.ml.artifacts import load_artifact

    again = load_artifact(artifact).predict_proba(_texts(file_db, held))
    np.testing.assert_allclose(stored.probs, again, atol=1e-4)
    # the live refit compares the adapter with the head's out-of-fold scores on that slice
    result = refit_live_head(no_dev.project_id, file_db.settings, file_db.sessions)
    assert result is not None
    with file_db.session() as session:
        state = session.scalars(select(LiveHeadState)).one()
    assert f"a held-out slice of {len(held)} labels" in state.served_reason
    assert "-fold CV over 30 labels" in state.served_reason
    assert {"live_head", "slice_live_head", "slice_adapter", "slice_average"} <= set(state.scores)
    assert state.history[-1]["slice_adapter"] == state.scores["slice_adapter"]


def test_the_next_round_starts_from_a_live_head_that_never_saw_the_slice(
    file_db: Db, no_dev: Seeded, trained_texts: list[list[str]], sent: list[Job]
) -> None:
    first = retrain(file_db, no_dev, 18)
    assert first.status == RUN_SUCCEEDED, first.error
    assert refit_live_head(no_dev.project_id, file_db.settings, file_db.sessions) is not None
    second = retrain(file_db, no_dev, 12)
    assert second.status == RUN_SUCCEEDED, second.error
    with file_db.session() as session:
        rows = list(session.scalars(select(RoundMetric).order_by(RoundMetric.id)))
    events = [h.get("event") for h in rows[1].details["history"]]
    assert "head_init" in events  # LP-FT from a head refitted on the training part only
    labelled = no_dev.pool_ids[:30]
    mask = holdout_slice(labelled, [no_dev.pool_gold[i] for i in labelled], seed=no_dev.project_id)
    held = {i for i, m in zip(labelled, mask, strict=True) if m}
    assert not set(trained_texts[1]) & set(_texts(file_db, sorted(held)))
    assert rows[1].details["held_out"]["n"] == len(held)
