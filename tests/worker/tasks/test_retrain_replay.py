"""A warm-started round trains on what changed plus a replayed sample of earlier labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.tasks.project_data import LabelledSet
from worker.tasks.retrain import REPLAY_MIN, Trained, read_trained, replay_subset


def _set(n: int, *, relabel: dict[int, int] | None = None) -> LabelledSet:
    labels = [i % 3 for i in range(n)]
    for i, label in (relabel or {}).items():
        labels[i] = label
    return LabelledSet(list(range(1, n + 1)), [f"text {i}" for i in range(n)], labels)


def test_new_and_changed_labels_plus_a_replayed_sample() -> None:
    previous = dict(zip(_set(400).item_ids, _set(400).labels, strict=True))
    fit = _set(500, relabel={3: 2})  # 100 new items and one changed label
    subset, note = replay_subset(fit, previous, 1.0, seed=1)
    ids = set(subset.item_ids)
    assert set(range(401, 501)) <= ids and 4 in ids  # item 4 is row 3, relabelled
    assert len(subset) == 101 + 101 and note == "101 new or changed labels + 101 replayed of 500"
    rows = {item_id: i for i, item_id in enumerate(fit.item_ids)}
    for item_id, text, label in zip(subset.item_ids, subset.texts, subset.labels, strict=True):
        assert (text, label) == (fit.texts[rows[item_id]], fit.labels[rows[item_id]])
    assert subset.item_ids == sorted(subset.item_ids)
    again, _ = replay_subset(fit, previous, 1.0, seed=1)
    assert again.item_ids == subset.item_ids  # the sample is a function of the seed


def test_every_label_when_replay_would_not_save_much_or_there_is_no_previous_set() -> None:
    fit = _set(500)
    previous = dict(zip(fit.item_ids[:450], fit.labels[:450], strict=True))
    assert replay_subset(fit, None, 1.0, seed=0) == (fit, "all labels")
    assert replay_subset(fit, previous, 0.0, seed=0) == (fit, "all labels")
    full = dict(zip(fit.item_ids, fit.labels, strict=True))
    assert replay_subset(fit, full, 1.0, seed=0) == (fit, "all labels")  # forced retrain
    small = _set(100)
    assert replay_subset(small, dict(zip(small.item_ids[:80], small.labels[:80], strict=True)),
                         1.0, seed=0)[0] is small  # 20 new + 64 replayed is most of 100
    subset, _ = replay_subset(fit, previous, 1.0, seed=0)
    assert len(subset) == 50 + REPLAY_MIN


def test_replay_starts_once_the_labels_reach_replay_from() -> None:
    from worker.ml.training import TrainConfig

    default = TrainConfig()
    assert (default.replay_ratio, default.replay_from) == (1.0, 1000)
    previous = dict(zip(_set(900).item_ids, _set(900).labels, strict=True))
    below = _set(999)
    assert replay_subset(below, previous, 1.0, seed=0, from_labels=1000) == (below, "all labels")
    at = _set(1000)
    subset, note = replay_subset(at, previous, 1.0, seed=0, from_labels=1000)
    assert len(subset) == 200 and note == "100 new or changed labels + 100 replayed of 1000"


def test_only_a_cpu_worker_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from worker.ml.training import TrainConfig
    from worker.tasks.retrain import _replay_ratio

    config = TrainConfig(replay_ratio=2.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _replay_ratio(config) == 2.0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _replay_ratio(config) == 0.0  # a GPU retrains on every label: it takes seconds there


def test_a_version_records_every_label_it_reflects(tmp_path: Path) -> None:
    fitted = _set(7)
    trained = Trained(classifier=None, dev_metrics=None, history=[], seconds=0.0,  # type: ignore[arg-type]
                      trainable_params=0, total_params=0, base_model="x", warm_start=False,
                      stop_predictions=[], fitted=fitted)
    trained.save_trained(tmp_path)
    assert read_trained(str(tmp_path)) == dict(zip(fitted.item_ids, fitted.labels, strict=True))
    assert read_trained(str(tmp_path / "missing")) is None and read_trained(None) is None
