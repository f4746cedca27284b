"""What pooling the live head's halves costs: the mixture chosen against the arithmetic mean.

The live refit pools the embedding LR's and the TF-IDF LR's probabilities twice per refit on the
whole queueable pool (the served mixture, and the self-trained one) and chooses how on the
labels' out-of-fold predictions plus dev: until issue 18's last change the TF-IDF half's share
of the arithmetic mean (``best_tfidf_share``: three mixtures, three macro-F1s), now the share
and the mixture, arithmetic or geometric (``best_tfidf_pooling``: six). This times both side by
side in one process, on probabilities of the shapes a project has (``--pool`` items,
``--evidence`` labels + dev items, ``--classes``); the values do not change the cost.

    python -m tests.benchmarks.bench_mixture [--pool 10000 --evidence 1225 --classes 20]

Writes ``tests/benchmarks/results/mixture_cost.{json,md}``: medians of ``--repeats`` runs and the
now / before ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def _probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    logits = rng.normal(size=(n, k)) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _median_ms(fn: Any, repeats: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    from worker.ml.live_head import best_tfidf_pooling, best_tfidf_share, mix

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--evidence", type=int, default=1_225)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--out", default="mixture_cost")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pool = (_probs(rng, args.pool, args.classes), _probs(rng, args.pool, args.classes))
    evidence = (_probs(rng, args.evidence, args.classes), _probs(rng, args.evidence, args.classes))
    gold = rng.integers(0, args.classes, args.evidence)
    steps = {  # step: (before: arithmetic mean, share chosen; now: the mixture chosen too)
        "mixture over the pool (twice per refit)": (
            lambda: mix(*pool, 0.75, "arithmetic"), lambda: mix(*pool, 0.75, "geometric")),
        "choosing the pooling on the evidence": (
            lambda: best_tfidf_share(gold, *evidence, mixture="arithmetic"),
            lambda: best_tfidf_pooling(gold, *evidence)),
    }
    ms = {name: {"before": _median_ms(before, args.repeats), "now": _median_ms(now, args.repeats)}
          for name, (before, now) in steps.items()}
    ratios = {name: v["now"] / v["before"] for name, v in ms.items()}
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "settings": vars(args),
              "ms": ms, "now_over_before": ratios}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# Pooling the live head's halves: what choosing the mixture costs", "",
        f"{report['when']}; pool {args.pool:,} x {args.classes} classes, evidence "
        f"{args.evidence:,} items; medians of {args.repeats}, milliseconds. Before: the "
        "arithmetic mean, its share chosen (`best_tfidf_share`); now: the geometric mixture over "
        "the pool, the mixture and share chosen (`best_tfidf_pooling`).", "",
        "| step | before | now | ratio |", "|---|---:|---:|---:|",
    ]
    for name, v in ms.items():
        lines.append(f"| {name} | {v['before']:.2f} | {v['now']:.2f} | {ratios[name]:.1f}x |")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
