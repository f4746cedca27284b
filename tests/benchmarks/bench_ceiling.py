"""The MiniLM full fine-tuning ceiling on 100 % of a pool, beside the cheap models (issue 18).

DATA.md gives the ceiling for R8 (3 epochs, lr 5e-5, 128 tokens: 0.939) and issue 18 for 20NG
(0.834). This benchmark measures it for any of ``bench_few_labels``'s corpora the same way —
``worker.ml.training.train_classifier`` with ``AdapterConfig(kind="full")`` on every pool text,
no dev set, scored on the whole test split — and, in the same run and on the same pool, DATA.md's
three cheap models on 100 % of the labels (``bench_few_labels.baselines``), so the bars of
``docs/results.md`` come from one place.

    python -m tests.benchmarks.few_labels_data spam tweets --windows 1   # embeddings, cached
    python -m tests.benchmarks.bench_ceiling --datasets spam tweets [--seeds 0]

Writes ``tests/benchmarks/results/<name>.{json,md}`` (``--name``, default ``ceiling``): test
macro-F1 per seed, the training seconds and optimizer steps. On one CPU thread: spam (3,911
e-mails, 128 tokens, 3 epochs, 735 steps) took 1,664 s (0.978), tweets (9,872 texts, 1,851
steps) 1,652-1,952 s per seed (0.778 ± 0.002 over seeds 0-2; docs/results.md).
``--fraction 0.1 --adapter full|default`` trains on ``bench_few_labels``' random 10 % instead,
fully or with the product's default adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"
EPOCHS = 3
LR_FULL = 5e-5
MAX_LENGTH = 128
BATCH_SIZE = 16


def fine_tune(texts: list[str], y: np.ndarray, names: list[str], test_texts: list[str],
              seed: int, device: str, adapter: str = "full") -> dict[str, Any]:
    """Full fine-tuning of the offline MiniLM on ``texts`` (``adapter`` "full"), or the
    product's default adapter round's model: ``AdapterConfig()`` (LoRA) with ``TrainConfig()``'s
    defaults and the round's ``MIN_STEPS`` (``adapter`` "default"); test predictions and cost."""
    from contract.adapter_config import AdapterConfig
    from worker.ml.training import TrainConfig, train_classifier
    from worker.tasks.round_parts import MIN_STEPS

    if adapter == "full":
        config = TrainConfig(epochs=EPOCHS, lr_full=LR_FULL, max_length=MAX_LENGTH,
                             batch_size=BATCH_SIZE, device=device, seed=seed,
                             cache_lower_layers=False)
        kind = AdapterConfig(kind="full")
    else:
        config, kind = TrainConfig(min_steps=MIN_STEPS, device=device, seed=seed), AdapterConfig()
    result = train_classifier(texts, [int(v) for v in y], label_names=names,
                              base_model="minilm", adapter=kind, config=config)
    probs = result.classifier.predict_proba(test_texts)
    return {"pred": np.asarray(probs).argmax(1), "train_seconds": result.train_seconds,
            "seconds": result.seconds,
            "steps": max((h["step"] for h in result.history if "step" in h), default=0)}


def run(name: str, seeds: list[int], device: str, fraction: float = 1.0,
        adapter: str = "full") -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tests.benchmarks.bench_few_labels import Features, baselines, macro_f1
    from tests.benchmarks.few_labels_data import load_corpus, window_embeddings

    corpus = load_corpus(name)
    k = len(corpus.label_names)
    pool_e = window_embeddings(corpus.train_texts, windows=1).pooled(1)  # type: ignore[attr-defined]
    test_e = window_embeddings(corpus.test_texts, windows=1).pooled(1)  # type: ignore[attr-defined]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, dtype=np.float32)
    feats = Features(pool_e, test_e, vec.fit_transform(corpus.train_texts),
                     vec.transform(corpus.test_texts))
    everything = np.arange(len(corpus.train_texts))
    entry: dict[str, Any] = {
        "pool": len(corpus.train_texts), "test": len(corpus.test_texts), "classes": k,
        "baselines_100": baselines(feats, corpus.train_y, corpus.test_y, everything, k),
        "ceiling": {},
    }
    for seed in seeds:
        rows = everything
        if fraction < 1:  # bench_few_labels' random 10 % (DATA.md: nested random samples)
            budget = max(round(fraction * len(everything)), 2 * k)
            rows = np.sort(np.random.default_rng(seed).permutation(len(everything))[:budget])
        out = fine_tune([corpus.train_texts[i] for i in rows], np.asarray(corpus.train_y)[rows],
                        corpus.label_names, corpus.test_texts, seed, device, adapter)
        entry["ceiling"][str(seed)] = {
            "labels": len(rows), "macro_f1": macro_f1(corpus.test_y, out["pred"]),
            "train_seconds": round(out["train_seconds"], 1),
            "seconds": round(out["seconds"], 1), "steps": out["steps"],
        }
        print(f"{name} seed {seed}: {entry['ceiling'][str(seed)]}", flush=True)
    scores = [v["macro_f1"] for v in entry["ceiling"].values()]
    entry["ceiling_mean"] = statistics.mean(scores)
    entry["ceiling_std"] = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    return entry


def write_markdown(report: dict[str, Any], path: Path) -> None:
    settings = report["settings"]
    fraction, adapter = settings.get("fraction", 1.0), settings.get("adapter", "full")
    what = ("MiniLM full fine-tuning" if adapter == "full" else
            "MiniLM with the product's default adapter (LoRA r 8 on every layer's attention, "
            "TrainConfig's defaults, at least 30 steps)")
    from worker.ml.training import TrainConfig

    d = TrainConfig()
    how = (f"{EPOCHS} epochs, lr {LR_FULL}, {MAX_LENGTH} tokens, batch {BATCH_SIZE}"
           if adapter == "full" else f"{d.epochs} epochs, lr {d.lr_adapter:g} (adapter) / "
           f"{d.lr_head:g} (head), {d.max_length} tokens, batch {d.batch_size}")
    lines = [
        f"# {what} on {'a random ' if fraction < 1 else ''}{fraction:.0%} of the pool, beside "
        "the cheap models on 100 %",
        "",
        f"{report['when']}; {how}, device {settings['device']}. Test macro-F1.",
        "",
        "| set | pool | fine-tuned (mean ± std) | per seed | train s (median) | tfidf-lr | "
        "tfidf-svm | embed-lr |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, e in report["datasets"].items():
        per = ", ".join(f"{v['macro_f1']:.4f}" for v in e["ceiling"].values())
        secs = statistics.median(v["train_seconds"] for v in e["ceiling"].values())
        b = e["baselines_100"]
        lines.append(
            f"| {name} | {e['pool']} | {e['ceiling_mean']:.4f} ± {e['ceiling_std']:.4f} | {per} "
            f"| {secs:.0f} | {b['tfidf-lr']:.4f} | {b['tfidf-svm']:.4f} | {b['embed-lr']:.4f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["spam", "tweets"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default="ceiling")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="train on a random share of the pool (bench_few_labels' random "
                        "10 %% rows for 0.1); the cheap models stay on 100 %%")
    parser.add_argument("--adapter", choices=["full", "default"], default="full",
                        help="full fine-tuning (the ceiling) or the product's default adapter")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "settings": vars(args),
        "datasets": {},
    }
    for name in args.datasets:
        report["datasets"][name] = run(name, args.seeds, args.device, args.fraction,
                                       args.adapter)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
        write_markdown(report, RESULTS / f"{args.name}.md")


if __name__ == "__main__":
    main()
