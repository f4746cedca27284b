"""Multi-label building blocks: the one-vs-rest head, thresholds, metrics against scikit-learn,
and the acquisition scores on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from contract.errors import ConfigError
from worker.ml.multilabel import (
    DEFAULT_THRESHOLD,
    MultiLabelHead,
    co_occurrence,
    fit_with_thresholds,
    label_matrix,
    labels_in_doubt,
    mean_binary_entropy,
    mmc,
    predict_sets,
    report,
    threshold_margin,
    tune_thresholds,
)


def _data(n: int = 400, d: int = 16, L: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items whose labels are set by independent directions: learnable per label."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    directions = rng.standard_normal((L, d))
    Y = (X @ directions.T > 0.3).astype(np.int8)
    return X / np.linalg.norm(X, axis=1, keepdims=True), Y


def test_label_matrix_accepts_empty_sets_and_refuses_unknown_labels() -> None:
    Y = label_matrix([[0, 2], [], [1]], 3)
    assert Y.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(ConfigError, match="outside"):
        label_matrix([[3]], 3)


def test_the_head_learns_each_label_and_round_trips_without_pickle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, Y = _data()
    head = MultiLabelHead.fit(X[:300], Y[:300])
    probs = head.predict_proba(X[300:])
    assert probs.shape == (100, 4) and ((probs >= 0) & (probs <= 1)).all()
    assert report(Y[300:], head.predict(X[300:]))["micro_f1"] > 0.8
    head.thresholds = tune_thresholds(head.predict_proba(X[200:300]), Y[200:300])
    again = MultiLabelHead.load(head.save(tmp_path / "head", extra={"labels": ["a"]}))
    np.testing.assert_allclose(again.predict_proba(X[300:]), probs, atol=1e-5)
    np.testing.assert_allclose(again.thresholds, head.thresholds, atol=1e-6)
    assert not list((tmp_path / "head").glob("*.pkl"))


def test_a_label_nobody_has_used_yet_is_never_predicted() -> None:
    X, Y = _data()
    Y[:, 3] = 0
    head = MultiLabelHead.fit(X, Y)
    assert head.predict_proba(X)[:, 3].max() < 0.01 and head.predict(X)[:, 3].sum() == 0


def test_thresholds_maximise_f1_per_label_and_default_without_positives() -> None:
    probs = np.array([[0.9, 0.2, 0.4], [0.35, 0.1, 0.6], [0.3, 0.15, 0.2], [0.1, 0.05, 0.45]])
    Y = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 0, 1]])
    t = tune_thresholds(probs, Y)
    assert t[0] == 0.35  # catches both positives (0.9, 0.35) and not 0.3
    assert t[1] == DEFAULT_THRESHOLD  # no positive: unchanged
    assert t[2] == 0.45  # 0.45 and 0.6 on, 0.4 and 0.2 off
    assert predict_sets(probs, t)[:, 2].tolist() == [0, 1, 0, 1]


def test_report_matches_scikit_learn() -> None:
    from sklearn.metrics import f1_score, hamming_loss

    rng = np.random.default_rng(4)
    T = (rng.random((60, 5)) < 0.3).astype(int)
    P = np.where(rng.random((60, 5)) < 0.8, T, 1 - T)
    r = report(T, P, ["a", "b", "c", "d", "e"])
    assert r["micro_f1"] == pytest.approx(f1_score(T, P, average="micro"))
    assert r["macro_f1"] == pytest.approx(f1_score(T, P, average="macro", zero_division=0))
    assert r["hamming_loss"] == pytest.approx(hamming_loss(T, P))
    assert r["subset_accuracy"] == pytest.approx(float((T == P).all(axis=1).mean()))
    per = f1_score(T, P, average=None, zero_division=0)
    assert [x["f1"] for x in r["per_label"]] == pytest.approx(per, abs=1e-4)
    assert [x["support"] for x in r["per_label"]] == T.sum(axis=0).tolist()
    C = co_occurrence(T)
    assert (np.diag(C) == T.sum(axis=0)).all() and C[0, 1] == int((T[:, 0] & T[:, 1]).sum())


def test_acquisition_scores_rank_the_doubtful_item_first() -> None:
    probs = np.array([
        [0.99, 0.01, 0.02],  # sure of everything
        [0.55, 0.02, 0.03],  # one label at the threshold
        [0.6, 0.45, 0.5],  # several in doubt
    ])
    assert np.argmin(mean_binary_entropy(probs)) == 0
    assert np.argmax(mean_binary_entropy(probs)) == 2
    margin = threshold_margin(probs, 0.5)
    assert margin[2] == pytest.approx(0.0) and np.argmin(margin) == 0
    assert labels_in_doubt(probs, 0.5, ["x", "y", "z"], k=2)[2] == ["z", "y"]
    scores = mmc(probs)
    assert np.argmin(scores) == 0 and np.argmax(scores) == 2


def test_mmc_predicts_the_label_count_from_labelled_items() -> None:
    """Labelled items with flat probabilities carry two labels, peaked ones one: an unlabelled
    flat item is then scored as a two-label item (its second label counts as on)."""
    peaked = np.array([[0.9, 0.1, 0.1]] * 10)
    flat = np.array([[0.5, 0.45, 0.05]] * 10)
    labelled = np.vstack([peaked, flat])
    Y = np.vstack([np.tile([1, 0, 0], (10, 1)), np.tile([1, 1, 0], (10, 1))])
    item = np.array([[0.5, 0.45, 0.05]])
    two = mmc(item, labelled, Y)[0]
    one = mmc(item)[0]  # without labelled items: one label (>= 0.5) on
    # on = {0, 1}: (1-0)/2 + (1-(-0.1))/2 + (1+(-0.9))/2 = 0.5 + 0.55 + 0.05
    assert two == pytest.approx(1.1)
    # on = {0}: 0.5 + (1+(-0.1))/2 + 0.05 = 0.5 + 0.45 + 0.05
    assert one == pytest.approx(1.0)


def test_thresholds_come_from_dev_when_given_else_out_of_fold() -> None:
    X, Y = _data(n=300)
    Y[:, 0] = (Y[:, 0] & (np.arange(300) % 3 == 0)).astype(np.int8)  # a rarer label
    oof = fit_with_thresholds(X[:200], Y[:200], seed=1)
    assert oof.thresholds.shape == (4,) and (oof.thresholds != DEFAULT_THRESHOLD).any()
    with_dev = fit_with_thresholds(X[:200], Y[:200], dev=(X[200:], Y[200:]))
    expected = tune_thresholds(with_dev.predict_proba(X[200:]), Y[200:])
    np.testing.assert_allclose(with_dev.thresholds, expected)
    few = fit_with_thresholds(X[:5], Y[:5])
    assert (few.thresholds == DEFAULT_THRESHOLD).all()


def test_acquisition_order_follows_each_strategys_score() -> None:
    from worker.ml.multilabel import acquisition_order, mean_binary_entropy, threshold_margin

    rng = np.random.default_rng(3)
    P = rng.random((60, 4))
    E = rng.normal(size=(60, 5))
    t = np.array([0.3, 0.5, 0.6, 0.4])
    rows, scores = acquisition_order("threshold_margin", P, t, E, 7)
    expected = np.argsort(-threshold_margin(P, t), kind="stable")[:7]
    assert rows.tolist() == expected.tolist()
    assert scores.tolist() == threshold_margin(P, t)[expected].tolist()
    rows, _ = acquisition_order("binary_entropy", P, t, E, 5)
    assert rows.tolist() == np.argsort(-mean_binary_entropy(P), kind="stable")[:5].tolist()
    clustered, _ = acquisition_order("cluster_threshold_margin", P, t, E, 6, seed=1)
    assert len(set(clustered.tolist())) == 6
    assert clustered[0] == expected[0], "round robin starts with the most doubtful item"
    a, _ = acquisition_order("random", P, t, E, 5, seed=4)
    b, _ = acquisition_order("random", P, t, E, 5, seed=4)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 5
    mmc_rows, _ = acquisition_order("mmc", P, t, E, 5, labelled_probs=P[:10],
                                    labelled_Y=(P[:10] > 0.5).astype(int))
    assert len(mmc_rows) == 5
    assert acquisition_order("threshold_margin", P, t, E, 0)[0].size == 0
    with pytest.raises(ConfigError, match="unknown multi-label strategy 'badge'"):
        acquisition_order("badge", P, t, E, 3)
