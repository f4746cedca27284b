"""Promotion by evidence without a dev set: the live head's stratified k-fold CV, the adapter's
held-out slice, and the choice between them."""

from __future__ import annotations

import numpy as np
import pytest

from contract.errors import ConfigError
from worker.ml.live_head import (
    HeldOut,
    LiveHeadConfig,
    choose_served,
    cross_validate,
    cv_folds_for,
    cv_probs,
    holdout_slice,
    macro_f1,
    promote_without_dev,
)


def noisy_blobs(
    counts: list[int], d: int = 16, noise: float = 0.6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(counts), d))
    y = np.repeat(np.arange(len(counts)), counts)
    X = centres[y] + noise * rng.normal(size=(len(y), d))
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def test_k_is_the_smallest_class_count_of_classes_with_two_labels() -> None:
    assert cv_folds_for(np.array([0] * 9 + [1] * 3 + [2]), 5) == 3
    assert cv_folds_for(np.array([0] * 9 + [1] * 8), 5) == 5
    assert cv_folds_for(np.array([0, 1, 2]), 5) == 0


def test_cross_validation_is_stratified_out_of_fold_and_skips_single_label_classes() -> None:
    X, y = noisy_blobs([12, 3, 1])
    cv = cross_validate(X, y, 4, config=LiveHeadConfig(class_weight=None))
    assert cv.folds == 3  # min(5, 3): every fold holds one item of the 3-label class
    assert cv.scored.tolist() == [True] * 15 + [False]
    assert np.isnan(cv.probs[15]).all()
    np.testing.assert_allclose(cv.probs[:15].sum(axis=1), 1.0)
    assert cv.describe() == (
        "3-fold CV over 15 labels (+1 of classes with one label, never held out)"
    )
    assert cv.macro_f1(y) == macro_f1(y[:15], cv.probs[:15].argmax(axis=1))
    # out of fold: a duplicate with a flipped label is predicted as its twin's class
    Xd = np.vstack([X[:15], X[:1]])
    yd = np.append(y[:15], 1)
    oof = cross_validate(Xd, yd, 3, config=LiveHeadConfig(class_weight=None))
    assert oof.probs[-1].argmax() == 0
    # deterministic by seed
    again = cross_validate(X, y, 4, config=LiveHeadConfig(class_weight=None))
    np.testing.assert_array_equal(again.probs[:15], cv.probs[:15])
    with pytest.raises(ConfigError, match="at least 2 labels"):
        cross_validate(X[[0, 12, 15]], y[[0, 12, 15]], 4)
    # cv_probs (the simulator's view) still answers for every item
    full = cv_probs(X, y, 4, config=LiveHeadConfig(class_weight=None))
    assert not np.isnan(full).any() and full.shape == (16, 4)


def test_the_held_out_slice_is_stratified_and_stable_as_labels_grow() -> None:
    counts = [200, 120, 60, 7, 2, 1]
    y = np.repeat(np.arange(len(counts)), counts)
    ids = np.random.default_rng(1).permutation(10_000)[: len(y)] + 1
    mask = holdout_slice(ids, y, seed=7)
    for cls, n in enumerate(counts):
        held = int(mask[y == cls].sum())
        if n == 1:
            assert held == 0  # never hold out a class's only label
        else:
            assert 1 <= held <= n - 1  # represented in the slice and in training
        if n >= 60:
            assert abs(held / n - 0.15) < 0.08, (cls, held, n)
    assert abs(mask.mean() - 0.15) < 0.04
    # deterministic by seed; another seed draws another slice
    np.testing.assert_array_equal(holdout_slice(ids, y, seed=7), mask)
    assert not np.array_equal(holdout_slice(ids, y, seed=8), mask)
    # more labels: no item trained on before becomes evidence (in classes with 60+ labels)
    more_ids = np.concatenate([ids, np.arange(20_000, 20_300)])
    more_y = np.concatenate([y, np.arange(300) % 3])
    later = holdout_slice(more_ids, more_y, seed=7)
    before = dict(zip(ids.tolist(), mask.tolist(), strict=True))
    big = more_y < 3
    moved = [
        i
        for i, held, b in zip(more_ids, later, big, strict=True)
        if b and held and before.get(int(i)) is False
    ]
    assert moved == []
    with pytest.raises(ConfigError, match="fraction"):
        holdout_slice(ids, y, fraction=0.0)


