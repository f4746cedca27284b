"""Train on what changed: warm start + new labels + a replayed sample, against retraining on all.

Active-learning rounds on a dev data set with the product's round defaults (offline MiniLM, LoRA
on the top two layers, lower layers cached, mean pooling, min 30 steps, warm start from the
previous round): a seed batch, then batches of new labels (random picks, so both arms see the
same labels). Arm "all labels" trains every round on every label; arm "replay" trains on the
new labels plus ``--ratio`` times as many earlier ones (``worker.tasks.retrain.replay_subset``).
As in the product, every round's head starts from the live head fitted on all labels so far
(a logistic regression on the frozen encoder's mean-pooled embeddings; LP-FT).
Per round: test macro-F1 and training seconds, side by side.

    python -m tests.benchmarks.bench_replay [--dataset r8] [--seed-labels 200] [--step 100]
        [--rounds 4] [--test 800] [--ratio 1.0] [--name replay]

Writes ``tests/benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="r8", choices=("r8", "20ng"))
    parser.add_argument("--seed-labels", type=int, default=200)
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--test", type=int, default=800)
    parser.add_argument("--ratio", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--name", default="replay", help="results file name (no extension)")
    parser.add_argument("--arms", default="all labels,replay",
                        help="comma-separated arms to run (both by default)")
    args = parser.parse_args()

    from contract.adapter_config import AdapterConfig
    from worker.ml.evaluation import evaluate
    from worker.ml.layer_cache import LowerLayerCache
    from worker.ml.training import TrainConfig, train_classifier
    from worker.simulate.benchmark_data import load_dataset
    from worker.tasks.project_data import LabelledSet
    from worker.tasks.retrain import replay_subset

    texts, labels = load_dataset(args.dataset, "train")  # type: ignore[arg-type]
    test_texts, test_labels = load_dataset(args.dataset, "test")  # type: ignore[arg-type]
    names = sorted(set(labels))
    rng = random.Random(0)
    order = rng.sample([i for i, t in enumerate(texts) if t.strip()],
                       args.seed_labels + args.step * args.rounds)
    held = rng.sample(range(len(test_texts)), args.test)
    test_x = [test_texts[i] for i in held]
    test_y = [names.index(test_labels[i]) for i in held]
    adapter = AdapterConfig(kind="lora", layers=[4, 5], pooling="mean")
    import numpy as np

    from worker.ml.live_head import LiveHead
    from worker.ml.models import resolve_model_path
    from worker.ml.sentence_encoder import SentenceEncoder

    encoder = SentenceEncoder(resolve_model_path("minilm"), max_length=args.max_length)
    embedded = encoder.embed([texts[i] for i in order])
    cache = LowerLayerCache()
    started_all = time.perf_counter()
    rows: list[dict[str, Any]] = []
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for arm in arms:
        previous_model = None
        previous: dict[int, int] | None = None
        for round_ in range(args.rounds + 1):
            size = args.seed_labels + args.step * round_
            fit = LabelledSet(list(order[:size]), [texts[i] for i in order[:size]],
                              [names.index(labels[i]) for i in order[:size]])
            subset, note = (replay_subset(fit, previous, args.ratio, seed=round_)
                            if arm == "replay" else (fit, "all labels"))
            config = TrainConfig(max_length=args.max_length, seed=round_, min_steps=30)
            head_init = LiveHead().fit(embedded[:size], np.asarray(fit.labels),
                                       len(names)).linear_weights()
            started = time.perf_counter()
            result = train_classifier(subset.texts, subset.labels, label_names=names,
                                      base_model="minilm", adapter=adapter, config=config,
                                      init_from=previous_model, layer_cache=cache,
                                      head_init=head_init)
            seconds = time.perf_counter() - started
            metrics = evaluate(test_y, result.classifier.predict_proba(test_x), names)
            previous_model = result.classifier
            previous = dict(zip(fit.item_ids, fit.labels, strict=True))
            row = {"arm": arm, "round": round_, "labels": size, "trained_on": len(subset),
                   "note": note, "macro_f1": round(metrics["macro_f1"], 4),
                   "train_seconds": round(seconds, 2), "load": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    later = [r for r in rows if r["round"] > 0]
    by_arm = {arm: [r for r in later if r["arm"] == arm] for arm in arms}
    summary = {
        "median_train_seconds": {a: statistics.median(r["train_seconds"] for r in v)
                                 for a, v in by_arm.items()},
        "mean_macro_f1_after_seed": {a: round(statistics.mean(r["macro_f1"] for r in v), 4)
                                     for a, v in by_arm.items()},
        "final_macro_f1": {a: v[-1]["macro_f1"] for a, v in by_arm.items()},
    }
    report = {"args": vars(args), "rows": rows, "summary": summary,
              "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "seconds": round(time.perf_counter() - started_all, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Train on what changed: replay against all labels", "",
        f"Run {report['date']} in {report['seconds']} s on this 2-core CPU (shared); "
        f"`python -m tests.benchmarks.bench_replay --dataset {args.dataset} --seed-labels "
        f"{args.seed_labels} --step {args.step} --rounds {args.rounds} --test {args.test} "
        f"--ratio {args.ratio} --name {args.name}"
        + (f" --arms '{args.arms}'" if args.arms != "all labels,replay" else "")
        + "`. Offline MiniLM, LoRA r=8 on layers 4-5, "
        "lower layers cached, "
        "warm start from the previous round, head from the live head on all labels so far "
        "(LP-FT), min 30 steps, 3 epochs; test macro-F1 on "
        f"{args.test} held-out test texts. Labels count every label made (all are training "
        "labels here; no dev set).", "",
        "| round | labels | arm | trained on | macro-F1 | training s | load |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["round"], r["arm"])):
        lines.append(f"| {r['round']} | {r['labels']} | {r['arm']} | {r['trained_on']} | "
                     f"{r['macro_f1']:.3f} | {r['train_seconds']:.1f} | {r['load']} |")
    lines += ["", f"Median training seconds after the seed round: "
              f"{summary['median_train_seconds']}; mean macro-F1 after the seed round: "
              f"{summary['mean_macro_f1_after_seed']}."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
