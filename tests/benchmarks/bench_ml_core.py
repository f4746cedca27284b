"""ML core benchmarks on the offline MiniLM, each pair measured side by side in one run.

1. LoRA vs full fine-tuning: trainable %, peak memory, training examples/s, artifact size.
2. TAPT step: logits at masked positions only vs full-vocabulary logits everywhere: steps/s.
3. Pool scoring with cached frozen lower layers vs the full forward: items/s.

Run:  python -m tests.benchmarks.bench_ml_core                 (CPU, a few minutes)
      python -m tests.benchmarks.bench_ml_core --device cuda --tag cuda \
          --train-texts 2048 --pool 20000 --repeats 3 --tapt-steps 10
Writes tests/benchmarks/results/ml_core.json and ml_core.md. Figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from contract.adapter_config import AdapterConfig, AdapterKind
from worker.ml.artifacts import save_artifact
from worker.ml.layer_cache import LowerLayerCache
from worker.ml.models import load_masked_lm, load_tokenizer, resolve_model_path
from worker.ml.runtime import make_precision, resolve_device
from worker.ml.schedule import apply_lr
from worker.ml.tapt import TaptConfig, _Corpus, _Tapt
from worker.ml.training import TrainConfig, train_classifier
from worker.simulate.benchmark_data import load_dataset

RESULTS = Path(__file__).parent / "results"
THREADS = torch.get_num_threads()


class PeakRss:
    """Samples this process's RSS in a thread; reports the peak above the starting level."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start = self.peak = 0

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 2**20


