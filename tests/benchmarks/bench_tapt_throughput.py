"""TAPT throughput in real tokens/s: the TAPT step against a plain Hugging Face MLM step.

Arms, all on the offline MiniLM (new MLM head) with the same texts, batch size and length, their
steps interleaved so that every arm sees the same machine load:

- ``hf_baseline``: ``AutoModelForMaskedLM`` forward + backward with dense logits (``labels=``),
  texts truncated to ``max_length`` and batched in random order, padded to the longest in the batch
  and masked by ``DataCollatorForLanguageModeling``; fused AdamW (the Trainer's default
  optimizer with this torch), gradient clipping.
- ``per_text_sparse``: the TAPT step with per-text, length-bucketed batches and logits at masked
  positions only (the layout before packing).
- ``packed_dense``: the TAPT step on packed blocks with full-vocabulary logits (packing alone).
- ``packed_sparse``: the TAPT default -- packed blocks and the sparse MLM head.

Tokens/s counts real tokens only (padding excluded; special tokens and separators count, in
every arm). Figures are medians over ``--repeats`` steps after one warm-up step per arm; the
"pooled" figure (all tokens / all seconds of an arm) is given too, because per-text batches vary in
size from step to step, and the "paired" ratio: the median over rounds of the arm's tokens/s over
the baseline's in the same round (the arms of a round run back to back, so slow drifts in the
machine's load cancel).

Run:  python -m tests.benchmarks.bench_tapt_throughput [--repeats 7] [--dataset 20ng|r8]
Writes tests/benchmarks/results/tapt_throughput.{json,md} (20ng; ``tapt_throughput_r8`` for R8).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedModel

from worker.ml.models import load_masked_lm, load_tokenizer, resolve_model_path
from worker.ml.runtime import make_precision, resolve_device, set_seed
from worker.ml.schedule import apply_lr
from worker.ml.tapt import TaptConfig, TrainCorpus, _Tapt, training_corpus
from worker.simulate.benchmark_data import load_dataset

RESULTS = Path(__file__).parent / "results"
STEM = "tapt_throughput"
ARMS = ("hf_baseline", "per_text_sparse", "packed_dense", "packed_sparse")


class _HfBaseline:
    """The plain recipe: collator masking, padded per-text batches, dense logits via ``labels``."""

    def __init__(self, path: str, texts: list[str], args: argparse.Namespace) -> None:
        self.tokenizer = load_tokenizer(path)
        model, _ = load_masked_lm(path)
        self.model: PreTrainedModel = model
        self.device = resolve_device(args.device)
        self.model.to(self.device).train()  # type: ignore[arg-type]
        # fused AdamW: the Trainer's default optimizer ("adamw_torch_fused") with torch >= 2.8
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=1e-4, weight_decay=0.01, fused=True
        )
        encoded = self.tokenizer(texts, truncation=True, max_length=args.max_length)
        self.rows = [{"input_ids": ids} for ids in encoded["input_ids"]]
        self.collator = DataCollatorForLanguageModeling(self.tokenizer, mlm_probability=0.15)
        self.order = np.random.default_rng(0).permutation(len(self.rows)).tolist()
        self.batch_size = args.batch_size

    def step(self, index: int) -> int:
        start = (index * self.batch_size) % max(1, len(self.rows) - self.batch_size)
        torch.manual_seed(index)
        batch = self.collator([self.rows[i] for i in self.order[start : start + self.batch_size]])
        batch = {k: v.to(self.device) for k, v in batch.items()}
        loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())


class _TaptArm:
    def __init__(
        self, path: str, texts: list[str], args: argparse.Namespace, packing: bool, sparse: bool
    ) -> None:
        config = TaptConfig(
            max_steps=1000,
            batch_size=args.batch_size,
            max_length=args.max_length,
            device=args.device,
            packing=packing,
            masked_only_logits=sparse,
        )
        tokenizer = load_tokenizer(path)
        precision = make_precision(resolve_device(args.device), "auto")
        model, new_head = load_masked_lm(path)
        model.to(precision.device).train()  # type: ignore[arg-type]
        self.run = _Tapt(model, tokenizer, config, precision, new_head)
        self.corpus: TrainCorpus = training_corpus(tokenizer, texts, config)

    def step(self, index: int) -> int:
        apply_lr(self.run.optimizer, index, 1000, 30)
        self.run.train_step(self.corpus, index)
        return self.run.last_tokens


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    path = resolve_model_path("minilm")
    set_seed(0)
    arms: dict[str, Any] = {
        "hf_baseline": _HfBaseline(path, texts, args),
        "per_text_sparse": _TaptArm(path, texts, args, packing=False, sparse=True),
        "packed_dense": _TaptArm(path, texts, args, packing=True, sparse=False),
        "packed_sparse": _TaptArm(path, texts, args, packing=True, sparse=True),
    }
    device = resolve_device(args.device)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    names = list(arms)
    for index in range(args.repeats + 1):
        order = names[index % len(names) :] + names[: index % len(names)]  # rotate who goes first
        for name in order:
            _sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            tokens = arms[name].step(index)
            _sync(device)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if index:  # step 0 is a warm-up
                samples[name].append({"seconds": wall, "cpu_seconds": cpu, "tokens": tokens})
        print(f"round {index}/{args.repeats}: load {os.getloadavg()[0]:.1f}", flush=True)
    out: dict[str, Any] = {}
    for name, rows in samples.items():
        out[name] = {
            "tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in rows),
            "cpu_tokens_per_s": statistics.median(r["tokens"] / r["cpu_seconds"] for r in rows),
            "seconds_per_step": statistics.median(r["seconds"] for r in rows),
            "real_tokens_per_step": statistics.median(r["tokens"] for r in rows),
            "pooled_tokens_per_s": sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows),
            "steps": rows,
        }
    base = out["hf_baseline"]
    for name in names:
        out[name]["ratio_tokens_per_s"] = out[name]["tokens_per_s"] / base["tokens_per_s"]
        out[name]["ratio_cpu_tokens_per_s"] = (
            out[name]["cpu_tokens_per_s"] / base["cpu_tokens_per_s"]
        )
        out[name]["ratio_pooled_tokens_per_s"] = (
            out[name]["pooled_tokens_per_s"] / base["pooled_tokens_per_s"]
        )
    return out


def paired_ratios(arms: dict[str, Any]) -> dict[str, float]:
    """Median over rounds of (arm tokens/s) / (baseline tokens/s) within the round."""
    base = arms["hf_baseline"]["steps"]
    return {
        name: statistics.median(
            (row["tokens"] / row["seconds"]) / (ref["tokens"] / ref["seconds"])
            for row, ref in zip(arm["steps"], base, strict=True)
        )
        for name, arm in arms.items()
    }


def write_markdown(record: dict[str, Any]) -> str:
    arms = record["arms"]
    paired = paired_ratios(arms)
    lines = [
        f"# TAPT throughput (offline MiniLM-L6, new MLM head, {record['dataset']} train texts)",
        "",
        f"Device: {record['device']}; torch threads: {record['torch_threads']}; "
        f"{record['texts']} texts, batch {record['batch_size']} x max_length "
        f"{record['max_length']}; medians of {record['repeats']} interleaved steps per arm after "
        f"one warm-up step. 1-min load average {record['load_before']:.1f} -> "
        f"{record['load_after']:.1f} on {record['cpus']} CPUs (other jobs share this machine: "
        "absolute figures vary with load; the ratios are measured side by side).",
        "",
        "Tokens/s counts real tokens (padding excluded). Baseline: `AutoModelForMaskedLM` "
        "forward + backward with dense logits on padded per-text batches masked by "
        "`DataCollatorForLanguageModeling`.",
        "",
        "| arm | real tokens/step | s/step | tokens/s | ratio (wall) | ratio (CPU time) "
        "| pooled tokens/s | ratio (pooled) | ratio (paired) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ARMS:
        arm = arms[name]
        lines.append(
            f"| {name} | {arm['real_tokens_per_step']:.0f} | {arm['seconds_per_step']:.2f} | "
            f"{arm['tokens_per_s']:.0f} | {arm['ratio_tokens_per_s']:.2f}x | "
            f"{arm['ratio_cpu_tokens_per_s']:.2f}x | {arm['pooled_tokens_per_s']:.0f} | "
            f"{arm['ratio_pooled_tokens_per_s']:.2f}x | {paired[name]:.2f}x |"
        )
    lines += ["", f"Command: `{record['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="20ng", choices=("20ng", "r8"))
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 'cuda'")
    parser.add_argument(
        "--render", type=Path, help="only rewrite the .md of this results .json (no measuring)"
    )
    args = parser.parse_args()
    if args.render:
        record = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(write_markdown(record))
        print(write_markdown(record))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts, _ = load_dataset(args.dataset, "train")
    texts = [t for t in texts if t.strip()][: args.texts]
    load_before = os.getloadavg()[0]
    arms = measure(args, texts)
    record = {
        "dataset": args.dataset,
        "device": str(resolve_device(args.device)),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "texts": len(texts),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "command": "python -m tests.benchmarks.bench_tapt_throughput "
        f"--dataset {args.dataset} --texts {args.texts} --batch-size {args.batch_size} "
        f"--max-length {args.max_length} --repeats {args.repeats} --device {args.device}",
        "arms": arms,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = STEM if args.dataset == "20ng" else f"{STEM}_{args.dataset}"
    stem = f"{stem}_{args.tag}" if args.tag else stem
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    markdown = write_markdown(record)
    (RESULTS / f"{stem}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
