"""Multi-label classification on sentence embeddings: a head, thresholds, metrics, acquisition.

The building blocks of multi-label projects (issue 19), pure NumPy/scikit-learn and independent
of the web (the live head of a multi-label project, :mod:`worker.tasks.live_multilabel`, uses
them).

* :class:`MultiLabelHead`: one logistic regression per label (one-vs-rest; sigmoid outputs and
  binary cross-entropy, class-balanced) on the L2-normalised embeddings the live head reads;
  saved as ``.npy`` + JSON, no pickle;
* :func:`tune_thresholds`: one decision threshold per label, the one with the best F1 on held-out
  probabilities (a dev set or out-of-fold ones), stored with the head and used to predict sets;
  a label with no positive among the held-out items keeps ``DEFAULT_THRESHOLD``;
* :func:`report`: micro- and macro-F1, subset accuracy, Hamming loss, per-label F1 and support,
  label cardinality; :func:`co_occurrence`;
* acquisition scores (higher = ask first): :func:`mean_binary_entropy`,
  :func:`threshold_margin` (the closest any label is to its threshold, negated),
  :func:`mmc` (maximum loss reduction with maximal confidence, Yang et al. 2009, with the number
  of labels predicted from the sorted probabilities as in the paper), and :func:`labels_in_doubt`
  for the reason an annotator reads.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract.errors import ConfigError

DEFAULT_THRESHOLD = 0.5
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
FORMAT = "tapestry-multilabel-head"
FORMAT_VERSION = 1
NO_POSITIVE_BIAS = -math.log(1000.0)
"""A label without a positive example yet: probability ~1/1000 everywhere."""


def label_matrix(label_sets: Sequence[Sequence[int]], n_labels: int) -> np.ndarray:
    """``(n, n_labels)`` 0/1 matrix of label sets given as lists of label indices (an empty set,
    "none of these", is a row of zeros)."""
    Y = np.zeros((len(label_sets), n_labels), dtype=np.int8)
    for row, labels in enumerate(label_sets):
        for label in labels:
            if not 0 <= int(label) < n_labels:
                raise ConfigError(f"label index {label} outside 0..{n_labels - 1}")
            Y[row, int(label)] = 1
    return Y


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))))


@dataclass
class MultiLabelHead:
    """One-vs-rest logistic regression; ``W`` (L, d), ``b`` (L,), ``thresholds`` (L,)."""

    W: np.ndarray
    b: np.ndarray
    thresholds: np.ndarray
    n_labels_seen: int = 0
    C: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)
    """What :meth:`save` was given as ``extra`` (the encoder, label names), after :meth:`load`."""

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, *, C: float = 10.0,
            max_iter: int = 1000) -> MultiLabelHead:
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ConfigError(f"need X (n, d) and Y (n, L) with one row per item, got "
                              f"{X.shape} and {Y.shape}")
        if not C > 0:
            raise ConfigError(f"C must be > 0, got {C}")
        n_labels = Y.shape[1]
        W = np.zeros((n_labels, X.shape[1]))
        b = np.full(n_labels, NO_POSITIVE_BIAS)
        for j in range(n_labels):
            y = Y[:, j]
            if y.min() == y.max():  # all negative (or all positive): no boundary to learn
                b[j] = NO_POSITIVE_BIAS if y.max() == 0 else -NO_POSITIVE_BIAS
                continue
            model = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X, y)
            W[j], b[j] = model.coef_[0], model.intercept_[0]
        return cls(W, b, np.full(n_labels, DEFAULT_THRESHOLD), int(len(Y)), C)

    @property
    def n_labels(self) -> int:
        return int(self.W.shape[0])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, L) independent probabilities (they need not sum to 1)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.W.shape[1]:
            raise ConfigError(f"embeddings of width {X.shape[-1]}, the head reads "
                              f"{self.W.shape[1]}")
        return sigmoid(np.asarray(X @ self.W.T, dtype=np.float64) + self.b)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, L) 0/1 label sets at the stored thresholds."""
        return predict_sets(self.predict_proba(X), self.thresholds)

    def save(self, directory: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("W", "b", "thresholds"):
            np.save(out / f"{name}.npy", np.asarray(getattr(self, name), dtype=np.float32),
                    allow_pickle=False)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "n_labels": self.n_labels,
                "n_labels_seen": self.n_labels_seen, "C": self.C,
                "probabilities": "sigmoid(e @ W.T + b) per label; a label is on when its "
                                 "probability >= its threshold",
                "extra": {**self.extra, **dict(extra or {})}}
        (out / "multilabel_head.json").write_text(json.dumps(meta, indent=2))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> MultiLabelHead:
        source = Path(directory)
        meta = json.loads((source / "multilabel_head.json").read_text())
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ConfigError(f"{source} does not hold a multi-label head of format "
                              f"{FORMAT_VERSION}")
        arrays = {name: np.load(source / f"{name}.npy", allow_pickle=False).astype(np.float64)
                  for name in ("W", "b", "thresholds")}
        return cls(arrays["W"], arrays["b"], arrays["thresholds"],
                   int(meta.get("n_labels_seen", 0)), float(meta.get("C", 10.0)),
                   dict(meta.get("extra") or {}))


