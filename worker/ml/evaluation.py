"""Classification metrics: accuracy, macro-F1, per-class P/R/F1, confusion matrix, ECE.

Plain NumPy so the numbers are easy to check by hand and the module has no heavy imports.
Macro-F1 averages over the labels that occur in the gold labels or the predictions, so a label
nobody used yet (common in early active-learning rounds) neither helps nor hurts the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from contract.errors import ConfigError

ECE_BINS = 15


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    """Rows are gold labels, columns predicted labels."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE with equal-width confidence bins: sum over bins of |B|/n * |accuracy(B) - conf(B)|."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += members.mean() * gap
    return float(total)


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def evaluate(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    """Metrics of predicted probabilities ``probs`` (n, k) against gold label ids ``y_true``."""
    gold = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(label_names)
    if probs.ndim != 2 or probs.shape != (len(gold), k):
        raise ConfigError(f"probs must have shape ({len(gold)}, {k}), got {probs.shape}")
    if len(gold) == 0:
        raise ConfigError("cannot evaluate on zero examples")
    if gold.min() < 0 or gold.max() >= k:
        raise ConfigError(f"gold label ids must lie in [0, {k}), got {gold.min()}..{gold.max()}")
    pred = probs.argmax(axis=1)
    matrix = confusion_matrix(gold, pred, k)
    per_class: dict[str, dict[str, float | int]] = {}
    used_f1: list[float] = []
    for i, name in enumerate(label_names):
        tp = int(matrix[i, i])
        predicted = int(matrix[:, i].sum())
        support = int(matrix[i, :].sum())
        precision = _safe_ratio(tp, predicted)
        recall = _safe_ratio(tp, support)
        f1 = _safe_ratio(2 * precision * recall, precision + recall)
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support or predicted:
            used_f1.append(f1)
    return {
        "accuracy": float((pred == gold).mean()),
        "macro_f1": float(np.mean(used_f1)),
        "per_class": per_class,
        "confusion": matrix.tolist(),
        "ece": expected_calibration_error(gold, probs),
        "n": int(len(gold)),
    }
