"""Which layers get adapters by default? Accuracy against round cost for LoRA on the top k layers.

Adapters only in the upper layers let every round train (and score) from cached outputs of the
frozen lower layers (``TrainConfig.cache_lower_layers``). This measures, on the two dev data sets
(20 Newsgroups, Reuters R8) with the offline MiniLM (6 layers), LoRA r=8 on all layers against
LoRA on the top 3, 2 and 1 layers: test macro-F1 and the training time of one round (labels
from scratch, the lower-layer cache filled inside the round, as for a round whose texts no earlier
pass saw), each side by side in the same run, per seed. As in the product, the head starts from a
logistic regression on the frozen encoder's mean-pooled embeddings (the live head; LP-FT).

    python -m tests.benchmarks.bench_upper_layers [--labels 400] [--test 1000] [--seeds 2]

Writes ``tests/benchmarks/results/upper_layers.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"
ARMS: list[tuple[str, list[int] | None]] = [
    ("all 6 layers", None), ("top 3", [3, 4, 5]), ("top 2", [4, 5]), ("top 1", [5]),
]


def _sample(name: str, labels: int, test: int, seed: int) -> dict[str, Any]:
    from worker.simulate.benchmark_data import load_dataset

    train_texts, train_labels = load_dataset(name, "train")  # type: ignore[arg-type]
    test_texts, test_labels = load_dataset(name, "test")  # type: ignore[arg-type]
    names = sorted(set(train_labels))
    rng = random.Random(seed)
    pick = rng.sample([i for i, t in enumerate(train_texts) if t.strip()], labels)
    held = rng.sample([i for i, t in enumerate(test_texts) if t.strip()], test)
    return {
        "names": names,
        "texts": [train_texts[i] for i in pick],
        "labels": [names.index(train_labels[i]) for i in pick],
        "test_texts": [test_texts[i] for i in held],
        "test_labels": [names.index(test_labels[i]) for i in held],
    }


def live_head_init(texts: list[str], labels: list[int], k: int, max_length: int) -> Any:
    """The product's LP-FT start: the live head's (W, b) on mean-pooled MiniLM embeddings."""
    import numpy as np

    from worker.ml.live_head import LiveHead
    from worker.ml.models import resolve_model_path
    from worker.ml.sentence_encoder import SentenceEncoder

    embeddings = SentenceEncoder(resolve_model_path("minilm"), max_length=max_length).embed(texts)
    return LiveHead().fit(embeddings, np.asarray(labels), k).linear_weights()


def run(labels: int, test: int, seeds: int, max_length: int) -> dict[str, Any]:
    from contract.adapter_config import AdapterConfig
    from worker.ml.evaluation import evaluate
    from worker.ml.training import TrainConfig, train_classifier

    rows: list[dict[str, Any]] = []
    for dataset in ("20ng", "r8"):
        for seed in range(seeds):
            data = _sample(dataset, labels, test, seed)
            head_init = live_head_init(data["texts"], data["labels"], len(data["names"]),
                                       max_length)
            for arm, layers in ARMS:
                adapter = AdapterConfig(kind="lora", layers=layers, pooling="mean")
                config = TrainConfig(max_length=max_length, seed=seed, min_steps=30)
                started = time.perf_counter()
                result = train_classifier(
                    data["texts"], data["labels"], label_names=data["names"],
                    base_model="minilm", adapter=adapter, config=config, head_init=head_init,
                )
                train_s = time.perf_counter() - started
                started = time.perf_counter()
                probs = result.classifier.predict_proba(data["test_texts"])
                score_s = time.perf_counter() - started
                metrics = evaluate(data["test_labels"], probs, data["names"])
                row = {"dataset": dataset, "seed": seed, "arm": arm, "layers": layers,
                       "macro_f1": round(metrics["macro_f1"], 4),
                       "accuracy": round(metrics["accuracy"], 4),
                       "train_seconds": round(train_s, 2), "score_seconds": round(score_s, 2),
                       "load": round(os.getloadavg()[0], 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"rows": rows}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for dataset in ("20ng", "r8"):
        base = [r for r in rows if r["dataset"] == dataset and r["layers"] is None]
        for arm, _ in ARMS:
            mine = [r for r in rows if r["dataset"] == dataset and r["arm"] == arm]
            if not mine:
                continue
            out.append({
                "dataset": dataset, "arm": arm,
                "macro_f1": round(statistics.mean(r["macro_f1"] for r in mine), 4),
                "macro_f1_delta": round(statistics.mean(
                    r["macro_f1"] - b["macro_f1"] for r, b in zip(mine, base, strict=True)), 4),
                "train_speedup": round(statistics.median(
                    b["train_seconds"] / r["train_seconds"] for r, b in zip(mine, base,
                                                                           strict=True)), 2),
                "train_seconds": statistics.median(r["train_seconds"] for r in mine),
                "score_seconds": statistics.median(r["score_seconds"] for r in mine),
            })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.labels, args.test, args.seeds, args.max_length)
    table = summarise(result["rows"])
    result.update(
        summary=table, labels=args.labels, test=args.test, seeds=args.seeds,
        max_length=args.max_length, cpus=os.cpu_count(), python=platform.python_version(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        seconds=round(time.perf_counter() - started, 1),
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "upper_layers.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# LoRA on the top k layers: accuracy against round cost", "",
        f"Run {result['date']}, {result['cpus']} CPUs (shared), in {result['seconds']} s; "
        f"`python -m tests.benchmarks.bench_upper_layers --labels {args.labels} --test "
        f"{args.test} --seeds {args.seeds} --max-length {args.max_length}`. Offline MiniLM "
        "(6 layers), LoRA r=8 on attention, mean pooling, head from the live head (LP-FT), "
        "3 epochs, "
        "30 steps at least; test macro-F1 on held-out test texts (mean over seeds); training "
        "time of one round from scratch (median), speed-up against all layers per seed.", "",
        "| data set | arm | macro-F1 | Δ vs all layers | round training s | speed-up | "
        "test scoring s |", "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(f"| {r['dataset']} | {r['arm']} | {r['macro_f1']:.3f} | "
                     f"{r['macro_f1_delta']:+.3f} | {r['train_seconds']:.1f} | "
                     f"{r['train_speedup']:.2f}x | {r['score_seconds']:.1f} |")
    loads = [r["load"] for r in result["rows"]]
    lines += ["", f"Load average during the run: {min(loads)}-{max(loads)} (other jobs share "
              "the 2 cores; the speed-ups compare arms measured one after the other)."]
    (RESULTS / "upper_layers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