def fit_with_thresholds(X: np.ndarray, Y: np.ndarray, *, folds: int = 3, seed: int = 0,
                        dev: tuple[np.ndarray, np.ndarray] | None = None,
                        C: float = 10.0) -> MultiLabelHead:
    """The head on every labelled item, its thresholds tuned on ``dev`` (embeddings, label
    matrix) when given, else on ``folds``-fold out-of-fold probabilities of the labelled items
    (no label spent on thresholds); ``DEFAULT_THRESHOLD`` with fewer than 2 items per fold."""
    from sklearn.model_selection import KFold

    head = MultiLabelHead.fit(X, Y, C=C)
    if dev is not None:
        head.thresholds = tune_thresholds(head.predict_proba(dev[0]), np.asarray(dev[1]))
    elif len(Y) >= 2 * folds:
        oof = np.zeros(np.asarray(Y).shape)
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(X):
            oof[test] = MultiLabelHead.fit(X[train], Y[train], C=C).predict_proba(X[test])
        head.thresholds = tune_thresholds(oof, Y)
    return head


def predict_sets(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    return (np.asarray(probs) >= np.asarray(thresholds)).astype(np.int8)


def _f1(tp: float, fp: float, fn: float) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def tune_thresholds(probs: np.ndarray, Y: np.ndarray,
                    grid: Sequence[float] | np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per label, the grid threshold with the best F1 on ``(probs, Y)`` (ties: the one closest to
    0.5, so thin evidence moves it least); ``DEFAULT_THRESHOLD`` where ``Y`` has no positive."""
    P, Y = np.asarray(probs), np.asarray(Y)
    if P.shape != Y.shape:
        raise ConfigError(f"probabilities {P.shape} and labels {Y.shape} differ in shape")
    out = np.full(P.shape[1], DEFAULT_THRESHOLD)
    ordered = sorted(np.asarray(grid, dtype=np.float64), key=lambda t: abs(t - 0.5))
    for j in range(P.shape[1]):
        y = Y[:, j] == 1
        if not y.any():
            continue
        best, best_f1 = DEFAULT_THRESHOLD, -1.0
        for t in ordered:
            on = P[:, j] >= t
            f1 = _f1(float((on & y).sum()), float((on & ~y).sum()), float((~on & y).sum()))
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(t), f1
        out[j] = best
    return out


def report(Y_true: np.ndarray, Y_pred: np.ndarray,
           label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Micro/macro-F1, subset accuracy, Hamming loss, per-label F1 and support, cardinality.

    Macro-F1 averages the labels with a positive in ``Y_true`` or ``Y_pred`` (as single-label
    macro-F1 here averages the classes present)."""
    T = np.asarray(Y_true).astype(bool)
    P = np.asarray(Y_pred).astype(bool)
    if T.shape != P.shape or T.ndim != 2:
        raise ConfigError(f"gold {T.shape} and predicted {P.shape} label sets differ in shape")
    n, L = T.shape
    names = list(label_names) if label_names is not None else [str(j) for j in range(L)]
    tp = (T & P).sum(axis=0).astype(float)
    fp = (~T & P).sum(axis=0).astype(float)
    fn = (T & ~P).sum(axis=0).astype(float)
    per_label = [{"label": names[j], "f1": round(_f1(tp[j], fp[j], fn[j]), 4),
                  "support": int(T[:, j].sum())} for j in range(L)]
    present = [j for j in range(L) if T[:, j].any() or P[:, j].any()]
    return {
        "n": n,
        "micro_f1": _f1(tp.sum(), fp.sum(), fn.sum()),
        "macro_f1": float(np.mean([_f1(tp[j], fp[j], fn[j]) for j in present]))
        if present else 0.0,
        "subset_accuracy": float((T == P).all(axis=1).mean()) if n else 0.0,
        "hamming_loss": float((T != P).mean()) if n else 0.0,
        "cardinality_true": float(T.sum(axis=1).mean()) if n else 0.0,
        "cardinality_pred": float(P.sum(axis=1).mean()) if n else 0.0,
        "per_label": per_label,
    }


def co_occurrence(Y: np.ndarray) -> np.ndarray:
    """(L, L) counts of items carrying both labels; the diagonal is each label's support."""
    M = np.asarray(Y, dtype=np.int64)
    return np.asarray(M.T @ M)


# --------------------------------------------------------------------------- acquisition
def mean_binary_entropy(probs: np.ndarray) -> np.ndarray:
    """Mean over labels of each label's binary entropy (nats); higher = less sure."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.asarray((-(p * np.log(p) + (1 - p) * np.log(1 - p))).mean(axis=1))


def threshold_margin(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Minus the smallest distance of any label's probability to its threshold: the item whose
    most doubtful label is closest to flipping comes first."""
    return np.asarray(-np.abs(np.asarray(probs) - np.asarray(thresholds)).min(axis=1))


def mmc(probs: np.ndarray, labelled_probs: np.ndarray | None = None,
        labelled_Y: np.ndarray | None = None) -> np.ndarray:
    """Maximum loss reduction with maximal confidence (Yang et al., KDD 2009).

    The number of labels of each item is predicted from its sorted, normalised probabilities by
    a logistic regression fitted on the labelled items (their probabilities and true label
    counts), as the paper does; without labelled items (or a single label count among them) it
    is the number of labels with probability >= 0.5, at least 1. The top-k labels are taken as
    on (y = +1), the rest off (y = -1), and the score is the expected loss reduction
    ``sum_j (1 - y_j f_j) / 2`` with ``f_j = 2 p_j - 1`` in [-1, 1]."""
    P = np.asarray(probs, dtype=np.float64)
    n, L = P.shape
    k = _predicted_counts(P, labelled_probs, labelled_Y)
    order = np.argsort(-P, axis=1)
    y = -np.ones_like(P)
    ranks = np.empty_like(order)
    ranks[np.arange(n)[:, None], order] = np.arange(L)[None, :]
    y[ranks < k[:, None]] = 1.0
    f = 2.0 * P - 1.0
    return np.asarray(((1.0 - y * f) / 2.0).sum(axis=1))


def _count_features(P: np.ndarray) -> np.ndarray:
    S = -np.sort(-P, axis=1)
    return S / np.maximum(S.sum(axis=1, keepdims=True), 1e-12)


def _predicted_counts(P: np.ndarray, labelled_probs: np.ndarray | None,
                      labelled_Y: np.ndarray | None) -> np.ndarray:
    fallback = np.maximum((P >= 0.5).sum(axis=1), 1)
    if labelled_probs is None or labelled_Y is None or len(labelled_Y) == 0:
        return fallback
    counts = np.maximum(np.asarray(labelled_Y).sum(axis=1), 1)
    if len(np.unique(counts)) < 2:
        return np.full(len(P), int(counts[0]))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(_count_features(np.asarray(labelled_probs)), counts)
    return np.asarray(model.predict(_count_features(P)), dtype=np.int64)


def acquisition_order(strategy: str, probs: np.ndarray, thresholds: np.ndarray,
                      embeddings: np.ndarray, n: int, *, seed: int = 0,
                      labelled_probs: np.ndarray | None = None,
                      labelled_Y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``probs`` to ask next (at most ``n``, most informative first) and their scores,
    for a strategy of :data:`contract.strategies.MULTI_LABEL_STRATEGIES`."""
    from worker.ml.acquisition.diversity import round_robin
    from worker.ml.acquisition.geometry import kmeans

    n = min(n, len(probs))
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    rng = np.random.default_rng(seed)
    if strategy in ("threshold_margin", "cluster_threshold_margin"):
        score = threshold_margin(probs, thresholds)
    elif strategy == "binary_entropy":
        score = mean_binary_entropy(probs)
    elif strategy == "mmc":
        score = mmc(probs, labelled_probs, labelled_Y)
    elif strategy == "random":
        score = rng.random(len(probs))
    else:
        raise ConfigError(f"unknown multi-label strategy {strategy!r}")
    if strategy == "cluster_threshold_margin":
        rows = np.asarray(round_robin(kmeans(embeddings, n, rng).assign, score, n),
                          dtype=np.int64)
    else:
        top = np.argpartition(-score, n - 1)[:n]
        rows = top[np.argsort(-score[top], kind="stable")]
    return rows, score[rows]


def labels_in_doubt(probs: np.ndarray, thresholds: np.ndarray | float,
                    label_names: Sequence[str], k: int = 2) -> list[list[str]]:
    """For each item, the ``k`` labels closest to their thresholds (for the annotator's reason)."""
    distance = np.abs(np.asarray(probs) - np.asarray(thresholds))
    order = np.argsort(distance, axis=1, kind="stable")[:, :k]
    return [[label_names[j] for j in row] for row in order]
