"""The live head of a multi-label project: one-vs-rest logistic regression on the sentence
embeddings, per-label thresholds, and a queue of the items whose most doubtful label is
closest to its threshold.

:func:`choose` is called by :func:`worker.tasks.live_refit.refit_live_head` (which reads the
data, embeds and swaps the queue in exactly as for a single-label project) and returns what to
queue and what to serve. The building blocks are in :mod:`worker.ml.multilabel`.

* **Thresholds** are tuned on the dev set when it has at least :data:`MIN_DEV` labelled items,
  else on 3-fold out-of-fold probabilities of the labelled pool items (no extra label spent).
* **Acquisition**: the project's multi-label strategy
  (:data:`contract.strategies.MULTI_LABEL_STRATEGIES`, :func:`worker.ml.multilabel.
  acquisition_order`); the default, margin to threshold, beat random sampling with the same
  head up to 10 % of the pool on the Cooking Stack Exchange simulation
  (``tests/benchmarks/bench_multilabel.py``, 3 seeds) and met it at 20 %, while mean binary
  entropy fell below random from 5 %. A project whose stored strategy is a single-label one
  (it was created single-label) uses the default. On a pool above
  :data:`CANDIDATES_PER_PICK` x the queue, the clustering strategy looks only at the items
  whose most doubtful label is closest to its threshold, so a refit stays fast at 100,000.
* **Cold start**: below :data:`MIN_LABELLED` labelled items no head is fitted and the queue is
  empty, so annotators get items at random (the reason says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.domain.annotation.label_sets import set_text
from contract.strategies import DEFAULT_MULTI_LABEL_STRATEGY, MULTI_LABEL_STRATEGIES
from worker.tasks.project_data import LabelledSets

MIN_LABELLED = 10
"""Labelled items before a multi-label head is fitted (fewer: random hand-outs)."""
MIN_DEV = 10
"""Dev items needed to tune thresholds and measure the head on them."""
NEIGHBOURS = 3
DOUBT_LABELS = 2
CANDIDATES_PER_PICK = 10


@dataclass
class MultiLabelChoice:
    reason: str
    rows: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    predicted: list[list[dict[str, Any]]] = field(default_factory=list)
    neighbours: list[list[dict[str, Any]]] = field(default_factory=list)
    model_scores: dict[str, float] = field(default_factory=dict)
    head: Any = None
    strategy: str = DEFAULT_MULTI_LABEL_STRATEGY


def choose(
    label_names: Sequence[str],
    pool: np.ndarray,
    queueable: list[int],
    labelled: LabelledSets,
    labelled_emb: np.ndarray,
    dev: LabelledSets,
    dev_emb: np.ndarray,
    n: int,
    *,
    strategy: str = DEFAULT_MULTI_LABEL_STRATEGY,
    seed: int = 0,
) -> MultiLabelChoice:
    """Fit the head and pick ``n`` of ``queueable`` (rows of ``pool``), most informative first
    by ``strategy`` (a single-label name falls back to the default)."""
    from worker.ml.multilabel import fit_with_thresholds, label_matrix, report

    if strategy not in MULTI_LABEL_STRATEGIES:
        strategy = DEFAULT_MULTI_LABEL_STRATEGY

    if len(labelled) < MIN_LABELLED:
        return MultiLabelChoice(
            f"a multi-label head needs {MIN_LABELLED} labelled items ({len(labelled)} so far); "
            "until then items are handed out at random")
    k = len(label_names)
    Y = label_matrix(labelled.sets, k)
    use_dev = len(dev) >= MIN_DEV
    head = fit_with_thresholds(
        labelled_emb, Y, dev=(dev_emb, label_matrix(dev.sets, k)) if use_dev else None)
    scores: dict[str, float] = {}
    if use_dev:
        measured = report(label_matrix(dev.sets, k), head.predict(dev_emb), label_names)
        scores = {key: round(float(measured[key]), 4)
                  for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")}
        scores["live_head"] = scores["macro_f1"]  # the dashboard's live-head curve
        head.extra["evaluation"] = {"dev_n": len(dev), **scores,
                                    "per_label": measured["per_label"]}
        reason = (f"multi-label live head; thresholds tuned on the dev set ({len(dev)} items): "
                  f"micro-F1 {scores['micro_f1']:.3f}, macro-F1 {scores['macro_f1']:.3f}")
    else:
        reason = ("multi-label live head; thresholds from out-of-fold predictions on the "
                  f"labelled items (a dev set of {MIN_DEV}+ items would measure it)")
    choice = MultiLabelChoice(reason, model_scores=scores, head=head, strategy=strategy)
    if n <= 0 or not queueable:
        return choice
    probs = head.predict_proba(pool)
    picked, picked_scores = _pick(strategy, probs, head, pool, labelled_emb, Y, n, seed)
    choice.rows = [queueable[r] for r in picked]
    choice.scores = [float(v) for v in picked_scores]
    choice.reasons = [_reason(p, head.thresholds, label_names) for p in probs[picked]]
    choice.predicted = [predicted(p, head.thresholds, label_names) for p in probs[picked]]
    choice.neighbours = nearest_sets(pool[picked], labelled_emb, labelled, label_names)
    return choice


def _pick(strategy: str, probs: np.ndarray, head: Any, pool: np.ndarray,
          labelled_emb: np.ndarray, Y: np.ndarray, n: int, seed: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows to queue and their scores (higher: ask first)."""
    from worker.ml.multilabel import acquisition_order, threshold_margin

    rows = np.arange(len(probs))
    if strategy == "cluster_threshold_margin" and len(probs) > CANDIDATES_PER_PICK * n:
        margin = threshold_margin(probs, head.thresholds)
        rows = np.sort(np.argpartition(-margin, CANDIDATES_PER_PICK * n - 1)
                       [:CANDIDATES_PER_PICK * n])
    labelled_probs = head.predict_proba(labelled_emb) if strategy == "mmc" else None
    order, scores = acquisition_order(strategy, probs[rows], head.thresholds, pool[rows], n,
                                      seed=seed, labelled_probs=labelled_probs, labelled_Y=Y)
    return rows[order], scores


