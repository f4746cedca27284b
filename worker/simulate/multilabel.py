"""``tapestry simulate --multi-label``: active learning for label sets against random sampling
and cheap baselines, on a file of texts with label lists.

Data: a JSONL file (``labels`` an array of names; ``[]`` for none) or a CSV/TSV file (names
joined by ``--label-separator``, default ``|``; an empty cell is an empty set), with a test file,
or else a random fifth of the file held out as test. Embeddings: the base encoder's first
``--max-length`` tokens, mean-pooled (:mod:`worker.simulate.embed`, cached with
``--embed-cache``).

Arms, each measured at 1, 2, 5, 10 and 20 % of the pool (every label counted; no dev set:
thresholds are tuned on 3-fold out-of-fold probabilities of the labelled items, so no label is
spent on them):

* active learning with the product's multi-label live head
  (:class:`worker.ml.multilabel.MultiLabelHead`, one-vs-rest LR with per-label thresholds) and
  one acquisition score each: ``margin`` (the product's: the label closest to its threshold),
  ``entropy`` (mean binary entropy), ``mmc`` (Yang et al. 2009), ``cluster-margin`` (k-means over
  the pool, the most doubtful item per cluster in round robin); a random 1 % seed, then batches
  up to the next of :data:`STEPS`;
* ``random``: the same head and thresholds on random samples (nested across budgets);
* cheap baselines on the same random samples (one-vs-rest ``LogisticRegression(C=10)``, decision
  at 0.5): ``tfidf-ovr-lr`` (1-2 grams, sublinear tf, min_df 2, fitted on the pool's texts) and
  ``embed-ovr-lr``; both also on 100 % of the pool.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.errors import ConfigError

BUDGETS = (0.01, 0.02, 0.05, 0.10, 0.20)
STEPS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.065, 0.08, 0.10, 0.125, 0.15, 0.175, 0.20)
STRATEGIES = ("margin", "entropy", "mmc", "cluster-margin")
METRICS = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")


@dataclass(frozen=True)
class MultiLabelData:
    label_names: list[str]
    texts: list[str]
    Y: np.ndarray
    test_texts: list[str]
    Yt: np.ndarray


def read_sets(path: Path, *, text_column: str = "text", label_column: str = "labels",
              separator: str = "|") -> tuple[list[str], list[list[str]]]:
    """Texts and their label-name sets from a JSONL or CSV/TSV file (errors name the line)."""
    if not path.is_file():
        raise ConfigError(f"{path} is not a file")
    texts: list[str] = []
    sets: list[list[str]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ConfigError(f"{path} line {number}: invalid JSON ({error.msg})"
                                      ) from error
                value = row.get(label_column) if isinstance(row, dict) else None
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{path} line {number}: {label_column!r} must be a list "
                                      "of label names ([] for none)")
                texts.append(_text(row, text_column, path, number))
                sets.append(sorted({v.strip() for v in value if v.strip()}))
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            for number, row in enumerate(reader, start=2):
                if label_column not in row:
                    raise ConfigError(f"{path}: no column {label_column!r}")
                cell = row.get(label_column) or ""
                texts.append(_text(row, text_column, path, number))
                sets.append(sorted({v.strip() for v in cell.split(separator) if v.strip()}))
    if not texts:
        raise ConfigError(f"{path} has no rows")
    return texts, sets


def _text(row: Any, column: str, path: Path, number: int) -> str:
    value = row.get(column) if isinstance(row, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path} line {number}: no text in column {column!r}")
    return value


def load_data(train: Path, test: Path | None, *, label_column: str = "labels",
              separator: str = "|", seed: int = 0) -> MultiLabelData:
    from worker.ml.multilabel import label_matrix

    texts, sets = read_sets(train, label_column=label_column, separator=separator)
    if test is not None:
        test_texts, test_sets = read_sets(test, label_column=label_column, separator=separator)
    else:
        order = np.random.default_rng(seed).permutation(len(texts))
        cut = len(texts) // 5
        test_texts, test_sets = [texts[i] for i in order[:cut]], [sets[i] for i in order[:cut]]
        texts, sets = [texts[i] for i in order[cut:]], [sets[i] for i in order[cut:]]
    names = sorted({name for labels in sets for name in labels})
    if len(names) < 2:
        raise ConfigError("the pool needs at least two labels in use")
    index = {name: j for j, name in enumerate(names)}
    unknown = sorted({n for labels in test_sets for n in labels} - set(index))
    if unknown:
        raise ConfigError(f"test labels not in the pool: {', '.join(unknown[:10])}")
    Y = label_matrix([[index[n] for n in labels] for labels in sets], len(names))
    Yt = label_matrix([[index[n] for n in labels] for labels in test_sets], len(names))
    return MultiLabelData(names, texts, Y, test_texts, Yt)


def head_with_thresholds(X: np.ndarray, Y: np.ndarray, seed: int) -> Any:
    """The head on all labelled items, thresholds from 3-fold out-of-fold probabilities."""
    from worker.ml.multilabel import fit_with_thresholds

    return fit_with_thresholds(X, Y, folds=3, seed=seed)


PRODUCT_STRATEGY = {"margin": "threshold_margin", "entropy": "binary_entropy", "mmc": "mmc",
                    "cluster-margin": "cluster_threshold_margin"}
"""This simulation's arm names -> the product's multi-label strategies."""


def next_rows(strategy: str, head: Any, P: np.ndarray, E: np.ndarray, labelled_P: np.ndarray,
              labelled_Y: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """Pool rows to ask next (``n``), most informative first, as the product's live head asks
    (:func:`worker.ml.multilabel.acquisition_order`)."""
    from worker.ml.multilabel import acquisition_order

    if strategy not in PRODUCT_STRATEGY:
        raise ConfigError(f"unknown multi-label strategy {strategy!r}; "
                          f"choose from {', '.join(STRATEGIES)}")
    rows, _ = acquisition_order(PRODUCT_STRATEGY[strategy], P, head.thresholds, E, n,
                                seed=int(rng.integers(2**31)), labelled_probs=labelled_P,
                                labelled_Y=labelled_Y)
    return [int(i) for i in rows]


def evaluate(Y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from worker.ml.multilabel import report

    r = report(Y, pred)
    return {k: round(float(r[k]), 4) for k in METRICS}


def run_active(strategy: str, E: np.ndarray, Y: np.ndarray, Et: np.ndarray, Yt: np.ndarray,
               seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = len(Y)
    labelled = [int(i) for i in rng.choice(n, size=max(2, round(STEPS[0] * n)), replace=False)]
    curve: dict[str, dict[str, float]] = {}
    seconds = []
    head = head_with_thresholds(E[labelled], Y[labelled], seed)
    for step in STEPS:
        target = round(step * n)
        t = time.perf_counter()
        if target > len(labelled):
            rest = np.setdiff1d(np.arange(n), labelled)
            P = head.predict_proba(E[rest])
            picked = next_rows(strategy, head, P, E[rest], head.predict_proba(E[labelled]),
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
        rows = order[: max(2, round(budget * len(Y)))]
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
    """One-vs-rest ``LogisticRegression(C=10)``, decision at 0.5; a label absent from the sample
    is never predicted."""
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


def simulate(data: MultiLabelData, embed: Callable[[Sequence[str]], np.ndarray], *,
             seeds: Sequence[int], strategies: Sequence[str] = STRATEGIES,
             log: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """Every arm on every seed; the report :func:`markdown` renders."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ConfigError(f"unknown multi-label strategy {unknown[0]!r}; "
                          f"choose from {', '.join(STRATEGIES)}")
    started = time.perf_counter()
    E, Et = embed(data.texts), embed(data.test_texts)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                 min_df=2 if len(data.texts) >= 50 else 1).fit(data.texts)
    T, Tt = vectorizer.transform(data.texts), vectorizer.transform(data.test_texts)
    runs: dict[str, list[Any]] = {}
    for seed in seeds:
        for name, result in run_random(E, data.Y, Et, data.Yt, T, Tt, seed).items():
            runs.setdefault(name, []).append({"curve": result})
        for strategy in strategies:
            runs.setdefault(strategy, []).append(
                run_active(strategy, E, data.Y, Et, data.Yt, seed))
            log(f"seed {seed} {strategy} done ({time.perf_counter() - started:.0f} s)")
    return {
        "pool": len(data.Y), "test": len(data.Yt), "labels": len(data.label_names),
        "label_names": data.label_names,
        "label_cardinality_pool": round(float(data.Y.sum(axis=1).mean()), 3),
        "seeds": list(seeds), "cpus": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summarise(runs), "runs": runs,
    }