def _case(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """120 labels in 4 classes with noisy embeddings: the live head is clearly imperfect."""
    X, y = noisy_blobs([30, 30, 30, 30], d=8, noise=1.6, seed=seed)
    ids = np.arange(1000, 1000 + len(y))
    return X, y, ids


def _adapter_on(ids: np.ndarray, y: np.ndarray, mask: np.ndarray, correct: bool) -> HeldOut:
    k = int(y.max()) + 1
    target = y[mask] if correct else (y[mask] + 1) % k
    probs = np.full((int(mask.sum()), k), 0.1 / (k - 1))
    probs[np.arange(len(target)), target] = 0.9
    return HeldOut(ids[mask], probs)


def test_without_a_dev_set_the_better_model_on_the_held_out_slice_is_served() -> None:
    X, y, ids = _case()
    cv = cross_validate(X, y, 4)
    head_f1 = cv.macro_f1(y)
    assert 0.3 < head_f1 < 0.95  # a case where the head can be beaten
    mask = holdout_slice(ids, y, seed=1)
    n = int(mask.sum())
    better = promote_without_dev(cv, ids.tolist(), y, _adapter_on(ids, y, mask, correct=True))
    assert better.name == "adapter"
    assert better.scores["slice_adapter"] == 1.0
    assert better.scores["slice_live_head"] < 1.0
    assert better.scores["live_head"] == pytest.approx(head_f1)
    assert f"held-out slice of {n} labels" in better.reason
    assert "5-fold CV over 120 labels" in better.reason
    # the head's slice score is its out-of-fold score on exactly those items
    expected = choose_served({"live_head": cv.probs[mask]}, y[mask]).scores["live_head"]
    assert better.scores["slice_live_head"] == pytest.approx(expected)

    worse = promote_without_dev(cv, ids.tolist(), y, _adapter_on(ids, y, mask, correct=False))
    assert worse.name == "live_head"
    assert worse.scores["slice_adapter"] == 0.0


def test_without_an_adapter_slice_the_live_head_is_served_on_its_cv_score() -> None:
    X, y, ids = _case()
    cv = cross_validate(X, y, 4)
    alone = promote_without_dev(cv, ids.tolist(), y, None)
    assert alone.name == "live_head"
    assert alone.reason.startswith("no dev set: serving the live head")
    assert "5-fold CV over 120 labels" in alone.reason
    assert set(alone.scores) == {"live_head"}
    # slice items no longer labelled (deleted annotations) cannot be compared
    mask = holdout_slice(ids, y, seed=1)
    gone = np.flatnonzero(mask)[1:]
    keep = np.setdiff1d(np.arange(len(y)), gone)
    cv2 = cross_validate(X[keep], y[keep], 4)
    few = promote_without_dev(
        cv2, ids[keep].tolist(), y[keep], _adapter_on(ids, y, mask, correct=True)
    )
    assert few.name == "live_head" and "too few to compare" in few.reason
    assert promote_without_dev(None, [], [], None).reason.startswith(
        "no dev set and too few labels to cross-validate"
    )


def test_choose_served_names_its_evidence() -> None:
    y = np.array([0, 1, 1])
    p = np.eye(2)[y]
    assert choose_served({"live_head": p}, y).reason.startswith("best dev macro-F1 on 3 items")
    named = choose_served({"live_head": p}, y, evidence="a held-out slice of 3 labels")
    assert named.reason.startswith("best macro-F1 on a held-out slice of 3 labels")
