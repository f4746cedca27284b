from __future__ import annotations

import numpy as np
import pytest

from worker.ml.self_training import pseudo_labels


def test_pseudo_labels_are_class_balanced_most_confident_first_and_only_for_labelled_classes(
) -> None:
    probs = np.array([
        [0.9, 0.05, 0.05],  # 0: class 0, very sure
        [0.6, 0.3, 0.1],  # 1: class 0
        [0.8, 0.1, 0.1],  # 2: class 0
        [0.1, 0.7, 0.2],  # 3: class 1
        [0.2, 0.2, 0.6],  # 4: class 2, never labelled by a person
        [0.55, 0.45, 0.0],  # 5: class 0, barely
    ])
    labels = np.array([0, 0, 1, 1])  # 4 labels over 3 classes: at most round(4/3) = 1 per class
    rows, pseudo = pseudo_labels(probs, labels, 3)
    assert rows.tolist() == [0, 3] and pseudo.tolist() == [0, 1]
    rows, pseudo = pseudo_labels(probs, labels, 3, per_class_ratio=3)  # up to 4 per class
    assert rows.tolist() == [0, 2, 1, 5, 3] and pseudo.tolist() == [0, 0, 0, 0, 1]
    rows, _ = pseudo_labels(probs, labels, 3, per_class_ratio=3, min_confidence=0.65)
    assert rows.tolist() == [0, 2, 3]


def test_pool_pseudo_labels_cover_the_pool_up_to_a_cap_shared_by_labelled_classes() -> None:
    from worker.ml.self_training import pool_pseudo_labels

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=200)
    labels = np.array([0, 1, 0, 1])  # class 2 never labelled by a person
    rows, pseudo = pool_pseudo_labels(probs, labels, 3, most=10_000)
    predicted = probs.argmax(1)
    assert sorted(rows.tolist()) == np.flatnonzero(predicted != 2).tolist()  # every one
    assert np.array_equal(pseudo, predicted[rows])
    rows, pseudo = pool_pseudo_labels(probs, labels, 3, most=21)  # 10 per labelled class
    assert np.bincount(pseudo, minlength=3).tolist() == [10, 10, 0]
    for c in (0, 1):  # the most confident of each class
        mine = np.flatnonzero(predicted == c)
        best = mine[np.argsort(-probs[mine, c], kind="stable")[:10]]
        assert sorted(rows[pseudo == c].tolist()) == sorted(best.tolist())
    for empty in (pool_pseudo_labels(probs, labels, 3, most=0),
                  pool_pseudo_labels(probs, np.array([], dtype=int), 3, most=50)):
        assert empty[0].size == 0 and empty[1].size == 0


def test_pseudo_labels_handle_empty_inputs_and_reject_a_wrong_shape() -> None:
    rows, pseudo = pseudo_labels(np.zeros((0, 2)), np.array([0, 1]), 2)
    assert rows.size == 0 and pseudo.size == 0
    with pytest.raises(ValueError, match="pool_probs"):
        pseudo_labels(np.zeros((3, 4)), np.array([0]), 2)


def _blobs(rng: np.random.Generator, n: int, gap: float, d: int = 40) -> tuple[np.ndarray, ...]:
    """Two classes apart along the first of ``d`` noisy dimensions."""
    y = rng.integers(0, 2, n)
    X = rng.normal(0, 1, (n, d))
    X[:, 0] += np.where(y == 1, gap, -gap)
    return X, y