def summarise(runs: dict[str, list[Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm and budget: mean and std over seeds of every metric, and the labels used."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm, seeds in runs.items():
        budgets = sorted({b for s in seeds for b in s["curve"]}, key=float)
        out[arm] = {}
        for b in budgets:
            rows = [s["curve"][b] for s in seeds if b in s["curve"]]
            out[arm][b] = {"labels": rows[0]["labels"]}
            for metric in METRICS:
                values = [r[metric] for r in rows]
                out[arm][b][metric] = round(statistics.mean(values), 4)
                out[arm][b][f"{metric}_std"] = round(statistics.pstdev(values), 4)
    return out


def markdown(report: dict[str, Any], title: str = "Multi-label active learning") -> str:
    summary = report["summary"]
    budgets = [f"{b:.2f}" for b in BUDGETS]
    lines = [
        f"# {title}",
        "",
        f"Pool {report['pool']:,}, test {report['test']:,}, {report['labels']} labels, "
        f"{report['label_cardinality_pool']} per item; seeds {report['seeds']}; "
        f"{report['cpus']} CPUs; {report['seconds']} s. Every label counted (no dev set: "
        "thresholds from 3-fold out-of-fold probabilities). `margin` is the product's default.",
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


def run_from_args(args: argparse.Namespace) -> int:
    """``tapestry simulate --multi-label``: writes results.json and summary.md to ``--out``."""
    from worker.simulate.embed import cached_embedder

    source = args.dataset or args.train_file
    if source is None:
        raise ConfigError("give a CSV/JSONL file of texts with label lists")
    data = load_data(Path(source), Path(args.test_file) if args.test_file else None,
                     label_column=args.label_column, separator=args.label_separator)
    embed = cached_embedder(args.base_model, args.embed_cache, max_length=args.max_length,
                            device=args.device, log=lambda line: print(line, flush=True))
    report = simulate(data, embed, seeds=tuple(args.seeds or (0, 1, 2)),
                      strategies=tuple(args.ml_strategies or STRATEGIES),
                      log=lambda line: print(line, flush=True))
    text = markdown(report, f"Multi-label active learning: {Path(source).name}")
    print(text)
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "summary.md").write_text(text)
        print(f"wrote {out / 'results.json'}\nwrote {out / 'summary.md'}")
    return 0
