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
* **Served model**: the live head, unless the project's current version is a multi-label adapter
  (:mod:`worker.tasks.retrain_multilabel`) whose dev macro-F1 beats the live head's on the same
  dev set by more than :data:`SERVED_MIN_GAIN` (:func:`served_choice`; both at per-label
  thresholds tuned on that dev set, so a near tie goes to the cheaper live head). The adapter's
  score is the one its round recorded (``RoundMetric``), valid only while the dev set's items
  and label sets are those it was measured on (:func:`dev_fingerprint`). Either way the queue is
  built from the live head's probabilities: the adapter does not score the pool (no queue
  rebuild for multi-label).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import SERVED_ADAPTER, SERVED_LIVE_HEAD, RoundMetric
from app.domain.annotation.label_sets import set_text
from contract.strategies import DEFAULT_MULTI_LABEL_STRATEGY, MULTI_LABEL_STRATEGIES
from worker.tasks.project_data import LabelledSets, ProjectSnapshot

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
    served: str = SERVED_LIVE_HEAD
    """:data:`SERVED_LIVE_HEAD`, or :data:`SERVED_ADAPTER` when the current adapter version wins
    on dev (:func:`served_choice`)."""


SERVED_MIN_GAIN = 0.01
"""Dev macro-F1 by which a multi-label adapter must beat the live head to be served. Both are
scored at thresholds tuned on that same dev set, and the adapter's epoch was also chosen on it
(optimistic, and noisy on tens of items). On the Cooking simulation
(``tests/benchmarks/bench_multilabel_adapter.py``, 3 seeds x 3 budgets, dev sets of 57-229
items): without class weighting a bare "higher wins" served the adapter 5 times out of 9, 4 of
them where it was worse on the test set (-1.9 points macro-F1 at 5 % of the pool), and the margin
avoided that; with the class-weighted default round the margin cost 0.6 points at 10 % (it kept
the live head where the adapter was 0.9 better) and nothing elsewhere. Kept: it guards the rounds
that go wrong (a head from scratch, a bad seed) at the price of a near tie."""

MULTI_LABEL_TASK = "multi_label"
"""``RoundMetric.details["task_type"]`` of a multi-label adapter round."""


@dataclass(frozen=True)
class AdapterScore:
    """The dev figures the round of the project's current version recorded, when that version is
    a multi-label adapter (:func:`adapter_score`)."""

    version: int
    macro_f1: float | None
    """None: trained without a dev set of :data:`MIN_DEV`+ items (thresholds at 0.5)."""
    micro_f1: float | None = None
    dev_n: int = 0
    dev_fingerprint: str | None = None


def dev_fingerprint(dev: LabelledSets) -> str:
    """A digest of the dev items and their label sets: a score measured on one fingerprint is
    comparable with another measured on the same one only."""
    payload = json.dumps([[int(i), sorted(int(j) for j in s)]
                          for i, s in zip(dev.item_ids, dev.sets, strict=True)],
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def adapter_score(session: Session, snapshot: ProjectSnapshot) -> AdapterScore | None:
    """The current version's recorded dev figures, or None when there is no current version or
    it is not a multi-label adapter round's."""
    if snapshot.current_version_id is None:
        return None
    row = session.scalars(
        select(RoundMetric)
        .where(RoundMetric.model_version_id == snapshot.current_version_id)
        .order_by(RoundMetric.id.desc())
        .limit(1)
    ).first()
    details = dict(row.details or {}) if row is not None else {}
    if row is None or details.get("task_type") != MULTI_LABEL_TASK:
        return None
    micro = details.get("micro_f1")
    fingerprint = details.get("dev_fingerprint")
    return AdapterScore(
        version=int(snapshot.current_version_number or 0),
        macro_f1=float(row.macro_f1) if row.macro_f1 is not None else None,
        micro_f1=float(micro) if isinstance(micro, int | float) else None,
        dev_n=int(details.get("dev_n") or 0),
        dev_fingerprint=str(fingerprint) if fingerprint else None,
    )


def served_choice(live_macro_f1: float | None, adapter: AdapterScore | None,
                  dev: LabelledSets) -> tuple[str, str]:
    """``(served, what the reason says about the adapter)``: the adapter when its dev macro-F1 is
    higher than the live head's (``live_macro_f1``, None without a dev set of :data:`MIN_DEV`+
    items) by more than :data:`SERVED_MIN_GAIN` on the same dev set (``dev``, by
    :func:`dev_fingerprint`), else the live head (a near tie too: it is cheaper). Both scores
    are at thresholds tuned on that dev set."""
    if adapter is None:
        return SERVED_LIVE_HEAD, ""
    name = f"adapter v{adapter.version}"
    if adapter.macro_f1 is None:
        return SERVED_LIVE_HEAD, (
            f"{name} has no dev score (trained without a dev set of {MIN_DEV}+ items, its "
            "thresholds are 0.5), so the live head serves")
    if live_macro_f1 is None:
        return SERVED_LIVE_HEAD, (
            f"{name} is not compared: the dev set has fewer than {MIN_DEV} items with label "
            "sets now, so the live head serves")
    if adapter.dev_fingerprint != dev_fingerprint(dev):
        return SERVED_LIVE_HEAD, (
            f"{name} was measured on another dev set ({adapter.dev_n} items; dev items or their "
            "label sets changed since), so the live head serves until the next round")
    a, live = round(adapter.macro_f1, 4), round(live_macro_f1, 4)
    if a > live + SERVED_MIN_GAIN:
        return SERVED_ADAPTER, (
            f"{name} serves: dev macro-F1 {a:.3f} against the live head's {live:.3f} on the same "
            f"{len(dev)} dev items (both at thresholds tuned on them); the queue still comes "
            "from the live head's probabilities")
    return SERVED_LIVE_HEAD, (
        f"the live head serves: dev macro-F1 {live:.3f} against {name}'s {a:.3f} on the same "
        f"{len(dev)} dev items (both at thresholds tuned on them; the adapter must win by more "
        f"than {SERVED_MIN_GAIN:g} to serve)")


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
    adapter: AdapterScore | None = None,
) -> MultiLabelChoice:
    """Fit the head and pick ``n`` of ``queueable`` (rows of ``pool``), most informative first
    by ``strategy`` (a single-label name falls back to the default); serve the current
    multi-label ``adapter`` instead when it wins on dev (:func:`served_choice`)."""
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
    served, note = served_choice(scores.get("macro_f1"), adapter, dev)
    if (adapter is not None and adapter.macro_f1 is not None and "macro_f1" in scores
            and adapter.dev_fingerprint == dev_fingerprint(dev)):
        scores["adapter"] = round(float(adapter.macro_f1), 4)  # compared on the same dev set
    if note:
        reason = f"{note}; {reason}" if served == SERVED_ADAPTER else f"{reason}; {note}"
    choice = MultiLabelChoice(reason, model_scores=scores, head=head, strategy=strategy,
                              served=served)
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
