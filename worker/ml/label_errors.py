"""Likely label errors: labelled items where a model trained without them confidently predicts
another class (confident learning, Northcutt, Jiang and Chuang 2021, JAIR 70).

Pure functions over plain arrays; nothing from ``app``, Celery or the database.

1. Out-of-fold probabilities: every labelled item is scored by a logistic regression that did not
   see it (k-fold ``cross_val_predict``). Features are a parameter: stored item embeddings when
   there are any, else TF-IDF of the texts (word 1-2-grams plus character 3-5-grams, which also
   works for short texts and for languages without spaces).
2. Per-class thresholds ``t_j``: the mean out-of-fold probability of class ``j`` over the items
   labelled ``j`` (the model's average self-confidence on that class).
3. An item labelled ``y`` is a likely error when some other class ``j`` has ``p_j >= t_j`` (the
   off-diagonal of the confident joint); its suggested label is the most probable such ``j``.
4. Ranking: the normalised margin ``p_j* - p_y`` (largest first), so the list a reviewer works
   through starts with the items the model is surest are wrong. Items not flagged still get a
   score (their margin, usually negative) so a caller can rank everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

FeatureSource = Literal["embeddings", "tfidf"]
MIN_PER_CLASS = 2


@dataclass(frozen=True)
class LabelIssue:
    index: int
    """Position in the input."""
    given: int
    suggested: int
    """The most probable other class (the suggested fix)."""
    score: float
    """``p[suggested] - p[given]`` out of fold; higher is more likely an error."""
    flagged: bool
    """In the confident joint's off-diagonal (``p[suggested] >= t[suggested]``)."""
    given_prob: float
    suggested_prob: float


def tfidf_features(texts: Sequence[str]) -> Any:
    """Sparse TF-IDF features: word 1-2-grams and character 3-5-grams (within word bounds)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=50_000)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2,
                            max_features=100_000)
    return hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()


def out_of_fold_probabilities(
    features: Any, labels: Sequence[int], n_classes: int, *, folds: int = 5, seed: int = 0,
    c: float = 4.0,
) -> np.ndarray:
    """``(n, n_classes)`` probabilities, each row from a model trained on the other folds.

    Classes with fewer than :data:`MIN_PER_CLASS` items cannot be held out; they get probability
    rows from the other folds too but are never stratified on (``StratifiedKFold`` needs two).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1 or len(y) != features.shape[0]:
        raise ValueError("labels must be one class index per feature row")
    if len(y) == 0:
        return np.zeros((0, n_classes))
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes})")
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError("need at least two classes with labels to find label errors")
    counts = np.bincount(y, minlength=n_classes)
    k = int(max(2, min(folds, counts[present].min())))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    model = LogisticRegression(C=c, max_iter=2000)
    probs_present = cross_val_predict(model, features, y, cv=splitter, method="predict_proba")
    probs = np.zeros((len(y), n_classes))
    probs[:, present] = probs_present
    return probs


def confident_learning_issues(probs: np.ndarray, labels: Sequence[int]) -> list[LabelIssue]:
    """Every item with its margin score and flag, most likely errors first."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n, k = p.shape if p.ndim == 2 else (0, 0)
    if p.ndim != 2 or len(y) != n:
        raise ValueError("probs must be (n, classes) with one label per row")
    thresholds = np.full(k, np.inf)
    for j in range(k):
        mine = y == j
        if mine.any():
            thresholds[j] = float(p[mine, j].mean())
    issues = []
    for i in range(n):
        given = int(y[i])
        others = p[i].copy()
        others[given] = -np.inf
        above = np.where((p[i] >= thresholds) & (np.arange(k) != given))[0]
        if len(above):
            suggested = int(above[np.argmax(p[i, above])])
            flagged = True
        else:
            suggested = int(np.argmax(others))
            flagged = False
        issues.append(LabelIssue(
            index=i, given=given, suggested=suggested,
            score=float(p[i, suggested] - p[i, given]), flagged=flagged,
            given_prob=float(p[i, given]), suggested_prob=float(p[i, suggested]),
        ))
    issues.sort(key=lambda issue: (not issue.flagged, -issue.score, issue.index))
    return issues


def find_label_errors(
    labels: Sequence[int],
    n_classes: int,
    *,
    texts: Sequence[str] | None = None,
    embeddings: np.ndarray | None = None,
    source: FeatureSource | None = None,
    folds: int = 5,
    seed: int = 0,
) -> list[LabelIssue]:
    """Out-of-fold probabilities from ``source`` features, then :func:`confident_learning_issues`.

    ``source`` defaults to embeddings when given, else TF-IDF of ``texts``.
    """
    chosen: FeatureSource = source or ("embeddings" if embeddings is not None else "tfidf")
    if chosen == "embeddings":
        if embeddings is None:
            raise ValueError("source='embeddings' needs the item embeddings")
        features: Any = np.asarray(embeddings, dtype=np.float64)
    else:
        if texts is None:
            raise ValueError("source='tfidf' needs the texts")
        features = tfidf_features(texts)
    probs = out_of_fold_probabilities(features, labels, n_classes, folds=folds, seed=seed)
    return confident_learning_issues(probs, labels)