def test_self_training_is_kept_unless_it_loses_on_the_dev_set() -> None:
    from worker.ml.live_head import LiveHead, LiveHeadConfig
    from worker.ml.self_training import self_train

    rng = np.random.default_rng(2)
    X, y = _blobs(rng, 12, 1.5)  # 12 labels in 40 dimensions: the head overfits the noise
    pool, _ = _blobs(rng, 1000, 1.5)
    dev_X, dev_y = _blobs(rng, 300, 1.5)
    head = LiveHead(LiveHeadConfig(features="embed")).fit(X, y, 2)
    result = self_train(head, X, y, 2, pool, head.predict_proba(pool), dev_X, dev_y)
    assert result.used and result.pseudo == 12 and result.head is not head
    assert result.dev_macro_f1["self-trained"] > result.dev_macro_f1["labels only"]
    assert result.head.n_labels == 12  # the saved head counts people's labels only
    assert "kept" in result.reason and "not kept" not in result.reason

    easy = np.random.default_rng(0)
    X, y = _blobs(easy, 12, 6.0)
    pool, _ = _blobs(easy, 500, 6.0)
    dev_X, dev_y = _blobs(easy, 100, 6.0)
    head = LiveHead(LiveHeadConfig(features="embed")).fit(X, y, 2)
    tie = self_train(head, X, y, 2, pool, head.predict_proba(pool), dev_X, dev_y)
    assert tie.dev_macro_f1 == {"labels only": 1.0, "self-trained": 1.0}
    assert tie.used and tie.head is not head  # a tie keeps self-training

    # a dev set that agrees with the plain head everywhere: any change can only lose there
    rng = np.random.default_rng(2)
    X, y = _blobs(rng, 12, 1.5)
    pool, _ = _blobs(rng, 1000, 1.5)
    head = LiveHead(LiveHeadConfig(features="embed")).fit(X, y, 2)
    dev_X = pool[:300]
    dev_y = head.predict_proba(dev_X).argmax(axis=1)
    worse = self_train(head, X, y, 2, pool, head.predict_proba(pool), dev_X, dev_y)
    assert worse.dev_macro_f1["self-trained"] < worse.dev_macro_f1["labels only"] == 1.0
    assert not worse.used and worse.head is head and "not kept" in worse.reason
    assert "(it loses by more than 0.01)" in worse.reason

    # the loss is forgiven up to the head's auto_margin, the hybrid's own margin
    loss = worse.dev_macro_f1["labels only"] - worse.dev_macro_f1["self-trained"]
    assert loss > 0.01
    for margin, kept in ((loss + 0.001, True), (loss - 0.001, False), (0.0, False)):
        lenient = LiveHead(LiveHeadConfig(features="embed", auto_margin=margin)).fit(X, y, 2)
        again = self_train(lenient, X, y, 2, pool, lenient.predict_proba(pool), dev_X, dev_y)
        assert again.dev_macro_f1 == worse.dev_macro_f1
        assert again.used is kept and (again.head is lenient) is not kept
        assert (f"(within {margin:g})" in again.reason) is kept

    none = self_train(head, X, y, 2, pool, head.predict_proba(pool), dev_X[:0], dev_y[:0])
    assert not none.used and none.head is head and "no dev set" in none.reason


def test_live_head_sample_weights_must_match_and_be_positive() -> None:
    from contract.errors import ConfigError
    from worker.ml.live_head import LiveHead, LiveHeadConfig

    X, y = _blobs(np.random.default_rng(1), 20, 2.0, d=4)
    head = LiveHead(LiveHeadConfig(features="embed"))
    with pytest.raises(ConfigError, match="sample_weight"):
        head.fit(X, y, 2, sample_weight=np.ones(19))
    with pytest.raises(ConfigError, match="sample_weight"):
        head.fit(X, y, 2, sample_weight=np.zeros(20))
    heavy = LiveHead(LiveHeadConfig(features="embed")).fit(
        X, y, 2, sample_weight=np.r_[np.full(10, 1.0), np.full(10, 0.5)])
    plain = LiveHead(LiveHeadConfig(features="embed")).fit(X, y, 2)
    assert heavy.n_labels == 10 and plain.n_labels == 20
    assert not np.allclose(heavy.predict_proba(X), plain.predict_proba(X))


def test_the_keep_verdict_forgives_a_loss_up_to_the_margin() -> None:
    from worker.ml.self_training import keep_verdict

    assert keep_verdict(0.80, 0.80, 0.01, "without") == (
        True, "kept: dev macro-F1 0.800 vs 0.800 without")
    assert keep_verdict(0.85, 0.80, 0.01, "without") == (
        True, "kept: dev macro-F1 0.850 vs 0.800 without")
    assert keep_verdict(0.795, 0.80, 0.01, "without") == (
        True, "kept: dev macro-F1 0.795 vs 0.800 without (within 0.01)")
    assert keep_verdict(0.79, 0.80, 0.01, "without")[0]  # exactly the margin: within it
    assert keep_verdict(0.785, 0.80, 0.01, "without") == (
        False, "not kept: dev macro-F1 0.785 vs 0.800 without (it loses by more than 0.01)")
    assert keep_verdict(0.795, 0.80, 0.0, "on the labels alone") == (
        False, "not kept: dev macro-F1 0.795 vs 0.800 on the labels alone (it loses by more "
        "than 0)")
