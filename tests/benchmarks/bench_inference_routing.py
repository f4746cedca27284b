"""Multi-adapter inference: one resident base with swapped adapters vs one model per project.

Run: ``python -m tests.benchmarks.bench_inference_routing [--projects 8] [--base minilm|tiny]
[--device cpu|cuda] [--requests 48] [--texts 8]``. Writes
``tests/benchmarks/results/inference_routing.{json,md}``.

Both sides serve the same LoRA artifacts, side by side in one process:

* **router** — ``worker.ml.adapter_router.AdapterRouter`` (what the inference worker runs):
  one base, adapters added with peft ``add_adapter`` and switched with ``set_adapter``, per-project
  heads swapped in;
* **baseline** — ``worker.ml.artifacts.load_artifact`` once per project, every model resident
  (what serving without routing needs to answer any project without reloading).

Figures: resident parameter memory (unique tensors), cold load per project and warm latency of a
request (median over round-robin requests across projects), each as a ratio router / baseline;
plus the largest probability difference between the two (they must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.adapter_config import AdapterConfig
from tests.worker.ml.tiny import make_corpus, make_tiny_bert
from worker.ml.adapter_router import AdapterRouter, RouterLimits
from worker.ml.artifacts import load_artifact, write_artifact
from worker.ml.models import offline_default_path
from worker.ml.training import TrainConfig, train_classifier

RESULTS = Path(__file__).parent / "results"


def make_artifacts(base: str, count: int, root: Path, device: str) -> list[Path]:
    """``count`` LoRA artifacts on ``base`` with 2..5 labels each (one short training step each)."""
    texts, labels = make_corpus(32, seed=7)
    paths = []
    for index in range(count):
        k = 2 + index % 4
        names = [f"label_{index}_{j}" for j in range(k)]
        result = train_classifier(
            texts,
            [y % k for y in labels],
            label_names=names,
            base_model=base,
            adapter=AdapterConfig(kind="lora", r=8),
            config=TrainConfig(epochs=1, batch_size=32, max_length=64, device=device, seed=index),
        )
        paths.append(write_artifact(result.classifier, root / f"project-{index}"))
    return paths


def resident_bytes(modules: list[torch.nn.Module]) -> int:
    """Bytes of the distinct parameter and buffer tensors held by ``modules``."""
    seen: dict[int, int] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def router_modules(router: AdapterRouter) -> list[torch.nn.Module]:
    modules: list[torch.nn.Module] = []
    for shared in router._bases.values():
        modules.append(shared.model)
        modules.extend(shared.template_heads.values())
    for loaded in router._adapters.values():
        modules.extend(loaded.heads.values())
    return modules


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    base = str(offline_default_path()) if args.base == "minilm" else str(
        make_tiny_bert(work / "tiny-base"))
    started = time.perf_counter()
    artifacts = make_artifacts(base, args.projects, work / "artifacts", args.device)
    setup_seconds = time.perf_counter() - started
    texts, _ = make_corpus(args.texts, seed=11)

    router = AdapterRouter(RouterLimits(max_adapters=args.projects + 1), device=args.device)
    baseline: list[Any] = []
    cold_router, cold_baseline = [], []
    for path in artifacts:  # alternate sides so both see the same machine state
        start = time.perf_counter()
        router.predict(path, texts, cache_key=path.name)
        cold_router.append(time.perf_counter() - start)
        start = time.perf_counter()
        classifier = load_artifact(path, device=args.device)
        classifier.predict_proba(texts)
        cold_baseline.append(time.perf_counter() - start)
        baseline.append(classifier)

    warm_router, warm_baseline, worst = [], [], 0.0
    for request in range(args.requests):
        index = request % len(artifacts)
        start = time.perf_counter()
        routed = router.predict(artifacts[index], texts, cache_key=artifacts[index].name)
        warm_router.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = baseline[index].predict_proba(texts)
        warm_baseline.append(time.perf_counter() - start)
        worst = max(worst, float(np.abs(routed.probabilities - reference).max()))

    memory_router = resident_bytes(router_modules(router))
    memory_baseline = resident_bytes([c.model for c in baseline])
    median = statistics.median
    return {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "device": args.device, "threads": torch.get_num_threads(),
                    "load_average_1min_at_end": os.getloadavg()[0]},
        "setup": {"base": args.base, "projects": args.projects, "texts_per_request": args.texts,
                  "requests": args.requests, "setup_seconds": round(setup_seconds, 1)},
        "router": {"resident_mib": memory_router / 2**20,
                   "cold_load_s_median": median(cold_router),
                   "warm_request_ms_median": 1000 * median(warm_router),
                   "stats": router.stats()},
        "baseline_one_model_per_project": {
            "resident_mib": memory_baseline / 2**20,
            "cold_load_s_median": median(cold_baseline),
            "warm_request_ms_median": 1000 * median(warm_baseline)},
        "ratios_router_over_baseline": {
            "resident_memory": memory_router / memory_baseline,
            "cold_load": median(cold_router) / median(cold_baseline),
            "warm_request": median(warm_router) / median(warm_baseline)},
        "max_abs_probability_difference": worst,
    }


def markdown(result: dict[str, Any]) -> str:
    r, b, q = (result["router"], result["baseline_one_model_per_project"],
               result["ratios_router_over_baseline"])
    s = result["setup"]
    return "\n".join([
        "# Multi-adapter inference routing",
        "",
        f"{s['projects']} LoRA projects on `{s['base']}` ({result['machine']['device']}), "
        f"{s['requests']} round-robin requests of {s['texts_per_request']} texts "
        f"(load average {result['machine'].get('load_average_1min_at_end', 0):.1f} at the end: "
        "timings on a shared machine are noisy; memory is not).",
        "",
        "| | router (1 base, swapped adapters) | one model per project | ratio |",
        "|---|---|---|---|",
        f"| resident parameters | {r['resident_mib']:.1f} MiB | {b['resident_mib']:.1f} MiB "
        f"| {q['resident_memory']:.3f} |",
        f"| cold load per project (median) | {r['cold_load_s_median']:.3f} s "
        f"| {b['cold_load_s_median']:.3f} s | {q['cold_load']:.2f} |",
        f"| warm request (median) | {r['warm_request_ms_median']:.1f} ms "
        f"| {b['warm_request_ms_median']:.1f} ms | {q['warm_request']:.2f} |",
        "",
        f"Largest probability difference between the two: "
        f"{result['max_abs_probability_difference']:.2e}.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=8)
    parser.add_argument("--base", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--texts", type=int, default=8)
    args = parser.parse_args()
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    (RESULTS / f"inference_routing{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"inference_routing{suffix}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
