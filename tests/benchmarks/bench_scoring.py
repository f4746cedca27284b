"""Pool-scoring throughput on the CPU: the product's scoring path against a plain padded forward.

Arms, measured side by side in one run, interleaved repeat by repeat, over the same texts (20
Newsgroups test posts, offline MiniLM, LoRA classifier at the default adapter settings):

- ``hf_padded_256`` / ``hf_padded_128``: the naive baseline, ``AutoModelForSequenceClassification``
  with the tokenizer's ``padding="max_length"`` at 256 / 128 tokens, batch 64, fp32,
  ``torch.no_grad``; tokenisation included.
- ``all_layers``: ``ChunkedScorer(classifier).score`` with LoRA on every layer (the adapter
  default before rounds moved the adapters up), max_length 256, batch 64, fp32: length
  bucketing, LoRA merged into copies of the base linears (built anew in every repeat, as every
  round loads its model).
- ``all_layers_int8``: the same with ``scoring_precision="int8"``; a fresh int8 build
  (calibration pass + quantization) is included in every repeat.
- ``product_cold`` / ``product_warm``: the default a round trains and scores with -- LoRA on the
  top two layers (``contract.adapter_config.with_default_layers``) and a float16
  :class:`LowerLayerCache` as the worker's ``shared_cache()`` holds it. The cold pass meets texts
  no round has seen (it fills the cache); the warm pass is the steady state of a project, whose
  pool items were scored by an earlier round or the background ``score_pool`` run.
- ``product_int8_warm``: the warm pass with ``scoring_precision="int8"`` (opt-in) on the top
  layers.

Run:  python -m tests.benchmarks.bench_scoring [--texts 1000 --repeats 3]
Writes tests/benchmarks/results/scoring.json and scoring.md. Figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from contract.adapter_config import AdapterConfig, with_default_layers
from worker.ml.adapters.build import build_adapted_model
from worker.ml.batching import encode, padding_ratio, sorted_batches
from worker.ml.classifier import TextClassifier
from worker.ml.layer_cache import LowerLayerCache
from worker.ml.models import (
    load_sequence_classifier,
    load_tokenizer,
    model_fingerprint,
    resolve_model_path,
)
from worker.ml.progress import NullReporter
from worker.ml.quantize import ScoringWeights, cpu_has_vnni
from worker.ml.scoring import ChunkedScorer
from worker.simulate.benchmark_data import load_dataset

RESULTS = Path(__file__).parent / "results"
BATCH = 64


def sample_texts(n: int, seed: int = 0) -> list[str]:
    texts, _ = load_dataset("20ng", "test")
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), n, replace=False)]


def make_classifier(base: str, labels: list[str], adapter: AdapterConfig) -> TextClassifier:
    adapted = build_adapted_model(load_sequence_classifier(base, labels), adapter)
    with torch.no_grad():  # a trained-looking adapter: LoRA B starts at zero, which merges to W
        for name, param in adapted.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    return TextClassifier(
        adapted,
        load_tokenizer(base),
        labels,
        base_model=base,
        base_fingerprint=model_fingerprint(base),
        device="cpu",
    )


def hf_padded(base: str, labels: list[str], max_length: int) -> Callable[[Sequence[str]], Any]:
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), dtype=torch.float32
    ).eval()
    tokenizer = load_tokenizer(base)

    def run(texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), BATCH):
                batch = tokenizer(
                    list(texts[start : start + BATCH]),
                    padding="max_length",
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                out.append(torch.softmax(model(**batch).logits, dim=-1).numpy())
        return np.concatenate(out)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = resolve_model_path("minilm")
    texts = sample_texts(args.texts)
    labels = [f"class_{i}" for i in range(20)]

    product = make_classifier(base, labels, AdapterConfig())
    product_int8 = make_classifier(base, labels, AdapterConfig())
    product_int8.model.load_state_dict(product.model.state_dict())  # same weights, for agreement
    product_int8.scoring_precision = "int8"
    unplaced = {k: v for k, v in AdapterConfig().to_dict().items() if k != "layers"}
    default = AdapterConfig.from_dict(with_default_layers(unplaced, 6))  # as a round places it
    assert default.layers == [4, 5], default.layers
    upper = make_classifier(base, labels, default)
    upper_int8 = make_classifier(base, labels, default)
    upper_int8.model.load_state_dict(upper.model.state_dict())
    upper_int8.scoring_precision = "int8"
    scorer = ChunkedScorer(product, NullReporter())
    scorer_int8 = ChunkedScorer(product_int8, NullReporter())
    padded = {length: hf_padded(base, labels, length) for length in (256, 128)}
    caches: list[LowerLayerCache] = []

    def run_product(scored: ChunkedScorer) -> Callable[[Sequence[str]], Any]:
        def run(batch: Sequence[str]) -> np.ndarray:
            # every round loads its model: the scoring weights are built anew in every repeat
            scored.classifier._int8 = ScoringWeights(int8=True)
            scored.classifier._merged = ScoringWeights(int8=False)
            return scored.score(batch).probs

        return run

    def cache_pass(warm: bool, int8: bool = False) -> Callable[[Sequence[str]], Any]:
        model = upper_int8 if int8 else upper

        def run(batch: Sequence[str]) -> np.ndarray:
            if not warm:  # as the worker's shared cache stores them
                caches.append(LowerLayerCache(dtype=torch.float16))
            # every round loads its model: the scoring weights are built anew in every repeat
            model._merged = ScoringWeights(int8=False)
            model._int8 = ScoringWeights(int8=True)
            model.use_layer_cache(caches[-1])
            return ChunkedScorer(model, NullReporter()).score(batch).probs

        return run

    arms: dict[str, Callable[[Sequence[str]], Any]] = {
        "hf_padded_256": padded[256],
        "hf_padded_128": padded[128],
        "all_layers": run_product(scorer),
        "all_layers_int8": run_product(scorer_int8),
        "product_cold": cache_pass(warm=False),
        "product_warm": cache_pass(warm=True),
        "product_int8_warm": cache_pass(warm=True, int8=True),
    }
    load_start = os.getloadavg()
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    outputs: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats):
        for name, arm in arms.items():
            started = time.perf_counter()
            outputs[name] = arm(texts)
            seconds[name].append(time.perf_counter() - started)
            print(f"repeat {repeat + 1} {name:30s} {seconds[name][-1]:7.2f} s", flush=True)
    load_end = os.getloadavg()

    medians = {name: statistics.median(values) for name, values in seconds.items()}
    items_per_s = {name: len(texts) / value for name, value in medians.items()}
    base256, base128 = items_per_s["hf_padded_256"], items_per_s["hf_padded_128"]
    agreement = float(
        (outputs["all_layers_int8"].argmax(axis=1) == outputs["all_layers"].argmax(axis=1)).mean()
    )
    tokenizer = load_tokenizer(base)
    lengths = [len(ids) for ids in encode(tokenizer, texts, 256)]
    in_chunks = [
        [start + i for i in batch]
        for start in range(0, len(lengths), 256)
        for batch in sorted_batches(lengths[start : start + 256], BATCH)
    ]
    record: dict[str, Any] = {
        "texts": len(texts),
        "data": "20 Newsgroups test, random sample (seed 0)",
        "model": "all-MiniLM-L6-v2 (offline), LoRA r=8 on attention (all layers, or the top "
        "two: the default), 20 labels",
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "quantized_engine": torch.backends.quantized.engine,
        "vnni": cpu_has_vnni(),
        "seconds": seconds,
        "median_seconds": medians,
        "items_per_second": items_per_s,
        "ratio_vs_hf_padded_256": {n: v / base256 for n, v in items_per_s.items()},
        "ratio_vs_hf_padded_128": {n: v / base128 for n, v in items_per_s.items()},
        "pieces": {
            "int8_over_fp32_all_layers": items_per_s["all_layers_int8"]
            / items_per_s["all_layers"],
            "int8_over_fp32_warm": items_per_s["product_int8_warm"] / items_per_s["product_warm"],
            "cache_warm_over_cold": items_per_s["product_warm"] / items_per_s["product_cold"],
        },
        "padding_at_256": {
            "max_length": 1 - sum(lengths) / (256 * len(lengths)),
            "buckets_within_chunks_of_256": padding_ratio(lengths, in_chunks),
            "buckets_over_the_whole_pool": padding_ratio(lengths, sorted_batches(lengths, BATCH)),
        },
        "argmax_agreement_int8_vs_fp32_untrained_head": agreement,
        "load_average_start": load_start,
        "load_average_end": load_end,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scoring.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    write_markdown(record, RESULTS / "scoring.md")
    for name, value in items_per_s.items():
        print(
            f"{name:30s} {value:8.1f} items/s  x{value / base256:5.2f} vs padded-256  "
            f"x{value / base128:5.2f} vs padded-128"
        )
    print(f"load average start {load_start} end {load_end}")


def write_markdown(record: dict[str, Any], path: Path) -> None:
    lines = [
        "# Pool scoring throughput (CPU)",
        "",
        f"{record['texts']} texts ({record['data']}), {record['model']}; batch {BATCH}; "
        f"{record['torch_threads']} torch threads on {record['cpu_count']} cores; quantized "
        f"engine {record['quantized_engine']}, VNNI {record['vnni']}. Medians of "
        f"{record['repeats']} repeats, arms interleaved. Other jobs ran on this machine: load "
        f"average {record['load_average_start'][0]:.2f} at the start, "
        f"{record['load_average_end'][0]:.2f} at the end, so absolute figures are noisy; the "
        "ratios come from the same run.",
        "",
        "| arm | median s | items/s | × padded 256 | × padded 128 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, value in record["items_per_second"].items():
        lines.append(
            f"| {name} | {record['median_seconds'][name]:.2f} | {value:.1f} | "
            f"{record['ratio_vs_hf_padded_256'][name]:.2f} | "
            f"{record['ratio_vs_hf_padded_128'][name]:.2f} |"
        )
    pieces = record["pieces"]
    padding = record["padding_at_256"]
    lines += [
        "",
        "Pieces:",
        f"- length bucketing: padding at 256 tokens: {padding['max_length']:.1%} of the "
        f"positions padded to max_length, "
        f"{padding['buckets_within_chunks_of_256']:.1%} bucketed within chunks of 256, "
        f"{padding['buckets_over_the_whole_pool']:.1%} bucketed over the whole pool",
        f"- int8 over fp32 (int8 build included): ×{pieces['int8_over_fp32_all_layers']:.2f} "
        f"with LoRA on every layer, ×{pieces['int8_over_fp32_warm']:.2f} on the top layers "
        "over a warm cache",
        f"- lower-layer cache (float16), second pass over first (adapters on the top two "
        f"layers): ×{pieces['cache_warm_over_cold']:.2f}",
        "",
        "The benchmark's classifier is not trained (random head, random LoRA B), so its int8/fp32 "
        f"argmax agreement ({record['argmax_agreement_int8_vs_fp32_untrained_head']:.1%}) says "
        "little; the agreement on a trained classifier and a real dev set is asserted by "
        "`tests/worker/ml/test_quantize.py`.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