class CpuClock:
    """Reporter that notes process CPU time at each training step (robust to a busy machine)."""

    def __init__(self) -> None:
        self.cpu: list[float] = []

    def report(self, **_: Any) -> None:
        self.cpu.append(time.process_time())

    def cancelled(self) -> bool:
        return False

    def examples_per_cpu_second(self, examples: int, batch_size: int) -> float:
        """Steps 2..N (the first step includes one-off warm-up costs)."""
        return (examples - batch_size) / (self.cpu[-1] - self.cpu[0])


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _train_once(
    kind: AdapterKind,
    seed: int,
    device_choice: str,
    texts: list[str],
    labels: list[int],
    names: list[str],
) -> dict[str, Any]:
    """One training run in a fresh process, so peak memory is not hidden by earlier runs."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(THREADS)
    device = resolve_device(device_choice)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(epochs=1, batch_size=16, max_length=128, device=device_choice, seed=seed)
    clock = CpuClock()
    with PeakRss() as rss:
        result = train_classifier(
            texts,
            labels,
            label_names=names,
            base_model="minilm",
            adapter=AdapterConfig(kind=kind),
            config=config,
            reporter=clock,
        )
    with tempfile.TemporaryDirectory() as tmp:
        size = dir_size_mb(save_artifact(result.classifier, Path(tmp) / "a"))
    return {
        "examples_per_s": len(texts) / result.train_seconds,
        "cpu_examples_per_s": clock.examples_per_cpu_second(len(texts), 16),
        "rss_mb": rss.delta_mb,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "trainable_params": result.trainable_params,
        "trainable_percent_of_base": result.trainable_percent,
        "artifact_mb": size,
    }


def bench_training(
    args: argparse.Namespace, texts: list[str], labels: list[int], names: list[str]
) -> dict[str, Any]:
    """LoRA and full fine-tuning, alternating, each run in its own spawned process."""
    runs: dict[AdapterKind, list[dict[str, Any]]] = {"lora": [], "full": []}
    context = multiprocessing.get_context("spawn")
    for repeat in range(args.repeats):
        for kind in ("lora", "full"):
            with context.Pool(1) as pool:
                runs[kind].append(
                    pool.apply(_train_once, (kind, repeat, args.device, texts, labels, names))
                )
    out: dict[str, Any] = {}
    for kind, results in runs.items():
        out[kind] = {
            "trainable_params": results[0]["trainable_params"],
            "trainable_percent_of_base": results[0]["trainable_percent_of_base"],
            "examples_per_s": statistics.median(r["examples_per_s"] for r in results),
            "cpu_examples_per_s": statistics.median(r["cpu_examples_per_s"] for r in results),
            "peak_rss_delta_mb": statistics.median(r["rss_mb"] for r in results),
            "gpu_peak_mb": results[-1]["gpu_peak_mb"],
            "artifact_mb": results[0]["artifact_mb"],
        }
    base_mb = Path(resolve_model_path("minilm"), "model.safetensors").stat().st_size / 2**20
    out["base_model_mb"] = base_mb
    lora, full = out["lora"], out["full"]
    out["ratios"] = {
        "lora_over_full_examples_per_s": lora["examples_per_s"] / full["examples_per_s"],
        "lora_over_full_cpu_examples_per_s": (
            lora["cpu_examples_per_s"] / full["cpu_examples_per_s"]
        ),
        "lora_over_full_peak_rss": lora["peak_rss_delta_mb"] / max(full["peak_rss_delta_mb"], 1e-9),
        "lora_artifact_over_base_model": lora["artifact_mb"] / base_mb,
    }
    if lora["gpu_peak_mb"] and full["gpu_peak_mb"]:
        out["ratios"]["lora_over_full_gpu_peak"] = lora["gpu_peak_mb"] / full["gpu_peak_mb"]
    return out


def bench_tapt_step(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    """Masked-only vs full-vocabulary logits, steps interleaved so both see the same load."""
    path = resolve_model_path("minilm")
    tokenizer = load_tokenizer(path)
    precision = make_precision(resolve_device(args.device), "auto")
    runs: dict[str, tuple[_Tapt, _Corpus]] = {}
    for name, masked_only in (("masked_only", True), ("full_logits", False)):
        config = TaptConfig(
            max_steps=100,
            batch_size=16,
            max_length=128,
            device=args.device,
            masked_only_logits=masked_only,
        )
        model, new_head = load_masked_lm(path)
        model.to(precision.device).train()  # type: ignore[arg-type]
        runs[name] = (
            _Tapt(model, tokenizer, config, precision, new_head),
            _Corpus(tokenizer, texts, config),
        )
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(args.tapt_steps + 1):
        for name, (run, corpus) in runs.items():
            apply_lr(run.optimizer, index, 100, 3)
            started, cpu_started = time.perf_counter(), time.process_time()
            run.train_step(corpus, index)  # the same batch and masking for both
            if index:  # step 0 is a warm-up
                times[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
    out: dict[str, Any] = {}
    for name, values in times.items():
        seconds = statistics.median(values)
        out[name] = {
            "seconds_per_step": seconds,
            "steps_per_s": 1 / seconds,
            "cpu_seconds_per_step": statistics.median(cpu[name]),
        }
    out["speedup_masked_only_over_full"] = (
        out["full_logits"]["seconds_per_step"] / out["masked_only"]["seconds_per_step"]
    )
    out["cpu_speedup_masked_only_over_full"] = (
        out["full_logits"]["cpu_seconds_per_step"] / out["masked_only"]["cpu_seconds_per_step"]
    )
    return out


def bench_pool(
    args: argparse.Namespace, texts: list[str], labels: list[int], names: list[str], pool: list[str]
) -> dict[str, Any]:
    adapter = AdapterConfig(kind="lora", layers=[4, 5])  # last 2 of MiniLM's 6 layers
    config = TrainConfig(epochs=1, batch_size=16, max_length=128, device=args.device)
    classifier = train_classifier(
        texts[:64],
        labels[:64],
        label_names=names,
        base_model="minilm",
        adapter=adapter,
        config=config,
    ).classifier
    full_probs = classifier.score(pool).probs
    cache = LowerLayerCache()
    classifier.use_layer_cache(cache)
    started = time.perf_counter()
    cached_probs = classifier.score(pool).probs
    cold_s = time.perf_counter() - started
    full_times: list[float] = []
    warm_times: list[float] = []
    full_cpu: list[float] = []
    warm_cpu: list[float] = []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for use_cache, wall, cpu in ((None, full_times, full_cpu), (cache, warm_times, warm_cpu)):
            classifier.use_layer_cache(use_cache)
            cpu_started = time.process_time()
            wall.append(median_time(lambda: classifier.score(pool), 1))
            cpu.append(time.process_time() - cpu_started)
    full_s, warm_s = statistics.median(full_times), statistics.median(warm_times)
    return {
        "pool": len(pool),
        "split_layer": classifier.split_layer,
        "full_items_per_s": len(pool) / full_s,
        "cache_fill_items_per_s": len(pool) / cold_s,
        "cached_items_per_s": len(pool) / warm_s,
        "speedup_cached_over_full": full_s / warm_s,
        "cpu_speedup_cached_over_full": statistics.median(full_cpu) / statistics.median(warm_cpu),
        "max_abs_prob_diff": float(np.abs(full_probs - cached_probs).max()),
        "cache_mb": cache.nbytes / 2**20,
    }


def write_markdown(record: dict[str, Any], path: Path) -> None:
    t, m, p = record["training"], record["tapt_step"], record["pool_scoring"]
    r = t["ratios"]
    lines = [
        "# ML core benchmarks (offline MiniLM-L6, side by side, medians)",
        "",
        f"Device: {record['device']}; torch threads: {record['threads']}; 1-min load average "
        f"{record['load_average_1min']['before']:.1f} -> {record['load_average_1min']['after']:.1f}"
        f" on {record['load_average_1min']['cpus']} CPUs (other jobs share the machine: absolute "
        "figures vary with load; each ratio is measured side by side, interleaved).",
        "",
        "| comparison | baseline | ours | ratio (wall) | ratio (CPU time) |",
        "| --- | --- | --- | --- | --- |",
        f"| training examples/s (LoRA vs full) | {t['full']['examples_per_s']:.2f} | "
        f"{t['lora']['examples_per_s']:.2f} | {r['lora_over_full_examples_per_s']:.2f}x | "
        f"{r.get('lora_over_full_cpu_examples_per_s', float('nan')):.2f}x |",
        f"| peak RSS delta MB (LoRA vs full) | {t['full']['peak_rss_delta_mb']:.0f} | "
        f"{t['lora']['peak_rss_delta_mb']:.0f} | {r['lora_over_full_peak_rss']:.2f}x | |",
        f"| trainable % of base (LoRA vs full) | {t['full']['trainable_percent_of_base']:.1f} | "
        f"{t['lora']['trainable_percent_of_base']:.2f} | | |",
        f"| artifact MB (LoRA vs full; base {t['base_model_mb']:.1f}) | "
        f"{t['full']['artifact_mb']:.1f} | {t['lora']['artifact_mb']:.2f} | "
        f"{r['lora_artifact_over_base_model']:.3f}x of base | |",
        f"| TAPT steps/s (masked-only vs full logits) | {m['full_logits']['steps_per_s']:.3f} | "
        f"{m['masked_only']['steps_per_s']:.3f} | {m['speedup_masked_only_over_full']:.2f}x | "
        f"{m.get('cpu_speedup_masked_only_over_full', float('nan')):.2f}x |",
        f"| pool items/s (cached lower layers vs full) | {p['full_items_per_s']:.1f} | "
        f"{p['cached_items_per_s']:.1f} | {p['speedup_cached_over_full']:.2f}x | "
        f"{p.get('cpu_speedup_cached_over_full', float('nan')):.2f}x |",
        "",
        f"Cached vs full max |Δp| = {p['max_abs_prob_diff']:.2e}; cache fill pass "
        f"{p['cache_fill_items_per_s']:.1f} items/s; "
        f"cache {p['cache_mb']:.0f} MB for {p['pool']} texts.",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 'cuda'")
    parser.add_argument("--train-texts", type=int, default=128)
    parser.add_argument("--pool", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tapt-steps", type=int, default=6)
    parser.add_argument(
        "--parts",
        default="training,tapt,pool",
        help="comma-separated subset; others are kept from the previous file",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    texts, raw_labels = load_dataset("20ng", "train")
    names = sorted(set(raw_labels))
    order = np.random.default_rng(0).permutation(len(texts))
    train_idx, pool_idx = (
        order[: args.train_texts],
        order[args.train_texts : args.train_texts + args.pool],
    )
    train_texts = [texts[i] for i in train_idx]
    train_labels = [names.index(raw_labels[i]) for i in train_idx]
    pool = [texts[i] for i in pool_idx]
    record: dict[str, Any] = {
        "device": str(resolve_device(args.device)),
        "threads": torch.get_num_threads(),
        "args": vars(args),
    }
    stem = f"ml_core_{args.tag}" if args.tag else "ml_core"
    parts = set(args.parts.split(","))
    if parts != {"training", "tapt", "pool"} and (RESULTS / f"{stem}.json").is_file():
        previous = json.loads((RESULTS / f"{stem}.json").read_text())
        record.update(
            {k: previous[k] for k in ("training", "tapt_step", "pool_scoring") if k in previous}
        )
    load_before = os.getloadavg()
    if "training" in parts:
        record["training"] = bench_training(args, train_texts, train_labels, names)
    if "tapt" in parts:
        record["tapt_step"] = bench_tapt_step(args, train_texts)
    if "pool" in parts:
        record["pool_scoring"] = bench_pool(args, train_texts, train_labels, names, pool)
    record["load_average_1min"] = {
        "before": load_before[0],
        "after": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(record, RESULTS / f"{stem}.md")
    print((RESULTS / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
