"""Does TAPT pay on a CPU? The CPU default budget against the live head, side by side (issue 18).

On a CPU the served model is almost always the live head (a logistic regression on the encoder's
mean-pooled sentence embeddings; issue 13). TAPT continues the encoder's masked-LM training on the
pool, which changes those embeddings. This study runs TAPT with the product's CPU defaults
(``app.domain.tapt.CPU_DEFAULTS``: 200 steps of 16 x 128 tokens, early stopping on held-out
perplexity) on the data set's whole pool, then runs the live head's active-learning loop
(``bench_few_labels``: diverse seed set, cluster-then-margin batches, dev 20 % of the budget, up
to 10 % of the pool, every label counted) on the embeddings of the base and of the TAPT'd encoder,
same seeds, and an LR on 100 % of the pool for both. It also prints what the GPU default budget
(3 epochs of the pool's packed blocks within 3k-20k steps, ``contract.tapt_budget``) would cost
at this CPU's measured pace, against one live-head refit.

    python -m tests.benchmarks.bench_tapt_live_head [--datasets r8] [--seeds 0 1 2]

Writes ``tests/benchmarks/results/<name>.{json,md}`` (``--name``, default ``tapt_live_head``).
Reduced CPU profile: TAPT at the CPU budget only; the adapter arm is not run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"
ARM = {"name": "first 128 tokens, embed (today)", "windows": False, "hybrid": False,
       "self_training": False}


def tapt_encoder(name: str, texts: list[str], out: Path) -> dict[str, Any]:
    """TAPT of the offline MiniLM on ``texts`` with the CPU defaults (resumed or reused when
    ``out`` holds a run), and what the GPU default budget would plan for this pool."""
    from app.domain.tapt import CPU_DEFAULTS, GPU_DEFAULTS
    from contract.tapt_budget import planned_steps
    from worker.ml import tapt
    from worker.ml.models import load_tokenizer, offline_default_path

    config = tapt.TaptConfig.from_dict({**CPU_DEFAULTS, "device": "cpu"})
    started = time.perf_counter()
    result = tapt.run_tapt(texts, base_model=str(offline_default_path()), out_dir=out,
                           config=config)
    train, _ = tapt.split_heldout(texts, config, None)
    gpu = tapt.TaptConfig.from_dict({**GPU_DEFAULTS, "device": "cpu"})
    blocks = tapt.units_per_epoch(
        tapt.training_corpus(load_tokenizer(str(offline_default_path())), train, gpu))
    gpu_steps = planned_steps(max_steps=gpu.max_steps, epochs=gpu.epochs,
                              min_steps=gpu.min_steps, batch_size=gpu.batch_size, units=blocks)
    per_step = result.seconds / max(result.steps, 1)
    return {
        "data_set": name, "steps": result.steps, "seconds": result.seconds,
        "seconds_per_step": per_step, "ppl_before": result.ppl_before,
        "ppl_after": result.ppl_after, "stop_reason": result.stop_reason,
        "wall_s_this_call": time.perf_counter() - started,
        "blocks_per_epoch": blocks, "gpu_default_steps": gpu_steps,
        # a GPU-default step is 32 x 128 tokens, twice the CPU default's 16 x 128
        "gpu_default_budget_on_this_cpu_s": gpu_steps * per_step * 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["r8"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="tapt_live_head")
    args = parser.parse_args()

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from tests.benchmarks.bench_few_labels import (
        DEV_SHARE,
        FRACTION,
        Features,
        macro_f1,
        run_arm,
    )
    from tests.benchmarks.few_labels_data import CACHE, load_corpus, window_embeddings
    from worker.ml.live_head import diverse_seed

    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "settings": vars(args), "datasets": {}}
    for name in args.datasets:
        corpus = load_corpus(name)
        k = len(corpus.label_names)
        out = CACHE / f"tapt-cpu-{name}"
        entry: dict[str, Any] = {"tapt": tapt_encoder(name, corpus.train_texts, out)}
        print(f"{name}: TAPT {entry['tapt']}", flush=True)
        vec = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32)
        pool_t, test_t = vec.fit_transform(corpus.train_texts), vec.transform(corpus.test_texts)
        feats: dict[str, Features] = {}
        for encoder, model in (("base", None), ("tapt", str(out))):
            pool = window_embeddings(corpus.train_texts, model=model, windows=1)
            test = window_embeddings(corpus.test_texts, model=model, windows=1)
            feats[encoder] = Features(pool.pooled(1), test.pooled(1),  # type: ignore[attr-defined]
                                      pool_t, test_t)
        n = len(corpus.train_y)
        budget = max(round(FRACTION * n), 2 * k)
        dev_n = round(DEV_SHARE * budget)
        entry |= {"pool": n, "test": len(corpus.test_y), "budget": budget, "dev": dev_n,
                  "full": {}, "seeds": {}}
        for encoder, f in feats.items():
            model = LogisticRegression(C=10, max_iter=2000)  # DATA.md's embed-lr
            model.fit(f.pool_e, corpus.train_y)
            entry["full"][encoder] = macro_f1(corpus.test_y, model.predict(f.test_e))
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            order = rng.permutation(n)
            dev_rows = np.sort(order[:dev_n])
            rest = np.setdiff1d(np.arange(n), dev_rows)
            seed_rows = rest[diverse_seed(feats["base"].pool_e[rest], 2 * k, seed=seed)]
            entry["seeds"][str(seed)] = {
                encoder: run_arm(ARM, f, corpus.train_y, corpus.test_y, k, seed, seed_rows,
                                 dev_rows, budget)
                for encoder, f in feats.items()
            }
            print(f"  seed {seed}: {entry['seeds'][str(seed)]}", flush=True)
        report["datasets"][name] = entry
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, RESULTS / f"{args.name}.md")


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = [f"# TAPT at the CPU default budget and the live head ({report['when']})", ""]
    for name, entry in report["datasets"].items():
        tapt = entry["tapt"]
        refit = statistics.median(r["base"]["fit_s_median"] for r in entry["seeds"].values())
        lines += [
            f"## {name}: pool {entry['pool']:,}, 10 % = {entry['budget']} labels "
            f"(dev {entry['dev']} counted)", "",
            f"TAPT, CPU defaults: {tapt['steps']} steps in {tapt['seconds'] / 60:.1f} min "
            f"({tapt['seconds_per_step']:.2f} s/step), held-out perplexity "
            f"{tapt['ppl_before']:,.0f} → {tapt['ppl_after']:,.0f}"
            f"{' (stopped early)' if tapt['stop_reason'] else ''}. The GPU default budget for "
            f"this pool ({tapt['blocks_per_epoch']:,} blocks of 128 tokens per epoch) is "
            f"{tapt['gpu_default_steps']:,} steps of 32 x 128: about "
            f"{tapt['gpu_default_budget_on_this_cpu_s'] / 3600:.1f} h at this CPU's pace, "
            f"{tapt['gpu_default_budget_on_this_cpu_s'] / max(refit, 1e-9):,.0f}× one live-head "
            f"refit at 10 % ({refit:.2f} s).", "",
            "| encoder under the live head | test macro-F1 at 10 % (mean ± std) "
            "| embed-lr on 100 % |",
            "|---|---:|---:|",
        ]
        for encoder in ("base", "tapt"):
            values = [r[encoder]["macro_f1"] for r in entry["seeds"].values()]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            label = "MiniLM-L6 (the default)" if encoder == "base" else "MiniLM-L6 after TAPT"
            lines.append(f"| {label} | {statistics.mean(values):.3f} ± {std:.3f} "
                         f"| {entry['full'][encoder]:.3f} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
