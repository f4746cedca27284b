"""Cheap baseline arms on random labels: the bar the model in the loop must clear (DATA.md).

- ``tfidf-lr``: TF-IDF (1-2 grams, sublinear tf, min_df=2) fitted on all pool texts without
  labels, then ``LogisticRegression(C=10, max_iter=2000)``;
- ``tfidf-svm``: the same features + ``LinearSVC(C=1)``;
- ``embed-lr``: frozen encoder embeddings (first 128 tokens, mean-pooled, L2-normalised) +
  ``LogisticRegression(C=10, max_iter=2000)``.

Protocol: one random order of the pool per seed that starts with 2 items of every class; the
sample for a budget of n labels is its first n items, so samples are nested across budgets.
Every label of a baseline is a training label (no dev set), so label counts compare directly
with a product arm's labels axis (seed + queried + dev).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from contract.errors import ConfigError
from worker.simulate.results import ArmRun, CurvePoint

BASELINE_ARMS = ("tfidf-lr", "tfidf-svm", "embed-lr")
BUDGET_FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.20)
PER_CLASS = 2


def is_baseline(arm: str) -> bool:
    return arm in BASELINE_ARMS


def fraction_budgets(pool_size: int, n_classes: int, fractions: Iterable[float]) -> list[int]:
    """n = max(round(f * N), 2 K) per fraction, capped at the pool (DATA.md)."""
    return [min(pool_size, max(round(f * pool_size), PER_CLASS * n_classes)) for f in fractions]


def nested_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A random order of the pool whose first items hold ``PER_CLASS`` of every class."""
    rng = np.random.default_rng([seed, 7])
    first: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        first.extend(rng.choice(members, min(PER_CLASS, len(members)), replace=False).tolist())
    first_arr = rng.permutation(np.asarray(first, dtype=np.int64))
    rest = rng.permutation(np.setdiff1d(np.arange(len(labels)), first_arr))
    return np.concatenate([first_arr, rest])


def _fit_predict(name: str, X_train: Any, y_train: np.ndarray, X_test: Any) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if len(np.unique(y_train)) < 2:  # one class: every prediction is that class
        return np.full(X_test.shape[0], int(y_train[0]), dtype=np.int64)
    model: Any = (
        LinearSVC(C=1.0) if name == "tfidf-svm" else LogisticRegression(C=10.0, max_iter=2000)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train, y_train)
    return np.asarray(model.predict(X_test), dtype=np.int64)


def baseline_features(
    name: str,
    pool_texts: Sequence[str],
    test_texts: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray] | None,
) -> tuple[Any, Any]:
    """(pool features, test features) of a baseline arm."""
    if name not in BASELINE_ARMS:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINE_ARMS)}")
    if name == "embed-lr":
        if embed is None:
            raise ConfigError("embed-lr needs an embedder (the frozen encoder)")
        vectors = embed(list(pool_texts) + list(test_texts))
        return vectors[: len(pool_texts)], vectors[len(pool_texts) :]
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    return vectorizer.fit_transform(pool_texts), vectorizer.transform(test_texts)


def run_baseline(
    name: str,
    *,
    dataset: str,
    seed: int,
    budgets: Iterable[int],
    pool_features: Any,
    pool_labels: np.ndarray,
    test_features: Any,
    test_labels: np.ndarray,
    n_classes: int,
) -> ArmRun:
    """One baseline arm with one seed: a curve point per budget, on nested random samples."""
    from worker.ml.evaluation import confusion_matrix

    started = time.perf_counter()
    order = nested_order(pool_labels, seed)
    run = ArmRun(dataset=dataset, arm=name, seed=seed)
    for n in sorted({min(int(b), len(order)) for b in budgets if b >= 1}):
        chosen = order[:n]
        t0 = time.perf_counter()
        predicted = _fit_predict(name, pool_features[chosen], pool_labels[chosen], test_features)
        matrix = confusion_matrix(test_labels, predicted, n_classes)
        run.points.append(
            CurvePoint(
                round=len(run.points),
                labels=n,
                phase="random",
                accuracy=float(np.trace(matrix) / max(1, matrix.sum())),
                macro_f1=macro_f1_from_confusion(matrix),
                dev_macro_f1=None,
                train_s=time.perf_counter() - t0,
                strategy="random",
            )
        )
    run.seconds = time.perf_counter() - started
    return run


def macro_f1_from_confusion(matrix: np.ndarray) -> float:
    """Macro-F1 over the labels present in the gold labels or the predictions."""
    tp = np.diag(matrix).astype(np.float64)
    gold = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    present = (gold + predicted) > 0
    denominator = gold + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1[present].mean()) if present.any() else 0.0