def _reason(p: np.ndarray, thresholds: np.ndarray, label_names: Sequence[str]) -> str:
    from worker.ml.multilabel import labels_in_doubt

    index = {name: j for j, name in enumerate(label_names)}
    doubt = labels_in_doubt(p[None, :], thresholds, label_names, k=DOUBT_LABELS)[0]
    parts = [f"{name} at {p[index[name]]:.2f} (threshold {thresholds[index[name]]:.2f})"
             for name in doubt]
    return ("Labels in doubt: " + "; ".join(parts))[:300]


def predicted(p: np.ndarray, thresholds: np.ndarray, label_names: Sequence[str]
              ) -> list[dict[str, Any]]:
    """Every label, most probable first, with its threshold and whether it is proposed."""
    order = np.argsort(-p, kind="stable")
    return [{"label": label_names[j], "prob": round(float(p[j]), 4),
             "threshold": round(float(thresholds[j]), 4),
             "proposed": bool(p[j] >= thresholds[j])} for j in order]


def nearest_sets(embeddings: np.ndarray, labelled_emb: np.ndarray, labelled: LabelledSets,
                 label_names: Sequence[str], k: int = NEIGHBOURS) -> list[list[dict[str, Any]]]:
    """For each row, the ``k`` most similar labelled items (cosine) with their label sets."""
    if len(labelled) == 0 or len(embeddings) == 0:
        return [[] for _ in range(len(embeddings))]
    a = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    b = labelled_emb / np.maximum(np.linalg.norm(labelled_emb, axis=1, keepdims=True), 1e-12)
    sims = a @ b.T
    k = min(k, sims.shape[1])
    out = []
    for row in sims:
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        out.append([_neighbour(labelled, int(j), float(row[j]), label_names) for j in top])
    return out


def _neighbour(labelled: LabelledSets, j: int, similarity: float,
               label_names: Sequence[str]) -> dict[str, Any]:
    names = [label_names[i] for i in labelled.sets[j]]
    return {"item_id": labelled.item_ids[j], "label": set_text(names),
            "labels": names, "similarity": round(similarity, 4)}
