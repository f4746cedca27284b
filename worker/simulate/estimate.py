"""A time estimate printed before a simulation starts, from a measured warm-up.

The warm-up times a few real steps on the run's own data and device: forward + backward of a
training batch (``train_batch_size`` x the pool's own token lengths), forward-only scoring, and
(when an arm asks for TAPT) masked-LM steps. ``extrapolate`` turns those unit costs into
seconds per (arm, seed) from the round plan (labels per round, epochs, scored items), so the
figure follows the actual texts, model and machine. It is an estimate: early stopping, caches
and a loaded machine move it; the summary's timing table has the measured times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.simulate.config import SimulationConfig
from worker.simulate.data import SplitData

Log = Callable[[str], None]
WARMUP_STEPS = 3
SCORE_BATCH = 32


@dataclass(frozen=True)
class UnitCosts:
    """Measured seconds: one training step, one scored item, one TAPT step (0 if unneeded)."""

    train_step_s: float
    score_item_s: float
    tapt_step_s: float = 0.0


def _sample(texts: Sequence[str], n: int) -> list[str]:
    """``n`` texts spread over the pool (its own length mix), repeated when the pool is small."""
    if not texts:
        return ["-"] * n
    stride = max(1, len(texts) // n)
    picked = [texts[(i * stride) % len(texts)] for i in range(n)]
    return picked


def measure_units(
    config: SimulationConfig, data: SplitData, base_model: str, needs_tapt: bool
) -> UnitCosts:
    """Time ``WARMUP_STEPS`` (after one untimed step) of training, scoring and TAPT."""
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    from worker.ml.models import load_tokenizer
    from worker.ml.runtime import resolve_device

    device = resolve_device(config.device)
    tokenizer = load_tokenizer(base_model)

    def batch(n: int) -> Any:
        return tokenizer(
            _sample(data.pool_texts, n),
            truncation=True,
            max_length=config.max_length,
            padding=True,
            return_tensors="pt",
        ).to(device)

    def timed(step: Callable[[], None]) -> float:
        step()  # untimed: allocations, lazy initialisation
        started = time.perf_counter()
        for _ in range(WARMUP_STEPS):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / WARMUP_STEPS

    model = AutoModel.from_pretrained(base_model).to(device)
    train_batch = batch(config.train_batch_size)
    score_batch = batch(SCORE_BATCH)

    def train_step() -> None:
        model.train()
        model.zero_grad()
        out = model(**train_batch).last_hidden_state
        out.float().pow(2).mean().backward()

    def score_step() -> None:
        model.eval()
        with torch.inference_mode():
            model(**score_batch)

    train_s = timed(train_step)
    score_s = timed(score_step) / SCORE_BATCH
    tapt_s = 0.0
    if needs_tapt:
        mlm = AutoModelForMaskedLM.from_pretrained(base_model).to(device)
        tapt_batch = batch(config.tapt_batch_size)
        labels = tapt_batch["input_ids"].clone()
        mask = torch.rand(labels.shape, generator=torch.Generator().manual_seed(0)) < 0.15
        labels[~mask.to(labels.device)] = -100

        def tapt_step() -> None:
            mlm.train()
            mlm.zero_grad()
            mlm(**tapt_batch, labels=labels).loss.backward()

        tapt_s = timed(tapt_step)
    return UnitCosts(train_step_s=train_s, score_item_s=score_s, tapt_step_s=tapt_s)


def _label_plan(config: SimulationConfig) -> list[int]:
    """Pool labels at each round: the seed set, then one batch more per round to the budget."""
    plan = [config.seed_size]
    while plan[-1] < config.budget:
        plan.append(min(config.budget, plan[-1] + config.batch_size))
    return plan


def extrapolate(config: SimulationConfig, data: SplitData, units: UnitCosts) -> dict[str, float]:
    """Seconds per (arm, seed), keyed by arm spec; plus 'TAPT' and 'embeddings' (once each)."""
    pool, dev, test = len(data.pool_texts), len(data.dev_texts), len(data.test_texts)
    stop = min(config.stop_set_size, pool)
    out: dict[str, float] = {}

    def train(labels: int, min_steps: int = 0) -> float:
        steps = max(min_steps, config.epochs * math.ceil(labels / config.train_batch_size))
        return steps * units.train_step_s + config.epochs * dev * units.score_item_s

    for arm in config.arm_specs:
        variants = max(1, len(arm.adapters))
        if arm.is_ceiling:
            seconds = variants * train(pool) + test * units.score_item_s
        elif arm.live:
            seconds, last = 0.0, 0
            growth = config.adapter_growth or 1.0
            for labels in _label_plan(config):
                if arm.adapters and (not last or labels >= growth * last):
                    seconds += train(labels, config.min_train_steps)
                    seconds += (test + pool - labels) * units.score_item_s
                    last = labels
        else:
            seconds = 0.0
            for labels in _label_plan(config):
                scored = 0 if arm.strategy == "random" else pool - labels
                if config.score_sample is not None:
                    scored = min(scored, config.score_sample)
                seconds += variants * train(labels)
                seconds += (test + stop + scored) * units.score_item_s
        out[arm.spec] = seconds
    if config.needs_tapt:
        out["TAPT"] = config.tapt_steps * units.tapt_step_s
    wants_embeddings = any(a.live for a in config.arm_specs) or bool(config.cheap_baselines)
    if wants_embeddings:
        out["embeddings"] = (pool + dev + test) * units.score_item_s
    return out


def format_estimate(config: SimulationConfig, units: UnitCosts, per: dict[str, float]) -> list[str]:
    seeds = len(config.seeds)
    runs = sum(v * seeds for k, v in per.items() if k not in ("TAPT", "embeddings"))
    once = per.get("TAPT", 0.0) + per.get("embeddings", 0.0)
    total = once + runs / config.workers
    lines = [
        f"warm-up: {units.train_step_s:.2f}s per training step (batch {config.train_batch_size}),"
        f" {units.score_item_s * 1000:.1f}ms per scored item"
        + (f", {units.tapt_step_s:.2f}s per TAPT step" if units.tapt_step_s else "")
    ]
    for key, seconds in per.items():
        scope = "once" if key in ("TAPT", "embeddings") else f"per seed, x{seeds}"
        lines.append(f"  estimate {key}: {seconds / 60:.1f} min ({scope})")
    lines.append(
        f"estimated total: {total / 60:.1f} min ({config.workers} worker(s); early stopping and "
        "caches make it shorter, a busy machine longer)"
    )
    return lines


def estimate_and_log(
    config: SimulationConfig,
    data: SplitData,
    base_model: str,
    log: Log,
) -> dict[str, float]:
    """Measure, extrapolate, log; returns the per-arm seconds (see ``extrapolate``)."""
    started = time.perf_counter()
    units = measure_units(config, data, base_model, config.needs_tapt)
    per = extrapolate(config, data, units)
    for line in format_estimate(config, units, per):
        log(line)
    log(f"(warm-up took {time.perf_counter() - started:.0f}s)")
    return per
